"""Captured requests through the real agent: /api/requests/http (list, get,
clear, replay), the /inspect/http downloads, inspect_db_size -1, and TLS to
local services (host->connect with BW_CONNECT_TLS).

The tunnels use the `tcptls` fixture plugin (tests/plugins/tcptls): raw TCP
whose local side is dialled over TLS (option upstream_tls) and whose every
connection is captured as one exchange (client bytes = request, service
bytes = response). HTTP-specific capture contents are the http plugin's."""
import base64
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

import helpers as H
from test_api import call

MiB = 1 << 20
PLUGIN_PATH = "%s:%s" % (os.path.join(H.BUILD_DIR, "plugins"),
                         os.path.join(H.BUILD_DIR, "tests", "plugins", "tcptls"))


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    crt, key = str(d / "crt.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-subj", "/CN=localhost", "-days", "2"], check=True, capture_output=True)
    return crt, key


class TlsEcho(H._Server):
    """Echoes over TLS until the client's EOF, then closes; records the SNI
    and ALPN each client offered."""

    def __init__(self, cert, delay=0):
        self.delay = delay
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*cert)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.sni, self.alpn, self.done = [], [], []
        self.ctx.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        super().__init__()

    def handle(self, conn):
        conn.settimeout(60)
        s = self.ctx.wrap_socket(conn, server_side=True)
        self.alpn.append(s.selected_alpn_protocol())
        time.sleep(self.delay)  # let the agent's queue towards us fill up
        self.done.append(H.echo_until_eof(s))
        s.close()


def start_agent(procs, tmp_path, edge, tunnels, extra_cfg=""):
    """`burrow start --all` with a config of `tunnels` (name -> dict)."""
    web = H.free_port()
    lines = ['version: "2"', "authtoken: test-token", "server_addr: %s" % edge.addr,
             "root_cas: %s" % edge.ca, "web_addr: 127.0.0.1:%d" % web, extra_cfg, "tunnels:"]
    for name, d in tunnels.items():
        lines.append("  %s:" % name)
        lines += ["    %s: %s" % (k, v) for k, v in d.items()]
    home = tmp_path / ("home%d" % web)
    home.mkdir()
    cfg = home / "burrow.yml"
    cfg.write_text("\n".join(lines) + "\n")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "BURROW_PLUGIN_PATH": PLUGIN_PATH}
    a = procs.add(H.Proc([H.BURROW, "start", "--all", "--config", str(cfg), "--log", "stdout",
                          "--log-level", "debug"], "burrow", cwd=str(home), env=env))
    urls = {}
    for name in tunnels:
        _, rec = a.wait_log("started tunnel", 15, name=name, url=None)
        urls[name] = H.parse_tcp_url(rec["url"])[1]
    a.web = ("127.0.0.1", web)
    a.ports = urls
    return a


def exchange(port, payload, timeout=20):
    """Send payload, half-close, read everything until the tunnel closes."""
    s = H.connect(port, timeout)
    got, err = bytearray(), []

    def reader():
        try:
            while True:
                d = s.recv(1 << 18)
                if not d:
                    return
                got.extend(d)
        except OSError as e:
            err.append(repr(e))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:  # the tunnel may refuse before the payload is out
        err.append(repr(e))
    th.join(H.t(timeout))
    s.close()
    assert not th.is_alive(), "no EOF after %d bytes" % len(got)
    return bytes(got), err


def requests(agent, query=""):
    st, _, body = call(agent.web, "GET", "/api/requests/http" + query)
    assert st == 200, body
    return body["requests"]


def wait_requests(agent, n, query="", timeout=10):
    deadline = time.monotonic() + H.t(timeout)
    while True:
        r = requests(agent, query)
        if len(r) >= n and all(e["duration"] > 0 for e in r[:n]):
            return r
        assert time.monotonic() < deadline, r
        time.sleep(0.05)


# --------------------------------------------------------------------------
# TLS to the local service


@pytest.mark.deadline(90)
def test_tls_upstream_bytes_both_ways_and_half_close(start_edge, procs, servers, tmp_path, cert):
    svc = TlsEcho(cert)
    servers.append(svc)
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge, {"t": {"proto": "tcptls", "addr": "localhost:%d" %
                                                  svc.port, "inspect": "false"}})
    payload = H.pattern_block(7, 3 * MiB + 12345)
    got, err = exchange(a.ports["t"], payload, timeout=60)
    assert not err and len(got) == len(payload) and got == payload
    assert svc.done == [len(payload)]      # the server saw our EOF (half-close)
    assert svc.sni == ["localhost"] and svc.alpn == ["http/1.1"]
    a.wait_log("fixture joined", l="127.0.0.1:%d" % svc.port)
    for i in range(5):                     # small ones, one after another
        msg = b"hello %d\n" % i
        assert exchange(a.ports["t"], msg)[0] == msg
    assert requests(a) == []               # inspect: false


