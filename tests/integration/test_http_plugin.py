"""The http plugin end to end: a real edge, a real agent with the plugin, a
real local HTTP service, clients on raw sockets (docs/http.md)."""
import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import time

import pytest

import helpers as H
import http_app as A
import http_helpers as HH

BIG = (4 if H.QUICK else 64) << 20


@pytest.fixture
def app(servers):
    a = A.App()
    servers.append(a)
    return a


@pytest.fixture
def tunnel(start_edge, procs, tmp_path, app):
    """tunnel(**options) -> (host, port, hosthdr) of a tunnel to `app`."""
    edge = start_edge()

    def start(local=None, **options):
        return HH.start_http_tunnel(procs, tmp_path, edge, app.port if local is None else local,
                                    **options)

    return start


class _TunnelSocket:
    """A client socket to the tunnel. Raw requests in these tests say
    `Host: x`; the edge routes by Host, so sendall() puts the tunnel's own
    host there. Everything else goes to the socket untouched."""

    def __init__(self, sock, hosthdr):
        self._sock, self._host = sock, b"\r\nHost: " + hosthdr.encode() + b"\r\n"

    def sendall(self, data):
        return self._sock.sendall(data.replace(b"\r\nHost: x\r\n", self._host))

    def __getattr__(self, name):
        return getattr(self._sock, name)


def conn(t):
    host, port, hosthdr = t
    s = socket.create_connection((host, port), timeout=H.t(30))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _TunnelSocket(s, hosthdr)


def get(t, path, method="GET", headers=(), body=b""):
    return A.request(t[0], t[1], method, path, body=body, headers=headers, hosthdr=t[2])


# ---------------------------------------------------------------------------
# forwarding


@pytest.mark.deadline(180)
@pytest.mark.parametrize("size", [0, 1024, BIG])
def test_get_and_post_bodies_byte_exact(tunnel, size):
    t = tunnel()
    r = get(t, "/size/%d" % size)
    assert r.status == 200 and r.header("Content-Length") == str(size)
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(A.pattern(size)).digest()
    body = A.pattern(size, seed=9)
    r = get(t, "/upload", method="POST", body=body)
    assert r.status == 200
    assert json.loads(r.body) == {"len": size, "sha": hashlib.sha256(body).hexdigest()}


def test_chunked_request_and_response(tunnel):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n")
    time.sleep(0.1)
    s.sendall(b"7;ext=1\r\n, world\r\n0\r\n\r\n")
    r = A.read_response(f)
    assert r.status == 200 and r.body == b"hello, world"
    s.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
    r = A.read_response(f)
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == b"hello chunked world"
    s.close()


def test_expect_100_continue(tunnel):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    body = b"x" * 5000
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    r = A.read_response(f)
    assert r.status == 100
    s.sendall(body)
    r = A.read_response(f)
    assert r.status == 200 and json.loads(r.body)["len"] == len(body)
    s.close()


def test_pipelined_requests_in_one_send(tunnel):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
              b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
              b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
    assert A.read_response(f).body == b"hello from /one"
    assert json.loads(A.read_response(f).body)["len"] == 3
    assert A.read_response(f).body == b"hello from /three"
    s.close()


def test_keep_alive_reuses_one_local_connection(tunnel, app):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    for i in range(5):
        s.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        assert A.read_response(f).body == b"hello from /k%d" % i
    s.close()
    assert len(app.seen) == 5
    assert app.httpd_accepted() == 1


