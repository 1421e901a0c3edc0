"""proxy_proto: the agent starts every local connection with a PROXY
protocol header (HAProxy's v1 text or v2 binary) carrying the public
client's address, for tcp and http tunnels. Real burrowd and burrow; the
local services parse the header strictly, here, from the spec."""
import json
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest

import helpers as H
import http_helpers as HH
from test_api import call, web_addr

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _read(conn, n):
    return H.recv_exact(conn, n)


def read_proxy_header(conn):
    """Consume a PROXY header from `conn` if one starts it; returns
    (header dict or None, bytes read that were not a header). Strict: any
    deviation from the spec raises."""
    first = conn.recv(1)
    if not first:
        return None, b""
    if first == b"P":
        line = bytearray(first)
        while len(line) < 6:  # a request line may start with P too: POST, PUT
            line += _read(conn, 1)
            if not b"PROXY ".startswith(bytes(line)):
                return None, bytes(line)
        while not line.endswith(b"\r\n"):
            assert len(line) < 107, "v1 line over 107 bytes: %r" % bytes(line)
            line += _read(conn, 1)
        text = line[:-2].decode("ascii")
        parts = text.split(" ")
        assert parts[0] == "PROXY", text
        if parts[1] == "UNKNOWN":
            return {"version": 1, "family": "UNKNOWN"}, b""
        assert parts[1] in ("TCP4", "TCP6") and len(parts) == 6, text
        fam = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
        for ip in parts[2:4]:
            # canonical: what inet_ntop would print back, for IPv4 at least
            packed = socket.inet_pton(fam, ip)
            if fam == socket.AF_INET:
                assert socket.inet_ntop(fam, packed) == ip, ip
        for port in parts[4:6]:
            assert port.isdigit() and (port == "0" or port[0] != "0") and int(port) <= 65535
        return {"version": 1, "family": parts[1], "src": (parts[2], int(parts[4])),
                "dst": (parts[3], int(parts[5]))}, b""
    if first != V2_SIG[:1]:
        return None, first
    head = first + _read(conn, 15)
    assert head[:12] == V2_SIG, head
    ver_cmd, fam, length = head[12], head[13], struct.unpack(">H", head[14:16])[0]
    body = _read(conn, length)
    assert ver_cmd >> 4 == 2 and ver_cmd & 0xF in (0, 1), hex(ver_cmd)
    if ver_cmd & 0xF == 0:
        return {"version": 2, "family": "LOCAL"}, b""
    if fam == 0x11:
        assert length >= 12, length
        src, dst = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(socket.AF_INET,
                                                                                 body[4:8])
        sp, dp = struct.unpack(">HH", body[8:12])
        hdr = {"version": 2, "family": "TCP4", "src": (src, sp), "dst": (dst, dp)}
        return with_tlvs(hdr, body[12:]), b""
    assert fam == 0x21 and length >= 36, (fam, length)
    src, dst = socket.inet_ntop(socket.AF_INET6, body[0:16]), socket.inet_ntop(socket.AF_INET6,
                                                                               body[16:32])
    sp, dp = struct.unpack(">HH", body[32:36])
    hdr = {"version": 2, "family": "TCP6", "src": (src, sp), "dst": (dst, dp)}
    return with_tlvs(hdr, body[36:]), b""


def parse_tlvs(data):
    """v2 TLVs (type, length, value), strictly: they must fill `data`."""
    out = []
    while data:
        assert len(data) >= 3, data
        t, n = data[0], struct.unpack(">H", data[1:3])[0]
        assert len(data) >= 3 + n, (t, n, len(data))
        out.append((t, data[3:3 + n]))
        data = data[3 + n:]
    return out


def with_tlvs(hdr, data):
    """hdr plus "ssl" when a PP2_TYPE_SSL TLV follows the addresses: its
    client flags, verify field and sub-TLVs by type."""
    for t, v in parse_tlvs(data):
        if t == 0x20:
            assert len(v) >= 5, v
            hdr["ssl"] = {"client": v[0], "verify": struct.unpack(">I", v[1:5])[0],
                          "sub": {st: sv.decode() for st, sv in parse_tlvs(v[5:])}}
    return hdr


class ProxyEchoServer(H._Server):
    """Reads an optional PROXY header, then echoes the rest until EOF;
    records (header, payload) per connection."""

    def __init__(self):
        self.seen = []
        super().__init__()

    def handle(self, conn):
        conn.settimeout(30)
        hdr, rest = read_proxy_header(conn)
        got = bytearray(rest)
        if rest:
            conn.sendall(rest)
        while True:
            data = conn.recv(65536)
            if not data:
                break
            got += data
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        with self.lock:
            self.seen.append((hdr, bytes(got)))


