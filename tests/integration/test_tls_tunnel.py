"""tls tunnels (docs/tls.md): the edge's HTTPS port routes on the
ClientHello's SNI; names held by tls tunnels pass through untouched to the
agent, which either joins them with the local service (terminate_at:
upstream) or ends TLS itself (crt/key, mutual TLS). Real burrowd and
burrow, Python ssl and openssl s_client as clients."""
import hashlib
import os
import socket
import ssl
import subprocess
import time

import pytest

import helpers as H
import edge_helpers as HH
from test_api import call, web_addr
from test_proxy_proto import read_proxy_header

DOMAIN = HH.DOMAIN


# --------------------------------------------------------------------------
# certificates: CAs and leaf certificates made with the openssl command


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
             "-subj", "/CN=%s" % name, cwd=d)
    return os.path.join(d, name + ".pem")


def make_cert(d, name, ca, cn, sans=(), client=False):
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        if sans:
            f.write("subjectAltName=" + ",".join("DNS:" + s for s in sans) + "\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s" % cn, cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", name + ".pem", cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tlscerts"))
    c = {}
    for ca in ("local-ca", "term-ca", "client-ca", "rogue-ca"):
        c[ca] = make_ca(d, ca)
    names = ["*." + DOMAIN]
    c["local"] = make_cert(d, "local", "local-ca", "local service", names)
    c["term"] = make_cert(d, "term", "term-ca", "agent termination", names)
    c["client"] = make_cert(d, "client", "client-ca", "trusted client", client=True)
    c["rogue"] = make_cert(d, "rogue", "rogue-ca", "rogue client", client=True)
    return c


# --------------------------------------------------------------------------
# local services


class TLSEchoServer(H._Server):
    """The local service of a passthrough tunnel: ends TLS with its own
    certificate and echoes the plaintext until EOF. A connection that
    starts with b"BULK" and an 8-byte length instead receives that many
    bytes, answers their SHA-256, then sends that many pattern bytes: one
    direction at a time, as an SSL object must not be read and written
    from two threads at once."""

    def __init__(self, cert, key):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        super().__init__()

    def handle(self, conn):
        conn.settimeout(120)
        s = self.ctx.wrap_socket(conn, server_side=True)
        first = s.recv(1 << 16)
        if first.startswith(b"BULK") and len(first) >= 12:
            bulk(s, int.from_bytes(first[4:12], "big"), first[12:])
            return
        while first:
            s.sendall(first)
            first = s.recv(1 << 18)
        try:
            s.unwrap()
        except (OSError, ssl.SSLError):
            pass


def bulk(s, total, got):
    h = hashlib.sha256(got)
    n = len(got)
    while n < total:
        d = s.recv(1 << 20)
        if not d:
            return
        h.update(d)
        n += len(d)
    s.sendall(h.digest())
    block = H.pattern_block(5, 1 << 20)
    for i in range(0, total, len(block)):
        s.sendall(block[:total - i])


class PlainEchoServer(H._Server):
    """The local service behind agent termination: records and echoes."""

    def __init__(self):
        self.received = bytearray()
        super().__init__()

    def handle(self, conn):
        conn.settimeout(120)
        while True:
            d = conn.recv(1 << 18)
            if not d:
                break
            with self.lock:
                if len(self.received) < 4096:
                    self.received += d[:4096]
            conn.sendall(d)
        conn.shutdown(socket.SHUT_WR)


@pytest.fixture
def edge(start_edge):
    return start_edge(extra=["--domain", DOMAIN, "--http-header-timeout", "2s"])


def agent_with(procs, tmp_path, edge, tunnels, name="a"):
    return procs.add(HH.ConfigAgent(str(tmp_path / name), edge.addr, edge.ca, tunnels,
                                    name="burrow-" + name))