def test_http10_and_connection_close(tunnel):
    t = tunnel()
    for req in (b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n",
                b"GET /old HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        s = conn(t)
        s.sendall(req)
        how, data, _ = H.recv_until_close(s, H.t(10))
        s.close()
        assert how == "eof", (how, data)
        assert data.startswith(b"HTTP/1.") and data.endswith(b"hello from /old")


def test_read_until_close_response(tunnel):
    t = tunnel()
    s = conn(t)
    s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
    how, data, _ = H.recv_until_close(s, H.t(10))
    assert how == "eof" and data.endswith(b"\r\n\r\nuntil close")


def test_head_has_no_body(tunnel):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"HEAD /size/1000 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    r = A.read_response(f, method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "1000"
    assert A.read_response(f).body == b"hello from /after"


def test_sse_events_arrive_as_written(tunnel, app):
    t = tunnel()
    s = conn(t)
    s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"data: 0" not in buf:
        d = s.recv(4096)
        assert d
        buf += d
    got_first = time.monotonic()
    sent = app.sse_sent
    assert len(sent) < 3, "first event only arrived after the last was written"
    s.close()
    assert got_first


def test_websocket_upgrade_echo(tunnel):
    t = tunnel()
    s = conn(t)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"server-hello" not in buf:
        d = s.recv(4096)
        assert d, buf
        buf += d
    assert buf.startswith(b"HTTP/1.1 101")
    for msg in (b"ping-1", b"x" * 100000):
        s.sendall(msg)
        want = b"echo:" + msg
        got = b""
        while len(got) < len(want):
            d = s.recv(65536)
            assert d
            got += d
            # the server may echo in pieces: strip repeated prefixes
            if got.count(b"echo:") > 1:
                got = b"echo:" + got.replace(b"echo:", b"")
        assert got == want
    s.close()


def test_upgrade_refused_carries_on_as_http(tunnel):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
    assert A.read_response(f).body == b"hello from /plain"
    s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert A.read_response(f).body == b"hello from /next"
    s.close()


def test_502_page_when_nothing_listens(tunnel):
    dead = H.free_port()
    t = tunnel(local=dead)
    r = get(t, "/")
    assert r.status == 502
    assert r.header("Content-Type").startswith("text/html")
    assert r.header("Connection") == "close"
    assert int(r.header("Content-Length")) == len(r.body)
    page = r.body.decode()
    assert "Failed to complete tunnel connection" in page
    assert "localhost:%d" % dead in page
    assert "connection refused" in page


def test_reconnects_when_local_side_closed_between_requests(tunnel, app):
    t = tunnel()
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n")
    assert A.read_response(f).body == b"once"
    time.sleep(0.3)
    s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    assert A.read_response(f).body == b"hello from /again"
    s.close()
    assert app.httpd_accepted() == 2


def test_502_on_malformed_response(tunnel, servers):
    class Garbage(H._Server):
        def handle(self, c):
            c.recv(65536)
            c.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            time.sleep(0.5)

    g = Garbage()
    servers.append(g)
    t = tunnel(local=g.port)
    r = get(t, "/")
    assert r.status == 502 and b"Failed to complete tunnel connection" in r.body


def test_client_gone_mid_upload_leaves_tunnel_working(tunnel):
    t = tunnel()
    s = conn(t)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000)
    time.sleep(0.2)
    s.close()
    r = get(t, "/still")
    assert r.status == 200 and r.body == b"hello from /still"


def test_400_on_malformed_request(tunnel):
    t = tunnel()
    s = conn(t)
    s.sendall(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    how, data, _ = H.recv_until_close(s, H.t(10))
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"Connection: close" in data


# ---------------------------------------------------------------------------
# options


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def test_basic_auth(tunnel, app):
    t = tunnel(auth="alice:secret-one", basic_auth=["bob:secret-two"])
    r = get(t, "/x")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == 'Basic realm="burrow"'
    assert get(t, "/x", headers=[("Authorization", basic("alice", "wrong"))]).status == 401
    assert get(t, "/x", headers=[("Authorization", basic("alice", "secret-one"))]).status == 200
    assert get(t, "/x", headers=[("Authorization", basic("bob", "secret-two"))]).status == 200
    assert len(app.seen) == 2
    # a refused request's body is consumed and the connection stays usable
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
              b"GET /y HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n"
              % basic("bob", "secret-two").encode())
    assert A.read_response(f).status == 401
    assert A.read_response(f).body == b"hello from /y"
    s.close()


def seen_headers(r):
    return {k.lower(): v for k, v in json.loads(r.body)["headers"]}


def test_host_header_rewrite_and_literal(tunnel, app):
    t = tunnel(host_header="rewrite")
    h = seen_headers(get(t, "/headers"))
    assert h["host"] == "localhost:%d" % app.port
    assert h["x-original-host"] == t[2]
    t = tunnel(host_header="example.org")
    h = seen_headers(get(t, "/headers"))
    assert h["host"] == "example.org" and h["x-original-host"] == t[2]
    t = tunnel(host_header="preserve")
    h = seen_headers(get(t, "/headers"))
    assert h["host"] == t[2] and "x-original-host" not in h