class ProxyHttpServer(H._Server):
    """An HTTP/1.1 service behind a PROXY header: every response body is
    JSON naming the connection's header, its number and the request body.
    With `tls` (a server SSLContext) TLS starts after the header, on the
    raw connection. After a request for /bye it closes the connection
    (keep-alive announced all the same, as a service timing out idle
    connections does)."""

    def __init__(self, tls=None):
        self.conn_count = 0
        self.tls = tls
        super().__init__()

    def handle(self, conn):
        conn.settimeout(30)
        hdr, rest = read_proxy_header(conn)
        with self.lock:
            self.conn_count += 1
            number = self.conn_count
        if self.tls:
            assert hdr is not None and not rest, "TLS before the PROXY header"
            conn = self.tls.wrap_socket(conn, server_side=True)
        buf = bytearray(rest)
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = bytes(buf).partition(b"\r\n\r\n")
            buf = bytearray(buf)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(buf) < length:
                buf += _read(conn, length - len(buf))
            body, buf = bytes(buf[:length]), bytearray(buf[length:])
            out = json.dumps({"proxy": hdr, "conn": number, "body": body.hex()}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(out) + out)
            if head.split(b" ")[1] == b"/bye":
                return


def start_agent(procs, tmp_path, edge, tunnels):
    agent, cfg = HH.start_agent(procs, tmp_path, edge, tunnels)
    urls = {}
    for _ in tunnels:
        i, rec = agent.wait_log("started tunnel", timeout=15,
                                since=0, url=None, name=lambda n: n not in urls)
        urls[rec["name"]] = rec["url"]
    return agent, cfg, urls


def roundtrip_tcp(port, payload):
    s = H.connect(port)
    me = s.getsockname()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    how, data, _ = H.recv_until_close(s, 20)
    s.close()
    assert how == "eof" and data == payload, (how, len(data))
    return me


def test_tcp_tunnels_v1_v2_and_none(start_edge, procs, tmp_path, servers):
    svc = ProxyEchoServer()
    servers.append(svc)
    edge = start_edge()
    _, _, urls = start_agent(procs, tmp_path, edge, {
        "v1": {"proto": "tcp", "addr": svc.port, "proxy_proto": 1},
        "v2": {"proto": "tcp", "addr": svc.port, "proxy_proto": "2"},
        "off": {"proto": "tcp", "addr": svc.port},
    })
    # Payload bytes that look like a header must pass untouched after it.
    payload = b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n" + V2_SIG + os.urandom(200_000)
    for name, version in (("v1", 1), ("v2", 2), ("off", None)):
        port = H.parse_tcp_url(urls[name])[1]
        # Without a header the service would take a PROXY-looking payload
        # for one: there, the payload must arrive from its first byte.
        data = payload if version else b"x" + payload
        me = roundtrip_tcp(port, data)
        with svc.lock:
            hdr, got = svc.seen[-1]
        if version is None:
            assert hdr is None and got == data
            continue
        assert hdr == {"version": version, "family": "TCP4", "src": ("127.0.0.1", me[1]),
                       "dst": ("127.0.0.1", port)}, (name, hdr, me)
        assert got == payload, name


class HttpClient:
    """One public connection to an http tunnel; request() returns the
    service's JSON answer."""

    def __init__(self, url, ca=None):
        scheme, hostport = url.split("://", 1)
        self.host, self.port = H.parse_hostport(hostport)
        if scheme == "https":
            self.sock = H.tls_connect(self.port, ca, server_name=self.host)
        else:
            self.sock = H.connect(self.port)
        self.me = self.sock.getsockname()
        self.f = self.sock.makefile("rb")

    def request(self, path="/x", body=b""):
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n\r\n"
                          % (path.encode(), self.host.encode(), self.port, len(body)) + body)
        status = self.f.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        length = None
        while True:
            line = self.f.readline()
            if line == b"\r\n":
                break
            k, _, v = line.partition(b":")
            if k.lower() == b"content-length":
                length = int(v)
        answer = json.loads(self.f.read(length))
        assert answer["body"] == body.hex()
        return answer

    def close(self):
        self.f.close()
        self.sock.close()


def test_http_header_before_tls_and_again_on_each_new_local_connection(
        start_edge, procs, tmp_path, servers):
    crt, key = tmp_path / "local.crt", tmp_path / "local.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    svc = ProxyHttpServer(tls=ctx)
    servers.append(svc)
    edge = start_edge()
    _, _, urls = start_agent(procs, tmp_path, edge, {
        "s": HH.http_tunnel_def("https://localhost:%d" % svc.port, proxy_proto=1)})
    c = HttpClient(urls["s"])
    first = c.request("/bye", b"one")
    time.sleep(0.5)  # the service's close reaches the agent between requests
    second = c.request("/x", b"two")
    c.close()
    # a new local connection for the same public one: a new header, same client
    assert second["conn"] == first["conn"] + 1, (first, second)
    want = {"version": 1, "family": "TCP4", "src": ["127.0.0.1", c.me[1]],
            "dst": ["127.0.0.1", c.port]}
    assert first["proxy"] == want and second["proxy"] == want, (first, second)