@pytest.mark.deadline(90)
def test_tls_upstream_backpressure_from_a_slow_service(start_edge, procs, servers, tmp_path,
                                                       cert):
    """The service reads nothing for a while: the TLS stream's queue passes
    its high-water mark (BW_EAGAIN), the plugin pauses the public side and
    resumes on drain; every byte still arrives, in order, and the agent's
    memory stays bounded."""
    svc = TlsEcho(cert, delay=1.5)
    servers.append(svc)
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge, {"t": {"proto": "tcptls", "addr": "localhost:%d" %
                                                  svc.port, "inspect": "false"}})
    payload = H.pattern_block(9, 24 * MiB)
    rss0, peak, stop = a.rss_kib(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], a.rss_kib() or 0)
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    got, err = exchange(a.ports["t"], payload, timeout=80)
    stop.set()
    th.join()
    assert not err and got == payload
    assert svc.done == [len(payload)]
    grew = peak[0] - rss0   # about 4 MiB measured; no backpressure would hold ~24 MiB
    # (ASan's quarantine keeps freed memory resident, so RSS says nothing there)
    assert H.ASAN or grew < 12 * 1024, "agent RSS grew by %d KiB for 24 MiB through a paused service" % grew


def test_tls_upstream_ip_literal_sends_no_sni(start_edge, procs, servers, tmp_path, cert):
    svc = TlsEcho(cert)
    servers.append(svc)
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge,
                    {"t": {"proto": "tcptls", "addr": "127.0.0.1:%d" % svc.port}})
    assert exchange(a.ports["t"], b"x" * 1000)[0] == b"x" * 1000
    assert svc.sni == [None]


def test_tls_upstream_verify_refuses_self_signed(start_edge, procs, servers, tmp_path, cert):
    svc = TlsEcho(cert)
    servers.append(svc)
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge, {"t": {"proto": "tcptls", "addr": "localhost:%d" %
                                                  svc.port, "upstream_verify": "true"}})
    got, _ = exchange(a.ports["t"], b"hi")
    assert got == b""
    _, rec = a.wait_log("TLS connection to local service failed", addr="localhost:%d" % svc.port)
    assert "certificate verify failed" in rec["err"], rec


def test_tls_upstream_to_plain_tcp_fails_cleanly(start_edge, procs, servers, tmp_path, echo):
    """A service that does not speak TLS: the handshake fails with OpenSSL's
    reason logged, the public connection is closed promptly and the agent
    keeps working (no leak: the sanitizer build checks at exit)."""
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge,
                    {"t": {"proto": "tcptls", "addr": "localhost:%d" % echo.port}})
    for _ in range(3):
        s = H.connect(a.ports["t"])
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        how, data, secs = H.recv_until_close(s, H.t(10))
        s.close()
        assert how in ("eof", "reset") and data == b"" and secs < H.t(5), (how, data, secs)
    _, rec = a.wait_log("TLS connection to local service failed")
    assert rec["err"].startswith("TLS handshake failed"), rec
    a.wait_log("fixture upstream connect failed")
    st, _, _ = call(a.web, "GET", "/api/tunnels")
    assert st == 200 and a.alive()


def test_tls_upstream_refused_port_fails_cleanly(start_edge, procs, tmp_path):
    edge = start_edge()
    port = H.free_port()
    a = start_agent(procs, tmp_path, edge, {"t": {"proto": "tcptls", "addr": "localhost:%d" % port}})
    s = H.connect(a.ports["t"])
    how, data, _ = H.recv_until_close(s, H.t(10))
    s.close()
    assert how in ("eof", "reset") and data == b""
    _, rec = a.wait_log("TLS connection to local service failed", addr="localhost:%d" % port)
    assert "connection refused" in rec["err"], rec


# --------------------------------------------------------------------------
# the request store