def tls_client(port, sni, cafile=None, cert=None):
    """A TLS connection to the edge's HTTPS port presenting `sni`."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else \
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not cafile:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(*cert)
    s = ctx.wrap_socket(H.connect(port), server_hostname=sni)
    s.settimeout(H.t(20))
    return s


def peer_cn(s):
    der = s.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                         capture_output=True, check=True).stdout.decode()
    return out.strip()


def roundtrip(s, data):
    """Send, then read as much back (small payloads: both fit in buffers)."""
    s.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        d = s.recv(1 << 18)
        assert d, "closed after %d of %d bytes" % (len(got), len(data))
        got += d
    return bytes(got)


@pytest.fixture
def local_tls(servers, certs):
    s = TLSEchoServer(*certs["local"])
    servers.append(s)
    return s


@pytest.fixture
def plain(servers):
    s = PlainEchoServer()
    servers.append(s)
    return s


# --------------------------------------------------------------------------
# passthrough


def test_passthrough_shows_local_certificate_and_bytes_unchanged(edge, local_tls, certs, procs,
                                                                  tmp_path):
    agent = agent_with(procs, tmp_path, edge, {
        "pt": {"proto": "tls", "addr": local_tls.port, "subdomain": "pt"}})
    url = agent.urls(["pt"])["pt"]
    assert url == "tls://pt.%s:%d" % (DOMAIN, edge.https_port)
    s = tls_client(edge.https_port, "pt." + DOMAIN, cafile=certs["local-ca"])
    assert "local service" in peer_cn(s)
    data = H.pattern_block(7, 1 << 16)
    assert roundtrip(s, data) == data
    s.close()
    # openssl s_client sees the same certificate, verified against the local CA.
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % edge.https_port,
                        "-servername", "pt." + DOMAIN, "-CAfile", certs["local-ca"],
                        "-verify_return_error"],
                       input=b"hello\n", capture_output=True, timeout=H.t(20))
    out = r.stdout.decode(errors="replace")
    assert "CN = local service" in out or "CN=local service" in out, out
    assert "Verify return code: 0 (ok)" in out, out


def test_passthrough_64mib_byte_exact(edge, local_tls, certs, procs, tmp_path):
    transfer(edge, local_tls, certs, procs, tmp_path,
             (16 if (H.QUICK or H.ASAN) else 64) << 20)


@pytest.mark.slow
@pytest.mark.deadline(600)
def test_passthrough_1gib_byte_exact(edge, local_tls, certs, procs, tmp_path):
    transfer(edge, local_tls, certs, procs, tmp_path, 1 << 30)


def transfer(edge, local_tls, certs, procs, tmp_path, total):
    """`total` bytes up, their hash back, `total` pattern bytes down."""
    agent = agent_with(procs, tmp_path, edge, {
        "big": {"proto": "tls", "addr": local_tls.port, "subdomain": "big"}})
    agent.urls(["big"])
    s = tls_client(edge.https_port, "big." + DOMAIN, cafile=certs["local-ca"])
    block = H.pattern_block(3, 1 << 20)
    sent = hashlib.sha256()
    s.sendall(b"BULK" + total.to_bytes(8, "big"))
    for _ in range(total // len(block)):
        s.sendall(block)
        sent.update(block)
    digest = bytearray()
    while len(digest) < 32:
        d = s.recv(32 - len(digest))
        assert d, "closed before the digest"
        digest += d
    assert bytes(digest) == sent.digest()
    want, got, n = H.pattern_block(5, 1 << 20), hashlib.sha256(), 0
    expect = hashlib.sha256()
    for i in range(0, total, len(want)):
        expect.update(want[:total - i])
    while n < total:
        d = s.recv(1 << 20)
        assert d, "closed after %d of %d bytes" % (n, total)
        got.update(d)
        n += len(d)
    assert n == total and got.digest() == expect.digest()
    s.close()


# --------------------------------------------------------------------------
# termination in the agent, mutual TLS


def test_agent_termination_shows_configured_certificate(edge, plain, certs, procs, tmp_path):
    crt, key = certs["term"]
    agent = agent_with(procs, tmp_path, edge, {
        "t": {"proto": "tls", "addr": plain.port, "subdomain": "term", "crt": crt, "key": key}})
    agent.urls(["t"])
    s = tls_client(edge.https_port, "term." + DOMAIN, cafile=certs["term-ca"])
    assert "agent termination" in peer_cn(s)
    assert roundtrip(s, b"plaintext please\n") == b"plaintext please\n"
    s.close()
    assert bytes(plain.received).startswith(b"plaintext please\n")


def mtls_agent(edge, plain, certs, procs, tmp_path, key_name="client_cas"):
    crt, key = certs["term"]
    agent = agent_with(procs, tmp_path, edge, {
        "m": {"proto": "tls", "addr": plain.port, "subdomain": "m", "crt": crt, "key": key,
              key_name: certs["client-ca"]}})
    agent.urls(["m"])
    return agent


def refused(port, sni, cafile, cert=None):
    """True when the handshake or the first exchange fails (TLS 1.3 clients
    learn of a refused certificate only when they read)."""
    try:
        s = tls_client(port, sni, cafile=cafile, cert=cert)
        s.sendall(b"x")
        d = s.recv(10)
        s.close()
        return d == b""
    except (ssl.SSLError, OSError):
        return True


@pytest.mark.parametrize("key_name", ["client_cas", "mutual_tls_cas"])
def test_mutual_tls(edge, plain, certs, procs, tmp_path, key_name):
    agent = mtls_agent(edge, plain, certs, procs, tmp_path, key_name)
    sni = "m." + DOMAIN
    assert refused(edge.https_port, sni, certs["term-ca"])
    assert refused(edge.https_port, sni, certs["term-ca"], cert=certs["rogue"])
    assert plain.accepted == 0
    s = tls_client(edge.https_port, sni, cafile=certs["term-ca"], cert=certs["client"])
    assert roundtrip(s, b"mutual\n") == b"mutual\n"
    s.close()
    agent.wait_log("client certificate verified", subject=None)
    _, rec = agent.wait_log("client certificate verified", subject=None)
    assert "trusted client" in rec["subject"]


# --------------------------------------------------------------------------
# one port for https and tls; names are one or the other


def test_https_and_tls_side_by_side(edge, local_tls, certs, procs, tmp_path, servers):
    web = HH.EchoHeadServer()
    servers.append(web)
    agent = agent_with(procs, tmp_path, edge, {
        "web": {"proto": "http", "addr": web.port, "subdomain": "web", "schemes": ["https"]},
        "pt": {"proto": "tls", "addr": local_tls.port, "subdomain": "pt"}})
    agent.urls(["web", "pt"])
    for _ in range(3):
        s = tls_client(edge.https_port, "pt." + DOMAIN, cafile=certs["local-ca"])
        assert roundtrip(s, b"tls side\n") == b"tls side\n"
        s.close()
        ws = tls_client(edge.https_port, "web." + DOMAIN, cafile=edge.ca)
        c = HH.Client(edge.https_port, sock=ws)
        c.request("web." + DOMAIN)
        status, _, _ = c.response()
        assert status == 200
        c.close()
    # An https request for the tls tunnel's name is not served as https.
    ws = tls_client(edge.https_port, "pt." + DOMAIN)
    assert "local service" in peer_cn(ws)
    ws.close()


def test_name_is_https_or_tls_never_both(edge, local_tls, procs, tmp_path, servers):
    web = HH.EchoHeadServer()
    servers.append(web)
    a = agent_with(procs, tmp_path, edge, {
        "web": {"proto": "http", "addr": web.port, "subdomain": "one", "schemes": ["https"]},
        "pt": {"proto": "tls", "addr": local_tls.port, "subdomain": "two"}}, name="a")
    a.urls(["web", "pt"])
    b = agent_with(procs, tmp_path, edge, {}, name="b")
    b.wait_log("client session established")
    addr = web_addr(b)
    st, _, body = call(addr, "POST", "/api/tunnels",
                       {"name": "x", "proto": "tls", "addr": str(local_tls.port),
                        "subdomain": "one"})
    assert st == 502 or st == 400, body
    assert "already in use by an https tunnel" in body["details"]["err"], body
    st, _, body = call(addr, "POST", "/api/tunnels",
                       {"name": "y", "proto": "http", "addr": str(web.port), "subdomain": "two",
                        "schemes": ["https"]})
    assert "already in use by a tls tunnel" in body["details"]["err"], body
    # The same session cannot hold one name both ways either.
    st, _, body = call(web_addr(a), "POST", "/api/tunnels",
                       {"name": "z", "proto": "tls", "addr": str(local_tls.port),
                        "subdomain": "one"})
    assert "already in use by an https tunnel" in body["details"]["err"], body


# --------------------------------------------------------------------------
# what the SNI router refuses, next to a good connection


def test_bad_hellos_leave_a_parallel_connection_alone(edge, local_tls, certs, procs, tmp_path):
    agent = agent_with(procs, tmp_path, edge, {
        "pt": {"proto": "tls", "addr": local_tls.port, "subdomain": "pt"}})
    agent.urls(["pt"])
    good = tls_client(edge.https_port, "pt." + DOMAIN, cafile=certs["local-ca"])
    assert roundtrip(good, b"before\n") == b"before\n"
    accepted = local_tls.accepted
    # Unknown SNI: terminated by the edge as https (its dev certificate).
    s = tls_client(edge.https_port, "nobody." + DOMAIN, cafile=edge.ca)
    assert "local service" not in peer_cn(s)
    s.close()
    # No SNI at all: the edge's default certificate, as for https.
    s = tls_client(edge.https_port, None)
    assert "local service" not in peer_cn(s)
    s.close()
    # Garbage: closed.
    g = H.connect(edge.https_port)
    g.sendall(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")
    assert H.recv_until_close(g, H.t(5)) is not None
    # Plain HTTP on the HTTPS port: closed, as before tls tunnels.
    g = H.connect(edge.https_port)
    g.sendall(b"GET / HTTP/1.1\r\nHost: pt.%s\r\n\r\n" % DOMAIN.encode())
    assert H.recv_until_close(g, H.t(5)) is not None
    # A ClientHello that stops half way: closed after the header timeout.
    hello = open(os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "clienthello",
                              "python_ssl"), "rb").read()
    slow = H.connect(edge.https_port)
    slow.sendall(hello[:40])
    t0 = time.monotonic()
    H.recv_until_close(slow, H.t(10))
    assert time.monotonic() - t0 < H.t(8)
    # An oversized hello: refused.
    big = H.connect(edge.https_port)
    big.sendall(b"\x16\x03\x01\x40\x00\x01\x01\x00\x00" + b"\x00" * 100)
    assert H.recv_until_close(big, H.t(5)) is not None
    assert local_tls.accepted == accepted
    assert roundtrip(good, b"after\n") == b"after\n"
    good.close()


# --------------------------------------------------------------------------
# the agent side: API, CLI, config check, ip_restriction


def test_api_lists_tls_tunnel_with_conns_metrics(edge, local_tls, certs, procs, tmp_path):
    a = agent_with(procs, tmp_path, edge, {}, name="api")
    a.wait_log("client session established")
    addr = web_addr(a)
    st, _, t = call(addr, "POST", "/api/tunnels",
                    {"name": "sec", "proto": "tls", "addr": str(local_tls.port),
                     "hostname": "secure.example.org"})
    assert st == 201, t
    assert t["proto"] == "tls"
    assert t["public_url"] == "tls://secure.example.org:%d" % edge.https_port
    assert t["config"] == {"addr": "localhost:%d" % local_tls.port, "inspect": False}
    s = tls_client(edge.https_port, "secure.example.org")
    assert roundtrip(s, b"m\n") == b"m\n"
    s.close()
    deadline = time.time() + H.t(5)
    while True:
        st, _, t = call(addr, "GET", "/api/tunnels/sec")
        if t["metrics"]["conns"]["count"] == 1 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert t["metrics"]["conns"]["count"] == 1


def test_ip_restriction_refuses_before_forwarding(edge, local_tls, procs, tmp_path):
    agent = agent_with(procs, tmp_path, edge, {
        "pt": {"proto": "tls", "addr": local_tls.port, "subdomain": "deny",
               "ip_restriction": {"deny_cidrs": ["127.0.0.0/8"]}}})
    agent.urls(["pt"])
    assert refused(edge.https_port, "deny." + DOMAIN, None)
    agent.wait_log("refused client by ip_restriction")
    assert local_tls.accepted == 0


def test_cli_tls_command_and_ngrok_errors(edge, local_tls, certs, start_agent, tmp_path):
    crt, key = certs["term"]
    r = subprocess.run([H.BURROW, "tls", "--crt", crt, "443"], capture_output=True,
                       timeout=H.t(10), cwd=str(tmp_path), env={"HOME": str(tmp_path)})
    assert r.returncode != 0
    assert b"TLS tunnel command_line must supply both 'crt' and 'key' or neither" in r.stderr
    r = subprocess.run([H.BURROW, "tls", "--client-cas", certs["client-ca"], "443"],
                       capture_output=True, timeout=H.t(10), cwd=str(tmp_path),
                       env={"HOME": str(tmp_path)})
    assert b"specified client CA roots but no crt and key" in r.stderr
    agent = start_agent(local_tls.port, edge, proto="tls", extra=["--subdomain", "cli"])
    agent.wait_tunnel()
    assert agent.url == "tls://cli.%s:%d" % (DOMAIN, edge.https_port)
    s = tls_client(edge.https_port, "cli." + DOMAIN, cafile=certs["local-ca"])
    assert roundtrip(s, b"cli\n") == b"cli\n"
    s.close()


def test_config_check_checks_certificate_files(certs, tmp_path):
    crt, _ = certs["term"]
    _, other_key = certs["local"]
    cfg = tmp_path / "burrow.yml"
    cfg.write_text('version: "2"\ntunnels:\n  t:\n    proto: tls\n    addr: 443\n'
                   '    crt: %s\n    key: %s\n' % (crt, other_key))
    r = subprocess.run([H.BURROW, "config", "check", "--config", str(cfg)], capture_output=True,
                       timeout=H.t(10), env={"HOME": str(tmp_path)})
    assert r.returncode != 0
    assert b"does not match the certificate" in r.stderr, r.stderr
    cfg.write_text('version: "2"\ntunnels:\n  t:\n    proto: tls\n    addr: 443\n'
                   '    crt: %s\n    key: /nonexistent.key\n' % crt)
    r = subprocess.run([H.BURROW, "config", "check", "--config", str(cfg)], capture_output=True,
                       timeout=H.t(10), env={"HOME": str(tmp_path)})
    assert r.returncode != 0
    assert b"cannot read 'key' /nonexistent.key" in r.stderr, r.stderr
    cfg.write_text('version: "2"\ntunnels:\n  t:\n    proto: tls\n    addr: 443\n'
                   '    crt: %s\n    key: %s\n' % certs["term"])
    r = subprocess.run([H.BURROW, "config", "check", "--config", str(cfg)], capture_output=True,
                       timeout=H.t(10), env={"HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr


def test_resume_keeps_tls_name_and_refuses_meanwhile(edge, local_tls, certs, procs, servers,
                                                     tmp_path):
    proxy = H.CuttableProxy(edge.agent_port)
    servers.append(proxy)
    agent = procs.add(HH.ConfigAgent(str(tmp_path / "r"), "127.0.0.1:%d" % proxy.port, edge.ca,
                                     {"rnd": {"proto": "tls", "addr": local_tls.port}},
                                     name="burrow-r"))
    url = agent.urls(["rnd"])["rnd"]
    host = HH.url_host(url)
    assert host.endswith("." + DOMAIN)
    mark, emark = agent.out.mark(), edge.out.mark()
    assert proxy.cut() >= 1
    edge.wait_log("session closed", since=emark, timeout=10)
    # While the agent is away its name stays a tls name: refused with an alert, never
    # terminated with the edge's certificate.
    with pytest.raises(ssl.SSLError) as e:
        tls_client(edge.https_port, host, cafile=certs["local-ca"])
    assert "UNRECOGNIZED_NAME" in str(e.value).upper(), e.value
    _, rec = agent.wait_log("started tunnel", timeout=20, since=mark, url=None)
    assert rec["url"] == url
    s = tls_client(edge.https_port, host, cafile=certs["local-ca"])
    assert roundtrip(s, b"back\n") == b"back\n"
    s.close()


def test_curl_through_passthrough_reaches_local_https_server(edge, certs, procs, tmp_path,
                                                             servers):
    srv = H.HttpsServer(*certs["local"], b"served by the local https server\n")
    servers.append(srv)
    agent = agent_with(procs, tmp_path, edge, {
        "web": {"proto": "tls", "addr": srv.port, "subdomain": "shop"}})
    url = agent.urls(["web"])["web"]
    host = "shop." + DOMAIN
    assert url == "tls://%s:%d" % (host, edge.https_port)
    # curl verifies the local service's certificate for the public name.
    r = subprocess.run(["curl", "-sS", "--cacert", certs["local-ca"], "--resolve",
                        "%s:%d:127.0.0.1" % (host, edge.https_port),
                        "https://%s:%d/" % (host, edge.https_port)],
                       capture_output=True, timeout=H.t(20))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"served by the local https server\n"


# --------------------------------------------------------------------------
# proxy_proto: the client's address reaches the local service first


class ProxyTLSEchoServer(TLSEchoServer):
    """A passthrough tunnel's local service behind proxy_proto: the PROXY
    header arrives in the clear, TLS starts after it."""

    def __init__(self, cert, key):
        self.headers = []
        super().__init__(cert, key)

    def handle(self, conn):
        conn.settimeout(30)
        hdr, rest = read_proxy_header(conn)
        assert not rest, "bytes before TLS that are not a PROXY header: %r" % rest
        with self.lock:
            self.headers.append(hdr)
        super().handle(conn)


class ProxyPlainEchoServer(PlainEchoServer):
    """Behind agent termination: the header, then plaintext."""

    def __init__(self):
        self.headers = []
        super().__init__()

    def handle(self, conn):
        conn.settimeout(30)
        hdr, rest = read_proxy_header(conn)
        with self.lock:
            self.headers.append(hdr)
        if rest:
            conn.sendall(rest)
        super().handle(conn)


def test_proxy_proto_v1_before_passed_through_tls(edge, certs, procs, tmp_path, servers):
    svc = ProxyTLSEchoServer(*certs["local"])
    servers.append(svc)
    agent = agent_with(procs, tmp_path, edge, {
        "pp": {"proto": "tls", "addr": svc.port, "subdomain": "pp", "proxy_proto": 1}})
    agent.urls(["pp"])
    s = tls_client(edge.https_port, "pp." + DOMAIN, cafile=certs["local-ca"])
    me = s.getsockname()
    assert "local service" in peer_cn(s)
    assert roundtrip(s, b"after the header\n") == b"after the header\n"
    s.close()
    with svc.lock:
        assert svc.headers == [{"version": 1, "family": "TCP4", "src": ("127.0.0.1", me[1]),
                                "dst": ("127.0.0.1", edge.https_port)}]


def test_proxy_proto_v2_carries_verified_client_cn(edge, certs, procs, tmp_path, servers):
    svc = ProxyPlainEchoServer()
    servers.append(svc)
    crt, key = certs["term"]
    agent = agent_with(procs, tmp_path, edge, {
        "m": {"proto": "tls", "addr": svc.port, "subdomain": "mpp", "crt": crt, "key": key,
              "mutual_tls_cas": certs["client-ca"], "proxy_proto": 2}})
    agent.urls(["m"])
    s = tls_client(edge.https_port, "mpp." + DOMAIN, cafile=certs["term-ca"],
                   cert=certs["client"])
    me = s.getsockname()
    assert roundtrip(s, b"mutual\n") == b"mutual\n"
    s.close()
    with svc.lock:
        (hdr,) = svc.headers
    assert hdr["src"] == ("127.0.0.1", me[1]) and hdr["dst"] == ("127.0.0.1", edge.https_port)
    # PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, verified, CN as a PP2_SUBTYPE_SSL_CN
    assert hdr["ssl"] == {"client": 0x03, "verify": 0, "sub": {0x22: "trusted client"}}, hdr


def test_proxy_proto_invalid_value_refused(tmp_path):
    cfg = tmp_path / "bad.yml"
    cfg.write_text("version: 2\ntunnels:\n  t:\n    proto: tls\n    addr: 443\n"
                   "    proxy_proto: 3\n")
    r = subprocess.run([H.BURROW, "config", "check", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=H.t(20))
    assert r.returncode != 0, r
    assert "invalid 'proxy_proto': 3" in r.stdout + r.stderr, r
