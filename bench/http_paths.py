"""The local services of `bench/run http` and the paths in front of them.

nginx or bench/httpd.c as the service; direct, one HAProxy hop, `ssh -R` and
burrow's http tunnel (with and without inspection, and its https twin) as the
paths; each started, checked with one GET of each file, and described by an
Endpoint the measurements use. See bench/README.md, "The http benchmark".
"""

import http.client
import json
import os
import pwd
import re
import socket
import ssl
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field

from benchlib import (BenchError, burrow_bins, children, ensure_package, find_bin, free_port,
                      log_tail, start_edge, start_haproxy, wait_for_log, wait_port)

SMALL_BODY = 1024           # what GET / answers, from either service
BULK_BYTES = 10 * 2**20     # one download of the bulk measurement


@dataclass
class Service:
    """The local service behind every path: where it listens, what GETs the bulk file."""
    name: str
    port: int
    bulk_path: str
    version: str = ""


@dataclass
class Endpoint:
    """Where a path is reached: connect to host:port, send `Host: hosthdr`."""
    host: str
    port: int
    hosthdr: str
    pids: dict = field(default_factory=dict)   # name -> pid of the proxy processes
    url: str = ""
    api_port: int = 0                           # burrow: the agent API
    sni: str = ""                               # https: the server name the client sends


# ---------------------------------------------------------------------------
# setup


def start_httpd(procs, tools, threads):
    proc = procs.start("httpd", [tools["httpd"], "-t", str(threads)])
    m = wait_for_log(proc, r"^port=(\d+)$", 5)
    return Service("httpd", int(m.group(1)), f"/bulk?bytes={BULK_BYTES}", "bench/httpd.c")


def write_nginx_config(d, port, workers):
    """nginx.conf serving / (SMALL_BODY bytes) and /10m.bin (BULK_BYTES) from d/html."""
    docs = os.path.join(d, "html")
    os.makedirs(docs)
    with open(os.path.join(docs, "index.html"), "wb") as f:
        f.write(b"x" * SMALL_BODY)
    with open(os.path.join(docs, "10m.bin"), "wb") as f:
        f.write(b"b" * BULK_BYTES)
    # As root, nginx's workers switch to `nobody`, which cannot enter the run's
    # 0700 temporary directory and would answer 403: keep them root instead.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {os.path.join(d, kind)};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    cfg = os.path.join(d, "nginx.conf")
    with open(cfg, "w") as f:
        f.write(f"""{user}daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {os.path.join(d, "nginx.pid")};
error_log {os.path.join(d, "error.log")} warn;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
{temp}
    server {{
        listen 127.0.0.1:{port};
        root {docs};
        index index.html;
    }}
}}
""")
    return cfg


def start_nginx(procs, workdir, workers):
    """nginx (Debian nginx-light) in the foreground with a config in the run's directory."""
    exe = ensure_package("nginx", "nginx-light", sbin=True)
    d = os.path.join(workdir, "nginx")
    os.makedirs(d)
    port = free_port()
    cfg = write_nginx_config(d, port, workers)
    # -e: the error log before the config is read, so nothing goes to /var/log/nginx.
    argv = [exe, "-p", d, "-c", cfg, "-e", os.path.join(d, "error.log")]
    res = subprocess.run(argv + ["-t", "-q"], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise BenchError(f"nginx rejects its config: {(res.stderr or res.stdout).strip()}")
    proc = procs.start("nginx", argv)
    wait_port(proc, port, 10)
    v = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
    version = (v.stderr or v.stdout).strip().split(":", 1)[-1].strip()
    return Service("nginx", port, "/10m.bin", version)


def start_service(procs, args, workdir, name):
    if name == "nginx":
        return start_nginx(procs, workdir, args.nginx_workers)
    return start_httpd(procs, args.tools, args.server_threads)


def descendants(pid):
    out = []
    for child in children(pid):
        out += [child] + descendants(child)
    return out


def proc_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def ssh_keygen(path):
    keygen = find_bin("ssh-keygen")
    if not keygen:
        raise BenchError("ssh-keygen not found (package openssh-client)")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", path],
                   check=True, stdin=subprocess.DEVNULL)


def write_sshd_config(d, port):
    host_key, client_key = os.path.join(d, "host_key"), os.path.join(d, "client_key")
    ssh_keygen(host_key)
    ssh_keygen(client_key)
    authorized = os.path.join(d, "authorized_keys")
    with open(client_key + ".pub") as src, open(authorized, "w") as dst:
        dst.write(src.read())
    cfg = os.path.join(d, "sshd_config")
    with open(cfg, "w") as f:
        f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowTcpForwarding remote