@pytest.fixture
def captured(start_edge, procs, servers, tmp_path, cert):
    svc = TlsEcho(cert)
    servers.append(svc)
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge, {
        "web": {"proto": "tcptls", "addr": "localhost:%d" % svc.port},
        "other": {"proto": "tcptls", "addr": "localhost:%d" % svc.port}})
    return a, svc


def test_empty_store_get_delete_and_unknown_id(captured):
    a, _ = captured
    assert requests(a) == []
    st, _, body = call(a.web, "GET", "/api/requests/http/airt_nope")
    assert st == 404 and body == {"error_code": 106, "status_code": 404,
                                  "msg": "request entry not found", "details": {"id": "airt_nope"}}
    st, _, body = call(a.web, "DELETE", "/api/requests/http")
    assert st == 204 and body == b""
    a.wait_log("deleted all requests")
    st, _, body = call(a.web, "GET", "/api/requests/http?limit=abc")
    assert st == 400 and "limit" in body["details"]["err"], body
    st, _, body = call(a.web, "POST", "/api/requests/http", {"id": "airt_nope"})
    assert st == 404 and body["error_code"] == 106 and body["details"] == {"id": "airt_nope"}


def test_capture_list_get_filter_and_downloads(captured):
    a, svc = captured
    req1, req2 = os.urandom(70000), b"second request"
    assert exchange(a.ports["web"], req1)[0] == req1
    assert exchange(a.ports["other"], req2)[0] == req2
    lst = wait_requests(a, 2)
    assert [e["tunnel_name"] for e in lst] == ["other", "web"]          # newest first
    e = lst[1]
    assert e["id"].startswith("airt_") and e["uri"] == "/api/requests/http/" + e["id"]
    assert e["remote_addr"] == "127.0.0.1"
    assert base64.b64decode(e["request"]["raw"]) == req1
    assert base64.b64decode(e["response"]["raw"]) == req1
    assert e["request"]["method"] == "RAW" and e["request"]["headers"] == {"X-Fixture": ["tcptls"]}
    assert [x["id"] for x in requests(a, "?tunnel_name=web")] == [e["id"]]
    assert len(requests(a, "?limit=1")) == 1
    assert requests(a, "?remote_addr=10.0.0.1") == []
    st, _, one = call(a.web, "GET", "/api/requests/http/" + e["id"])
    assert st == 200 and one == e

    st, hdrs, raw = call(a.web, "GET", "/inspect/http/%s/request" % e["id"], raw=True)
    assert st == 200 and raw == req1
    assert hdrs["Content-Type"] == "application/octet-stream"
    assert hdrs["Content-Disposition"] == 'attachment; filename="%s-request.txt"' % e["id"]
    st, _, raw = call(a.web, "GET", "/inspect/http/%s/response" % e["id"], raw=True)
    assert st == 200 and raw == req1
    st, _, raw = call(a.web, "POST", "/inspect/http/%s/request" % e["id"], raw=True)
    assert st == 405 and raw == b"Invalid method: POST\n"
    st, _, raw = call(a.web, "GET", "/inspect/http/airt_nope/response", raw=True)
    assert st == 404 and raw == b"404 page not found\n"

    st, _, _ = call(a.web, "DELETE", "/api/requests/http")
    assert st == 204 and requests(a) == []
    st, _, raw = call(a.web, "GET", "/inspect/http/%s/request" % e["id"], raw=True)
    assert st == 404


def test_keepalive_after_a_large_answer(captured):
    # An answer over the API server's 256 KiB write high-water mark stops
    # reading the connection until it drains; the next request on the same
    # connection must still be answered, not left to the 60 s idle timer.
    a, _ = captured
    big = os.urandom(MiB)
    assert exchange(a.ports["web"], big)[0] == big
    e = wait_requests(a, 1)[0]
    c = http.client.HTTPConnection(a.web[0], a.web[1], timeout=H.t(10))
    sizes = []
    for path in ("/inspect/http/%s/request" % e["id"], "/api/requests/http",
                 "/api/requests/http/" + e["id"], "/api"):
        c.request("GET", path)
        r = c.getresponse()
        sizes.append(len(r.read()))
        assert r.status == 200, path
    c.close()
    assert sizes[0] == MiB and sizes[1] > 2 * MiB and sizes[2] > 2 * MiB