def test_https_edge_destination_is_its_https_listener(start_edge, procs, tmp_path, servers):
    """Through the edge's HTTPS listener the destination is that listener."""
    svc = ProxyHttpServer()
    servers.append(svc)
    edge = start_edge()
    _, _, urls = start_agent(procs, tmp_path, edge, {
        "hs": HH.http_tunnel_def(svc.port, proxy_proto=2, bind_tls="true", subdomain="pp-tls")})
    assert urls["hs"].startswith("https://"), urls
    c = HttpClient(urls["hs"], ca=edge.ca)
    got = c.request("/x", b"secret")
    c.close()
    assert c.port == edge.https_port
    assert got["proxy"] == {"version": 2, "family": "TCP4", "src": ["127.0.0.1", c.me[1]],
                            "dst": ["127.0.0.1", edge.https_port]}, got


def test_http_tunnels_one_header_per_local_connection(start_edge, procs, tmp_path, servers):
    svc = ProxyHttpServer()
    servers.append(svc)
    edge = start_edge()
    _, _, urls = start_agent(procs, tmp_path, edge, {
        "h1": HH.http_tunnel_def(svc.port, proxy_proto="1", subdomain="pp-one"),
        "h2": HH.http_tunnel_def(svc.port, proxy_proto=2, subdomain="pp-two"),
        "off": HH.http_tunnel_def(svc.port, subdomain="pp-off"),
    })
    for name, version in (("h1", 1), ("h2", 2), ("off", None)):
        # Two clients at once, requests interleaved, two each (keep-alive):
        # each client's requests share one local connection under its own
        # header, never the other's.
        clients = [HttpClient(urls[name]), HttpClient(urls[name])]
        answers = [[], []]
        for i in range(4):
            answers[i % 2].append(clients[i % 2].request("/x", bytes(range(256)) * (i + 1)))
        for c in clients:
            c.close()
        assert answers[0][0]["conn"] != answers[1][0]["conn"], answers
        for c, got in zip(clients, answers):
            assert got[0]["conn"] == got[1]["conn"], got
            assert got[0]["proxy"] == got[1]["proxy"], got
            if version is None:
                assert got[0]["proxy"] is None
                continue
            assert got[0]["proxy"] == {"version": version, "family": "TCP4",
                                       "src": ["127.0.0.1", c.me[1]],
                                       "dst": ["127.0.0.1", c.port]}, (name, got, c.me)


def burrow(args, home):
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=os.path.join(str(home), ".config"))
    return subprocess.run([H.BURROW] + args, capture_output=True, text=True, timeout=20,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("proto", ["tcp", "http"])
def test_config_check_names_invalid_value(tmp_path, proto):
    cfg = tmp_path / "b.yml"
    cfg.write_text('version: "2"\nauthtoken: x\ntunnels:\n  db:\n    proto: %s\n'
                   '    addr: 5432\n    proxy_proto: 3\n' % proto)
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode != 0, r.stdout
    assert "Tunnel db specifies invalid 'proxy_proto': 3 (must be 1 or 2)" in r.stderr, r.stderr
    cfg.write_text(cfg.read_text().replace("proxy_proto: 3", "proxy_proto: 2"))
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode == 0, r.stderr


def test_api_validates_and_config_hides_it(start_edge, start_agent, servers):
    svc = ProxyEchoServer()
    servers.append(svc)
    edge = start_edge()
    agent = start_agent(svc.port, edge)
    agent.wait_tunnel()
    addr = web_addr(agent)
    for proto, bad in (("tcp", "v2"), ("http", True), ("tcp", 3)):
        st, _, err = call(addr, "POST", "/api/tunnels", {"name": "p", "proto": proto,
                                                         "addr": svc.port, "proxy_proto": bad})
        want = json.dumps(bad) if not isinstance(bad, str) else bad
        assert (st, err["error_code"]) == (400, 102), err
        assert err["details"]["err"] == (
            "Tunnel p specifies invalid 'proxy_proto': %s (must be 1 or 2)" % want), err
    st, _, t = call(addr, "POST", "/api/tunnels", {"name": "p", "proto": "tcp",
                                                   "addr": svc.port, "proxy_proto": "1"})
    assert st == 201, t
    # ngrok's /api/tunnels config shows addr and inspect only
    assert set(t["config"]) == {"addr", "inspect"}, t["config"]
    port = H.parse_tcp_url(t["public_url"])[1]
    me = roundtrip_tcp(port, b"hello")
    with svc.lock:
        hdr, got = svc.seen[-1]
    assert hdr["src"] == ("127.0.0.1", me[1]) and got == b"hello", hdr