def test_request_and_response_header_rules(tunnel):
    t = tunnel(request_header={"add": ["X-Added: yes"], "remove": ["X-Drop"]},
               response_header={"add": ["X-Resp: 1"], "remove": ["X-Secret"]})
    r = get(t, "/headers", headers=[("X-Drop", "gone"), ("X-Stay", "here")])
    h = seen_headers(r)
    assert h["x-added"] == "yes" and h["x-stay"] == "here" and "x-drop" not in h
    assert r.header("X-Resp") == "1" and r.header("X-Secret") is None
    assert r.header("X-Keep") == "k"


def test_ip_restriction(tunnel):
    t = tunnel(ip_restriction={"deny_cidrs": ["127.0.0.1/8"]})
    r = get(t, "/")
    assert r.status == 403 and b"Forbidden" in r.body
    t = tunnel(ip_restriction={"allow_cidrs": ["10.0.0.0/8", "::1/128"]})
    assert get(t, "/").status == 403
    t = tunnel(ip_restriction={"allow_cidrs": ["127.0.0.0/8"], "deny_cidrs": ["10.1.0.0/16"]})
    assert get(t, "/").status == 200


def test_file_server(tunnel, tmp_path):
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    data = A.pattern(300000, seed=3)
    (root / "blob.bin").write_bytes(data)
    (root / "a b.txt").write_text("spaced")
    (root / "sub" / "index.html").write_text("<p>index</p>")
    (tmp_path / "secret.txt").write_text("outside")
    t = tunnel(local="file://" + str(root))
    r = get(t, "/blob.bin")
    assert r.status == 200 and r.body == data
    assert r.header("Content-Type") == "application/octet-stream"
    r = get(t, "/a%20b.txt")
    assert r.body == b"spaced" and r.header("Content-Type").startswith("text/plain")
    r = get(t, "/")
    assert r.status == 200 and b'<a href="blob.bin">blob.bin</a>' in r.body
    assert b'<a href="sub/">sub/</a>' in r.body and b'href="a%20b.txt"' in r.body
    assert get(t, "/sub/").body == b"<p>index</p>"
    assert get(t, "/sub").status == 301
    assert get(t, "/missing").status == 404
    for evil in ("/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt"):
        r = get(t, evil)
        assert r.status in (400, 404) and b"outside" not in r.body, evil
    assert get(t, "/blob.bin", method="POST", body=b"x").status == 405
    r = get(t, "/blob.bin", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == str(len(data))
    r = get(t, "/missing", method="HEAD")
    assert r.status == 404 and int(r.header("Content-Length")) > 0 and r.body == b""
    # Lookups run on the host's thread pool: pipelined requests on one
    # connection are still answered in order, each once.
    s = conn(t)
    f = s.makefile("rb")
    s.sendall(b"GET /a%20b.txt HTTP/1.1\r\nHost: x\r\n\r\n"
              b"HEAD /blob.bin HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /sub/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert A.read_response(f).body == b"spaced"
    r = A.read_response(f, method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == str(len(data)) and r.body == b""
    assert b'<a href="sub/">sub/</a>' in A.read_response(f).body
    assert A.read_response(f).status == 404
    assert A.read_response(f).body == b"<p>index</p>"
    assert f.read() == b""  # Connection: close after the last one
    s.close()


def test_file_server_empty_directory(tunnel, tmp_path):
    """An empty directory lists as an empty page; the listing once sorted
    its (absent) names with qsort(NULL, 0), which kills a UBSan build."""
    root = tmp_path / "empty"
    root.mkdir()
    t = tunnel(local="file://" + str(root))
    r = get(t, "/")
    assert r.status == 200 and b"<pre>" in r.body and b"<a href" not in r.body
    assert get(t, "/").status == 200  # the agent is still there


# ---------------------------------------------------------------------------
# configuration errors


@pytest.mark.parametrize("options,expected", [
    ({"bind_tls": "sometimes"}, "HTTP tunnel web specifies invalid 'bind_tls': sometimes"),
    ({"ip_restriction": {"deny_cidrs": ["10.0.0.0/33"]}}, "10.0.0.0/33"),
    ({"ip_restriction": {"allow_cidrs": ["not-an-ip"]}}, "not-an-ip"),
    ({"hostname": "a.example", "subdomain": "a"},
     "Tunnel web must not specify both hostname and subdomain."),
    ({"request_header": {"add": ["NoColon"]}}, "NoColon"),
])
def test_invalid_options_are_refused(start_edge, procs, tmp_path, options, expected):
    edge = start_edge()
    agent, cfg = HH.start_agent(procs, tmp_path, edge,
                                {"web": HH.http_tunnel_def(H.free_port(), **options)})
    rc = agent.wait_exit(H.t(15))
    agent.expected_rc = rc
    agent.out.join()
    agent.err.join()
    out = agent.out.text() + agent.err.text()
    assert expected in out, out
    assert rc != 0 or agent.find_log("started tunnel") is None


def _config_check(tmp_path, text, cmd=("config", "check")):
    cfg = tmp_path / "c.yml"
    cfg.write_text(text)
    return subprocess.run([H.BURROW, *cmd, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, HOME=str(tmp_path)))


def test_config_check_refuses_http_errors(tmp_path):
    """The plugin's declarations are the only schema of its keys: config
    check loads the plugins and reports at the key or value it refuses."""
    head = 'version: "2"\ntunnels:\n  web:\n    proto: http\n    addr: 80\n'
    cases = [("    bind_tls: sometimes\n",
              "c.yml:6:15: HTTP tunnel web specifies invalid 'bind_tls': sometimes"),
             ("    hostname: a.example\n    subdomain: a\n",
              "must not specify both hostname and subdomain."),
             ("    ip_restriction:\n      allow_cidrs: [10.0.0.0/33]\n",
              "c.yml:7:7: Tunnel web specifies an invalid CIDR in 'ip_restriction.allow_cidrs': "
              "10.0.0.0/33"),
             ("    request_header:\n      add: [no-colon-here]\n",
              "c.yml:7:7: Tunnel web specifies an invalid header in 'request_header.add'"),
             # ngrok 3 files are strict: a key neither the core nor the plugin knows
             ("    options: x\n", 'c.yml:6:5: field options not found in tunnel "web" (proto http)'),
             ("    request_header:\n      addd: [X-A: 1]\n",
              'c.yml:6:5: field request_header not found in tunnel "web" (proto http)')]
    for extra, expected in cases:
        r = _config_check(tmp_path, head + extra)
        assert r.returncode == 1 and expected in r.stderr, (extra, r.stderr)
        assert r.stdout == "", r.stdout


def test_config_keys_strict_only_in_versioned_files(tmp_path):
    """Classic (unversioned) files ignore unknown keys, as ngrok 2 does; a
    tcp tunnel knows no hostname; ngrok keys burrow accepts but does not act
    on pass."""
    r = _config_check(tmp_path, "tunnels:\n  web:\n    proto: http\n    addr: 80\n"
                                "    options: x\n")
    assert r.returncode == 0, r.stderr
    r = _config_check(tmp_path, 'version: "2"\ntunnels:\n  s: {proto: tcp, addr: 22, '
                                'hostname: h}\n')
    assert r.returncode == 1, r.stderr
    assert 'c.yml:3:29: field hostname not found in tunnel "s" (proto tcp)' in r.stderr
    r = _config_check(tmp_path, 'version: "2"\ntunnels:\n  web:\n    proto: http\n'
                                '    addr: 80\n    compression: true\n    oauth: {provider: x}\n'
                                '    labels: [a=b]\n')
    assert r.returncode == 0, r.stderr


def test_start_refuses_what_config_check_refuses(tmp_path):
    r = _config_check(tmp_path, 'version: "2"\nserver_addr: 127.0.0.1:9\ntunnels:\n  web:\n'
                                '    proto: http\n    addr: 80\n    options: x\n',
                      cmd=("start", "--all", "--log", "false"))
    assert r.returncode == 1, r.stderr
    assert 'c.yml:7:5: field options not found in tunnel "web" (proto http)' in r.stderr


def test_http_and_https_plugins_conform():
    """One object provides both protos (ABI 1.2 siblings); the checker
    checks each of them."""
    check = os.path.join(H.BUILD_DIR, "sdk", "burrow-plugin-check")
    so = os.path.join(H.BUILD_DIR, "plugins", "http", "http.so")
    r = subprocess.run([check, so], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "plugin conforms" in r.stdout, r.stdout
    for name, edge in (("http", 2), ("https", 3)):
        assert "name=%s scheme=%s edge_type=%d abi=1.2" % (name, name, edge) in r.stdout
    assert not os.path.exists(os.path.join(H.BUILD_DIR, "plugins", "http", "https.so"))
