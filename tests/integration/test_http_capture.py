"""HTTP tunnels end to end, as a user of `burrow http` sees them: twin
tunnels, the real edge's http and https listeners, and every captured
exchange in /api/requests/http (ngrok-compat.md §2.2, §2.5-2.8, §5).

The local service records the exact bytes of every request it receives, so
the tests can compare captures and replays byte for byte."""
import base64
import http.client
import os
import re
import socket
import ssl
import threading
import time

import pytest

import helpers as H
from test_api import call, web_addr

ID_RE = re.compile(r"^airt_[0-9A-Za-z]{27}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
QUICK = bool(os.environ.get("BURROW_TEST_QUICK"))


class RecordingServer:
    """HTTP/1.1 keep-alive server on loopback that answers every request
    with 200 and a small body, and keeps each request's exact bytes."""

    def __init__(self, body=b"hello from the local service\n"):
        self.body = body
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = c.recv(1 << 20)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.requests.append(head + b"\r\n\r\n" + body)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(self.body), self.body))
        except OSError:
            return
        finally:
            c.close()

    def wait_requests(self, n, timeout=10):
        deadline = time.time() + H.t(timeout)
        while time.time() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError("local service saw %d requests, wanted %d" % (len(self.requests), n))

    def close(self):
        self.closed = True
        self.sock.close()


@pytest.fixture
def local(servers):
    s = RecordingServer()
    servers.append(s)
    return s