GatewayPorts no
X11Forwarding no
PrintMotd no
LogLevel ERROR
""")
    return cfg, client_key


def start_ssh(procs, workdir, backend_port):
    """Our own sshd on a free port and `ssh -R` from the service to a public port."""
    sshd = ensure_package("sshd", "openssh-server", sbin=True)
    ssh = find_bin("ssh")
    if not ssh:
        raise BenchError("ssh not found (package openssh-client)")
    d = os.path.join(workdir, "ssh")
    os.makedirs(d, mode=0o700)
    port, pub = free_port(), free_port()
    cfg, client_key = write_sshd_config(d, port)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation dir
    server = procs.start("sshd", [sshd, "-D", "-e", "-f", cfg])
    wait_port(server, port, 10)
    user = pwd.getpwuid(os.getuid()).pw_name
    # A session with a remote command and a tty: without a session (-N) the
    # forwarded requests are about 3x slower, see bench/README.md.
    client = procs.start("ssh", [
        ssh, "-tt", "-F", "/dev/null", "-p", str(port), "-i", client_key,
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
        "-o", "LogLevel=ERROR", "-R", f"127.0.0.1:{pub}:127.0.0.1:{backend_port}",
        f"{user}@127.0.0.1", "exec sleep infinity"])
    wait_port(client, pub, 15)
    pids = {"ssh": client.pid}
    sessions = [p for p in descendants(server.pid) if proc_name(p) == "sshd"]
    for i, pid in enumerate(sessions):
        pids[f"sshd.{i + 1}"] = pid
    return Endpoint("127.0.0.1", pub, f"127.0.0.1:{pub}", pids, f"ssh -R {pub}")


def api_get(web_port, path):
    conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return json.loads(resp.read()) if resp.status == 200 else {}
    finally:
        conn.close()


def wait_public_url(agent, web_port, timeout, scheme="http"):
    """The public URL of the agent's tunnel with `scheme`, from its API."""
    deadline = time.monotonic() + timeout
    while True:
        if agent.poll() is not None:
            raise BenchError(f"{agent.name} exited (status {agent.returncode}):\n"
                             f"{log_tail(agent)}")
        try:
            for tun in api_get(web_port, "/api/tunnels").get("tunnels", []):
                url = tun.get("public_url", "")
                if tun.get("proto") == scheme and url.startswith(scheme + "://"):
                    return url
        except (OSError, ValueError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{agent.name} has no {scheme} tunnel in /api/tunnels after "
                             f"{timeout}s:\n{log_tail(agent)}")
        time.sleep(0.1)


def edge_flags(burrowd):
    """The flags `burrowd --help` lists."""
    res = subprocess.run([burrowd, "--help"], capture_output=True, text=True, timeout=10)
    return set(re.findall(r"^\s+(--[\w-]+)", res.stdout + res.stderr, re.M))


def start_burrow(procs, args, workdir, backend_port, target):
    """burrowd with its HTTP and HTTPS listeners and `burrow http` with or without
    inspection; burrow-https is the inspecting agent's https twin."""
    burrowd, burrow = burrow_bins(args.build_dir)
    inspect = target != "burrow-noinspect"
    suffix = target.split("-", 1)[1]
    scheme = "https" if target == "burrow-https" else "http"
    http_port, https_port = free_port(), free_port()
    listeners = ["--http-addr", f"127.0.0.1:{http_port}"]
    flags = edge_flags(burrowd)
    if "--https-addr" in flags:   # keep it off its default port
        listeners += ["--https-addr", f"127.0.0.1:{https_port}"]
    if "--max-conns-per-ip" in flags:
        # Every client of the run is 127.0.0.1: the default cap of 256 public
        # connections per source IP would refuse most of --hold's.
        listeners += ["--max-conns-per-ip", str(max_conns(args))]
    edge, edge_addr, ca = start_edge(procs, workdir, args.build_dir, f"burrowd-{suffix}",
                                     listeners)
    web_port = free_port()
    argv = [burrow, "http", str(backend_port), "--server-addr", edge_addr, "--root-cas", ca,
            "--log", "stdout", "--log-format", "json", "--web-addr", f"127.0.0.1:{web_port}"]
    if not inspect:
        argv.append("--inspect=false")
    agent = procs.start(f"burrow-{suffix}", argv + args.agent_arg)
    url = wait_public_url(agent, web_port, 15, scheme)
    u = urllib.parse.urlsplit(url)
    # The public host (<sub>.localhost) is only a name: connect to loopback, send it as Host
    # (and, over https, as the TLS server name).
    return Endpoint("127.0.0.1", u.port or (https_port if scheme == "https" else http_port),
                    u.netloc, {"burrowd": edge.pid, "burrow": agent.pid}, url, web_port,
                    u.hostname if scheme == "https" else "")


def check_endpoint(ep, svc):
    """GET / and the bulk file through the path, on one keep-alive connection."""
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)
    if ep.sni:   # TLS to loopback with the tunnel's name; the dev certificate is not checked
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn.sock = ctx.wrap_socket(socket.create_connection((ep.host, ep.port), 10),
                                    server_hostname=ep.sni)
    try:
        for path, size in (("/", SMALL_BODY), (svc.bulk_path, BULK_BYTES)):
            conn.request("GET", path, headers={"Host": ep.hosthdr})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or len(body) != size:
                raise BenchError(f"GET {path}: status {resp.status}, {len(body)} bytes "
                                 f"(expected 200, {size})")
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"GET through it failed: {e}")
    finally:
        conn.close()


def max_conns(args):
    """Connections a proxy must take at once from 127.0.0.1: wrk's, --hold's, a margin."""
    return max(2000, args.connections + args.hold + 100)


def start_target(procs, args, workdir, results, t, backend_port):
    if t == "direct":
        return Endpoint("127.0.0.1", backend_port, f"127.0.0.1:{backend_port}")
    if t == "haproxy":
        proc, port, version = start_haproxy(procs, workdir, backend_port,
                                            args.haproxy_threads, max_conns(args),
                                            mode="http")
        results["host"]["haproxy"] = version
        return Endpoint("127.0.0.1", port, f"127.0.0.1:{port}", {"haproxy": proc.pid})
    if t == "ssh":
        return start_ssh(procs, workdir, backend_port)
    return start_burrow(procs, args, workdir, backend_port, t)