def test_replay_as_is_on_other_tunnel_and_with_modifications(captured):
    a, svc = captured
    req = b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-Old: 1\r\n\r\nabc"
    assert exchange(a.ports["web"], req)[0] == req
    first = wait_requests(a, 1)[0]
    st, _, body = call(a.web, "POST", "/api/requests/http", {"id": first["id"]})
    assert st == 204, body
    a.wait_log("replaying request", entry=first["id"], tunnel="web")
    lst = wait_requests(a, 2)
    again = lst[0]
    assert again["id"] != first["id"] and again["tunnel_name"] == "web"
    assert base64.b64decode(again["request"]["raw"]) == req
    assert base64.b64decode(again["response"]["raw"]) == req     # the service answered
    assert again["remote_addr"] == "127.0.0.1"

    st, _, body = call(a.web, "POST", "/api/requests/http",
                       {"id": first["id"], "tunnel_name": "other"})
    assert st == 204, body
    assert wait_requests(a, 3)[0]["tunnel_name"] == "other"

    mods = {"method": "PUT", "uri": "/z", "headers": {"X-Old": None, "X-New": ["a", "b"]},
            "body": "hello!"}
    st, _, body = call(a.web, "POST", "/api/requests/http", {"id": first["id"],
                                                            "modifications": mods})
    assert st == 204, body
    new = wait_requests(a, 4)[0]
    assert base64.b64decode(new["request"]["raw"]) == (
        b"PUT /z HTTP/1.1\r\nHost: a\r\nX-New: a\r\nX-New: b\r\nContent-Length: 6\r\n\r\nhello!")

    st, _, body = call(a.web, "POST", "/api/requests/http",
                       {"id": first["id"], "modifications": {"body": 5}})
    assert st == 400 and body["error_code"] == 102 and "body" in body["details"]["err"], body
    st, _, body = call(a.web, "POST", "/api/requests/http", {"id": first["id"],
                                                            "tunnel_name": "nope"})
    assert st == 404 and body == {"error_code": 100, "status_code": 404,
                                  "msg": "tunnel not found", "details": {"name": "nope"}}


def test_replay_refused_while_reading_and_after_read_error(captured):
    a, _ = captured
    s = H.connect(a.ports["web"])
    s.sendall(b"partial")
    deadline = time.monotonic() + H.t(10)
    while not requests(a):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    e = requests(a)[0]
    st, _, body = call(a.web, "POST", "/api/requests/http", {"id": e["id"]})
    assert st == 400 and body == {
        "error_code": 110, "status_code": 400,
        "msg": "cannot replay request while the request body is still being read",
        "details": {"id": e["id"]}}
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()                                             # RST: reading failed
    deadline = time.monotonic() + H.t(10)
    while True:
        st, _, body = call(a.web, "POST", "/api/requests/http", {"id": e["id"]})
        if st == 400 and body["error_code"] == 111:
            break
        assert st == 400 and body["error_code"] == 110 and time.monotonic() < deadline, body
        time.sleep(0.05)
    assert body["msg"] == "cannot replay request that encountered an error while being read"


def test_replay_then_tunnel_stops(captured):
    """Stopping the tunnel right after a replay started cancels it; the
    agent stays healthy and the tunnel is gone for later replays."""
    a, _ = captured
    req = b"some bytes"
    assert exchange(a.ports["web"], req)[0] == req
    e = wait_requests(a, 1)[0]
    st, _, _ = call(a.web, "POST", "/api/requests/http", {"id": e["id"]})
    assert st == 204
    st, _, _ = call(a.web, "DELETE", "/api/tunnels/web")
    assert st == 204
    st, _, body = call(a.web, "POST", "/api/requests/http", {"id": e["id"]})
    assert st == 404 and body["error_code"] == 100
    assert a.alive()


def test_inspect_db_size_disabled(start_edge, procs, servers, tmp_path, cert):
    svc = TlsEcho(cert)
    servers.append(svc)
    edge = start_edge()
    a = start_agent(procs, tmp_path, edge,
                    {"t": {"proto": "tcptls", "addr": "localhost:%d" % svc.port}},
                    extra_cfg="inspect_db_size: -1")
    assert exchange(a.ports["t"], b"abc")[0] == b"abc"
    time.sleep(0.2)
    assert requests(a) == []
    st, _, body = call(a.web, "GET", "/api/requests/http/airt_nope")
    assert st == 404 and body["error_code"] == 106
    st, _, raw = call(a.web, "GET", "/inspect/http/airt_nope/request", raw=True)
    assert st == 404 and raw == b"404 page not found\n"
    st, _, _ = call(a.web, "DELETE", "/api/requests/http")
    assert st == 204