@pytest.fixture
def http_edge(start_edge):
    return start_edge(extra=["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])


def start_http(start_agent, edge, port, extra=(), config=None, tmp_path=None):
    """`burrow http PORT`; returns (agent, api addr, {name: url})."""
    args = list(extra)
    if config:
        cfg = tmp_path / ("agent-%d.yml" % port)
        cfg.write_text(config)
        args += ["--config", str(cfg)]
    agent = start_agent(port, edge, proto="http", extra=["--web-addr", "127.0.0.1:0"] + args)
    urls = {}
    i = 0
    while len(urls) < 2:
        i, rec = agent.wait_log("started tunnel", 15, since=i, url=None, name=None)
        urls[rec["name"]] = rec["url"]
        i += 1
    return agent, web_addr(agent), urls


def split_url(url):
    m = re.match(r"^(https?)://([^:/]+)(?::(\d+))?$", url)
    assert m, url
    return m.group(1), m.group(2), int(m.group(3) or (443 if m.group(1) == "https" else 80))


class _TLSConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1:port with SNI and certificate checks for `sni`
    (Python's resolver does not know *.localhost)."""

    def __init__(self, port, sni, ctx):
        super().__init__("127.0.0.1", port, timeout=H.t(20))
        self._sni, self._ctx = sni, ctx

    def connect(self):
        super().connect()
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._sni)


def request(url, method="GET", path="/", body=None, headers=None, ca=None):
    """One request through the edge at `url` (connecting to 127.0.0.1 with
    the tunnel's Host/SNI); returns (status, headers, body)."""
    scheme, host, port = split_url(url)
    if scheme == "https":
        c = _TLSConnection(port, host, ssl.create_default_context(cafile=ca))
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=H.t(20))
    hdrs = {"Host": host}
    hdrs.update(headers or {})
    c.request(method, path, body=body, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def captures(api, **query):
    q = "&".join("%s=%s" % (k, v) for k, v in query.items())
    st, _, body = call(api, "GET", "/api/requests/http" + ("?" + q if q else ""))
    assert st == 200, body
    return body["requests"]


def wait_captures(api, n, timeout=10, **query):
    deadline = time.time() + H.t(timeout)
    while True:
        reqs = captures(api, **query)
        done = [r for r in reqs if r["response"]["status_code"]]
        if len(done) >= n or time.time() > deadline:
            return reqs
        time.sleep(0.05)


# ---------------------------------------------------------------------------


def test_cli_http_makes_twins_on_one_host(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    assert set(urls) == {"command_line", "command_line (http)"}
    assert urls["command_line (http)"].startswith("http://")
    assert urls["command_line"].startswith("https://")
    assert split_url(urls["command_line"])[1] == split_url(urls["command_line (http)"])[1]
    sub = split_url(urls["command_line"])[1].split(".")[0]
    assert re.match(r"^[0-9a-f]{16}$", sub), sub
    names = [H.parse_logfmt(l).get("name") for l in agent.out.lines
             if 'msg="started tunnel"' in l]
    assert names == ["command_line (http)", "command_line"]  # ngrok logs the twin first
    st, _, body = call(api, "GET", "/api/tunnels")
    by_name = {t["name"]: t for t in body["tunnels"]}
    assert by_name["command_line"]["proto"] == "https"
    assert by_name["command_line (http)"]["proto"] == "http"
    for t in by_name.values():
        assert t["config"] == {"addr": "http://localhost:%d" % local.port, "inspect": True}


def test_request_through_http_and_https(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    for name in ("command_line (http)", "command_line"):
        st, _, body = request(urls[name], path="/hello", ca=http_edge.ca)
        assert (st, body) == (200, local.body)
    reqs = local.wait_requests(2)
    proto = [re.search(rb"\r\nX-Forwarded-Proto: (\w+)", r, re.I).group(1) for r in reqs]
    assert proto == [b"http", b"https"]


def test_capture_entry_has_ngroks_shape(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    url = urls["command_line (http)"]
    st, _, _ = request(url, "POST", "/submit?x=1", body=b"a=1&b=2",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200
    sent = local.wait_requests(1)[0]
    reqs = wait_captures(api, 1)
    assert len(reqs) == 1
    r = reqs[0]
    assert list(r) == ["uri", "id", "tunnel_name", "remote_addr", "start", "duration",
                       "request", "response"]
    assert ID_RE.match(r["id"]) and r["uri"] == "/api/requests/http/" + r["id"]
    assert r["tunnel_name"] == "command_line (http)"
    assert r["remote_addr"] == "127.0.0.1"
    assert RFC3339_RE.match(r["start"]), r["start"]
    assert isinstance(r["duration"], int) and r["duration"] > 0
    q = r["request"]
    assert (q["method"], q["proto"], q["uri"]) == ("POST", "HTTP/1.1", "/submit?x=1")
    assert q["headers"]["Content-Type"] == ["application/x-www-form-urlencoded"]
    assert all(isinstance(v, list) for v in q["headers"].values())
    # raw is what the agent read: exactly what the local service received
    assert base64.b64decode(q["raw"]) == sent
    p = r["response"]
    assert (p["status"], p["status_code"], p["proto"]) == ("200 OK", 200, "HTTP/1.1")
    assert p["headers"]["Content-Length"] == [str(len(local.body))]
    assert base64.b64decode(p["raw"]).endswith(b"\r\n\r\n" + local.body)
    # one entry by id is the same object
    st, _, one = call(api, "GET", r["uri"])
    assert st == 200 and one == r
    # the inspector's downloads are the original bytes
    st, _, raw = call(api, "GET", "/inspect/http/%s/request" % r["id"], raw=True)
    assert st == 200 and raw == sent


def test_list_order_limit_filter_and_delete(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    for i in range(3):
        request(urls["command_line (http)"], path="/h%d" % i)
    request(urls["command_line"], path="/s0", ca=http_edge.ca)
    reqs = wait_captures(api, 4)
    assert [r["request"]["uri"] for r in reqs] == ["/s0", "/h2", "/h1", "/h0"]  # newest first
    assert [r["request"]["uri"] for r in captures(api, limit=2)] == ["/s0", "/h2"]
    only = captures(api, tunnel_name="command_line%20(http)")
    assert [r["request"]["uri"] for r in only] == ["/h2", "/h1", "/h0"]
    st, _, body = call(api, "GET", "/api/requests/http/airt_nope")
    assert st == 404 and body["error_code"] == 106 and body["details"] == {"id": "airt_nope"}
    st, _, _ = call(api, "DELETE", "/api/requests/http")
    assert st == 204
    assert captures(api) == []
    agent.wait_log("deleted all requests")  # the line may follow the response


def test_replay_sends_identical_request_and_is_captured_again(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    request(urls["command_line (http)"], "PUT", "/item/7", body=b'{"n": 7}',
            headers={"Content-Type": "application/json", "X-Trace": "abc"})
    first = local.wait_requests(1)[0]
    rid = wait_captures(api, 1)[0]["id"]
    st, _, _ = call(api, "POST", "/api/requests/http", body={"id": rid})
    assert st == 204
    assert local.wait_requests(2)[1] == first
    reqs = wait_captures(api, 2)
    assert len(reqs) == 2 and reqs[0]["id"] != rid
    assert reqs[0]["tunnel_name"] == "command_line (http)"
    agent.wait_log("replaying request")
    # onto the other twin, and onto a tunnel that does not exist
    st, _, _ = call(api, "POST", "/api/requests/http",
                    body={"id": rid, "tunnel_name": "command_line"})
    assert st == 204
    local.wait_requests(3)
    assert wait_captures(api, 3)[0]["tunnel_name"] == "command_line"
    st, _, body = call(api, "POST", "/api/requests/http", body={"id": rid, "tunnel_name": "nope"})
    assert st == 404 and body["error_code"] == 100
    st, _, body = call(api, "POST", "/api/requests/http", body={"id": "airt_x"})
    assert st == 404 and body["error_code"] == 106


def test_replay_of_truncated_capture_is_refused(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    big = os.urandom(11 << 20)  # over the 10 MiB kept per entry
    st, _, _ = request(urls["command_line (http)"], "POST", "/big", body=big)
    assert st == 200
    assert local.wait_requests(1)[0].endswith(big)  # forwarded whole
    entry = wait_captures(api, 1)[0]
    q = entry["request"]
    assert q["raw_truncated"] is True and q["raw_size"] > len(big)  # the entry says so
    assert len(base64.b64decode(q["raw"])) == 10 << 20
    assert "raw_truncated" not in entry["response"]  # small: ngrok's shape, nothing added
    st, _, body = call(api, "POST", "/api/requests/http", body={"id": entry["id"]})
    assert st == 400 and body["error_code"] == 109, body


def test_inspect_false_captures_nothing(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port, extra=["--inspect=false"])
    st, _, _ = request(urls["command_line (http)"])
    assert st == 200
    time.sleep(0.2)
    assert captures(api) == []
    st, _, body = call(api, "GET", "/api/tunnels")
    assert all(t["config"]["inspect"] is False for t in body["tunnels"])


def test_local_service_down_gives_captured_502(http_edge, start_agent):
    dead = H.free_port()
    agent, api, urls = start_http(start_agent, http_edge, dead)
    st, hdrs, body = request(urls["command_line (http)"])
    assert st == 502
    assert b"Failed to complete tunnel connection" in body
    assert ("localhost:%d" % dead).encode() in body
    r = wait_captures(api, 1)[0]
    assert (r["response"]["status_code"], r["response"]["status"]) == (502, "502 Bad Gateway")


@pytest.mark.deadline(180)
def test_eviction_bounds_the_store(http_edge, start_agent, local, tmp_path):
    db = 4 << 20
    agent, api, urls = start_http(start_agent, http_edge, local.port,
                                  config="version: \"2\"\ninspect_db_size: %d\n" % db,
                                  tmp_path=tmp_path)
    url = urls["command_line (http)"]
    chunk = os.urandom(1 << 20)
    total = (50 if QUICK else 200)
    for i in range(total):
        st, _, _ = request(url, "POST", "/up/%d" % i, body=chunk)
        assert st == 200
    reqs = wait_captures(api, 1)
    held = sum(len(base64.b64decode(r["request"]["raw"])) +
               len(base64.b64decode(r["response"]["raw"] or "")) for r in reqs)
    assert held <= db, (held, db)
    assert 0 < len(reqs) < total
    assert reqs[0]["request"]["uri"] == "/up/%d" % (total - 1)  # the newest survive
    if not H.ASAN:  # ASan's quarantine keeps freed memory resident
        assert agent.rss_kib() < 96 * 1024, agent.rss_kib()


def test_api_started_http_tunnel_returns_https_twin(http_edge, start_agent, local, echo):
    agent = start_agent(echo.port, http_edge, extra=["--web-addr", "127.0.0.1:0"])
    agent.wait_tunnel()
    api = web_addr(agent)
    st, _, body = call(api, "POST", "/api/tunnels",
                       body={"name": "web", "proto": "http", "addr": str(local.port)})
    assert st == 201, body
    assert (body["name"], body["proto"]) == ("web", "https")
    st, _, twin = call(api, "GET", "/api/tunnels/web%20%28http%29")
    assert st == 200 and twin["proto"] == "http"
    assert split_url(twin["public_url"])[1] == split_url(body["public_url"])[1]
    # deleting one leaves its twin up
    st, _, _ = call(api, "DELETE", "/api/tunnels/web")
    assert st == 204
    st, _, _ = call(api, "GET", "/api/tunnels/web%20%28http%29")
    assert st == 200
    st, _, _ = request(twin["public_url"])
    assert st == 200
    # bind_tls false: a single http tunnel without the suffix
    st, _, one = call(api, "POST", "/api/tunnels", body={
        "name": "plain", "proto": "http", "addr": local.port, "bind_tls": False})
    assert st == 201 and one["proto"] == "http" and one["public_url"].startswith("http://")
    st, _, _ = call(api, "GET", "/api/tunnels/plain%20%28http%29")
    assert st == 404


def test_subdomain_held_by_another_agent_is_refused(http_edge, start_agent, local, echo):
    a1, api1, urls = start_http(start_agent, http_edge, local.port, extra=["--subdomain", "shop"])
    assert split_url(urls["command_line"])[1] == "shop.localhost"
    a2 = start_agent(echo.port, http_edge, extra=["--web-addr", "127.0.0.1:0"])
    a2.wait_tunnel()
    st, _, body = call(web_addr(a2), "POST", "/api/tunnels", body={
        "name": "x", "proto": "http", "addr": local.port, "subdomain": "shop"})
    assert st == 502 and body["error_code"] == 103, body
    assert "shop" in body["details"]["err"]
    st, _, body = call(web_addr(a2), "GET", "/api/tunnels")
    assert [t["name"] for t in body["tunnels"]] == ["command_line"]  # no half-started twin


def test_http_metrics_count_requests(http_edge, start_agent, local):
    agent, api, urls = start_http(start_agent, http_edge, local.port)
    for _ in range(3):
        request(urls["command_line (http)"])
    wait_captures(api, 3)
    st, _, t = call(api, "GET", "/api/tunnels/command_line%20%28http%29")
    assert t["metrics"]["http"]["count"] == 3
    assert t["metrics"]["http"]["p50"] > 0


def test_https_upstream_is_spoken_to_over_tls(http_edge, start_agent, servers, tmp_path):
    """addr https://localhost:PORT: the agent speaks TLS to the local service
    and, like ngrok, does not verify its (self-signed) certificate."""
    import subprocess
    crt, key = tmp_path / "local.crt", tmp_path / "local.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    srv = H.HttpsServer(str(crt), str(key), b"secure hello\n")
    servers.append(srv)
    port = srv.port
    agent, api, urls = start_http(start_agent, http_edge, "https://localhost:%d" % port)
    st, _, body = request(urls["command_line (http)"], path="/over-tls")
    assert (st, body) == (200, b"secure hello\n")
    assert srv.seen == ["/over-tls"]
    st, _, t = call(api, "GET", "/api/tunnels/command_line")
    assert t["config"]["addr"] == "https://localhost:%d" % port


@pytest.mark.deadline(90)
def test_https_client_that_half_closes_gets_the_whole_slow_response(http_edge, start_agent,
                                                                     servers):
    """A client sends its request, half-closes and reads slowly: the edge
    keeps the TLS connection open while bytes still move, instead of
    cutting the response after a fixed linger."""
    body = os.urandom(4 << 20)
    local = RecordingServer(body=body)
    servers.append(local)
    agent, api, urls = start_http(start_agent, http_edge, local.port,
                                  extra=["--inspect=false"])
    _, host, port = split_url(urls["command_line"])
    ctx = ssl.create_default_context(cafile=http_edge.ca)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)  # small window: bytes
    raw.settimeout(H.t(30))                                        # wait at the edge
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname=host)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    socket.socket.shutdown(s, socket.SHUT_WR)  # TCP half-close under the TLS layer
    got = bytearray()
    while True:
        chunk = s.recv(16 << 10)
        if not chunk:
            break
        got += chunk
        time.sleep(0.02)  # ~0.8 MB/s: 5 s for 4 MiB, longer than any fixed linger
    s.close()
    assert got.endswith(body), (len(got), len(body))


def test_refused_https_twin_takes_its_http_twin_with_it(start_edge, start_agent, local, echo):
    """An edge without an https listener refuses the https tunnel of a pair
    after the http one bound: the API answers 502 and nothing is left
    behind, so the name can be started again."""
    edge = start_edge(extra=["--http-addr", "127.0.0.1:0", "--https-addr", "false"])
    agent = start_agent(echo.port, edge, extra=["--web-addr", "127.0.0.1:0"])
    agent.wait_tunnel()
    api = web_addr(agent)
    st, _, body = call(api, "POST", "/api/tunnels",
                       body={"name": "web", "proto": "http", "addr": local.port})
    assert st == 502 and body["error_code"] == 103, body
    assert "https" in body["details"]["err"]
    st, _, body = call(api, "GET", "/api/tunnels")
    assert [t["name"] for t in body["tunnels"]] == ["command_line"]
    st, _, one = call(api, "POST", "/api/tunnels", body={
        "name": "web", "proto": "http", "addr": local.port, "bind_tls": False})
    assert st == 201 and one["public_url"].startswith("http://"), one
    st, _, _ = request(one["public_url"])
    assert st == 200
