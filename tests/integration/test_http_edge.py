"""The edge's public HTTP listener (docs/edge.md "HTTP and HTTPS"): routing by
Host, the X-Forwarded-* rewriting, byte-exact bodies, keep-alive and
pipelining, limits and error answers, upgrades. The agent runs the test-only
raw plugin, so the local server sees exactly what the edge sent."""
import hashlib
import os
import subprocess
import socket
import time
import types

import pytest

import helpers as H
import edge_helpers as HH


@pytest.fixture
def web(start_edge, procs, servers, tmp_path):
    """An edge (short header timeout), an echoing local server and an agent
    with tunnels web (subdomain "web") and other (subdomain "other")."""
    edge = start_edge(extra=["--domain", HH.DOMAIN, "--http-header-timeout", "1500ms"])
    srv = HH.EchoHeadServer()
    servers.append(srv)
    up = HH.UpgradeServer()
    servers.append(up)
    agent = procs.add(HH.ConfigAgent(str(tmp_path / "agent"), edge.addr, edge.ca, {
        "web": {"proto": "httpraw", "addr": srv.port, "subdomain": "web"},
        "other": {"proto": "httpraw", "addr": srv.port, "subdomain": "other"},
        "up": {"proto": "httpraw", "addr": up.port, "subdomain": "up"},
    }))
    urls = agent.urls(["web", "other", "up"])
    return types.SimpleNamespace(edge=edge, srv=srv, agent=agent, urls=urls,
                                 port=edge.http_port, host="web.%s" % HH.DOMAIN)


def test_url_format_and_forwarded_headers(web):
    assert web.urls["web"] == "http://web.%s:%d" % (HH.DOMAIN, web.port)
    c = HH.Client(web.port)
    host = "Web.%s:%d" % (HH.DOMAIN, web.port)
    c.request(host, "/p?q=1", headers=[("X-Odd", "  spaced\tvalue "),
                                         ("X-Forwarded-For", "1.2.3.4"),
                                         ("X-Forwarded-Proto", "https"),
                                         ("x-forwarded-host", "evil.example"),
                                         ("Accept", "*/*")])
    status, _, body = c.response()
    assert status == 200, body
    head, _, n = HH.parse_echo(body)
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /p?q=1 HTTP/1.1"
    # other headers untouched and in order; ours added; the client's replaced
    assert lines[1:4] == [b"Host: " + host.encode(), b"X-Odd:   spaced\tvalue ",
                          b"X-Forwarded-For: 1.2.3.4, 127.0.0.1"], lines
    assert b"Accept: */*" in lines
    assert lines.count(b"X-Forwarded-Proto: http") == 1
    assert b"X-Forwarded-Proto: https" not in lines
    assert lines.count(b"X-Forwarded-Host: " + host.encode()) == 1
    assert b"evil.example" not in head
    assert head.endswith(b"\r\n\r\n") and n == 0
    # the agent got server_name = Host without port (Conn frame)
    web.agent.wait_log("raw http conn", server_name="web.%s" % HH.DOMAIN)
    # a request without X-Forwarded-For gets one
    c.request(web.host)
    _, _, body = c.response()
    assert HH.parse_echo(body)[0].split(b"\r\n").count(b"X-Forwarded-For: 127.0.0.1") == 1
    c.close()


@pytest.mark.deadline(240)
def test_bodies_byte_exact(web):
    big = (4 if H.QUICK else 64) << 20
    c = HH.Client(web.port, timeout=60)
    for size in (0, 1024, big):
        c.send(b"POST /up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
            web.host.encode(), size))
        digest = HH.send_body_in_chunks(c.sock, size, seed=size)
        status, _, body = c.response()
        head, got, n = HH.parse_echo(body)
        assert status == 200 and n == size and got == digest, (size, n)
    # chunked, with an extension and a trailer: framing passes byte-exact
    raw = (b"5;ext=1\r\nhello\r\n" + b"%x\r\n" % 70000 + b"x" * 70000 + b"\r\n" +
           b"0\r\nX-Trailer: t\r\n\r\n")
    c.send(b"POST /chunked HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" %
           web.host.encode() + raw)
    status, _, body = c.response()
    head, got, n = HH.parse_echo(body)
    assert status == 200 and n == len(raw) and got == hashlib.sha256(raw).hexdigest()
    c.close()


def test_pipelined_and_keepalive(web):
    c = HH.Client(web.port)
    two = b"".join(b"GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, web.host.encode())
                   for i in (1, 2))
    c.send(two)
    for i in (1, 2):
        status, _, body = c.response()
        assert status == 200 and HH.parse_echo(body)[0].startswith(b"GET /%d " % i)
    c.request(web.host, "/3")
    status, _, body = c.response()
    assert status == 200 and HH.parse_echo(body)[0].startswith(b"GET /3 ")
    c.close()
    # all three on one agent stream, one local connection
    assert len(web.agent.out.find_all(H.msg_is("raw http conn"))) == 1


def test_unknown_host_404(web):
    c = HH.Client(web.port)
    c.request("nope.%s:%d" % (HH.DOMAIN, web.port))
    status, hdrs, body = c.response()
    assert status == 404 and b"Tunnel nope.%s not found" % HH.DOMAIN.encode() in body
    assert hdrs.get("connection") == "close"
    assert c.closed(H.t(5)) == "eof"


def _refused(web, data, status, text):
    before = len(web.srv.heads)
    c = HH.Client(web.port)
    c.send(data)
    got, _, body = c.response()
    assert got == status, body
    assert text in body, body
    assert c.closed(H.t(5)) in ("eof", "reset")
    time.sleep(0.2)
    assert len(web.srv.heads) == before, "the local server saw a refused request"


def test_bad_requests_never_reach_the_agent(web):
    h = web.host.encode()
    _refused(web, b"GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n" % (h, b"a" * 20480),
             431, b"too large")
    _refused(web, b"GET /a b c\r\nHost: %s\r\n\r\n" % h, 400, b"invalid request line")
    _refused(web, b"BREW / HTTP/1.1\r\nHost: %s\r\n\r\n" % h, 400, b"invalid request line")
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"zz\r\nhello\r\n0\r\n\r\n" % h, 400, b"invalid chunk size")
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 1x\r\n\r\n" % h, 400,
             b"invalid Content-Length")
    _refused(web, b"GET / HTTP/1.1\r\nBad Header: x\r\nHost: %s\r\n\r\n" % h, 400,
             b"invalid header")
    _refused(web, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, b"missing Host header")
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                  b"0\r\n\r\n" % h, 400, b"obsolete line folding")
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
                  b"a" % h, 400, b"duplicate Content-Length")
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"fffffffffffffffffff\r\n" % h, 400, b"invalid chunk size: too large")
    _refused(web, b"GET / HTTP/1.1\r\nHost: %s\nX: y\r\n\r\n" % h, 400, b"LF without CR")
    _refused(web, b"GET http://other.%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (
        HH.DOMAIN.encode(), h), 400, b"request target does not match Host")
    # "XY" in place of the CRLF after chunk data: a smuggled second request
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabcXY0\r\n\r\n" % h, 400, b"data not followed by CRLF")
    _refused(web, b"POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3;%s\r\nabc\r\n0\r\n\r\n" % (h, b"x" * 200), 400, b"extensions too long")
    _refused(web, b"GET / HTTP/2.0\r\nHost: %s\r\n\r\n" % h, 400, b"unsupported HTTP version")
    _refused(web, b"CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" % (h, h), 405,
             b"CONNECT")


def test_empty_lines_between_pipelined_requests_dropped(web):
    """RFC 9112 2.2: up to 4 empty lines before a request-line are skipped
    and never forwarded: the service sees each head start at its method."""
    h = web.host.encode()
    before = len(web.srv.heads)
    c = HH.Client(web.port)
    c.send(b"GET /1 HTTP/1.1\r\nHost: %s\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: %s\r\n\r\n"
           b"\r\n\r\n\r\n\r\nGET /3 HTTP/1.1\r\nHost: %s\r\n\r\n" % (h, h, h))
    for i in (1, 2, 3):
        status, _, body = c.response()
        assert status == 200 and HH.parse_echo(body)[0].startswith(b"GET /%d " % i), body
    c.close()
    heads = web.srv.heads[before:]
    assert [x.split(b" ")[:2] for x in heads] == [[b"GET", b"/%d" % i] for i in (1, 2, 3)], heads
    # a fifth empty line is one too many
    _refused(web, b"GET /1 HTTP/1.1\r\nHost: %s\r\n\r\n" % h + b"\r\n" * 5
             + b"GET /2 HTTP/1.1\r\nHost: %s\r\n\r\n" % h, 400, b"too many empty lines")


def test_slowloris_gets_408(web):
    c = HH.Client(web.port)
    start = time.monotonic()
    c.send(b"GET / HTTP/1.1\r\nHost: ")
    c.sock.settimeout(H.t(10))
    status, _, body = c.response()
    took = time.monotonic() - start
    assert status == 408 and b"timeout" in body.lower()
    assert 1.0 <= took <= H.t(5), took
    # an idle connection that never sends gets the same
    c2 = HH.Client(web.port)
    c2.sock.settimeout(H.t(10))
    assert c2.response()[0] == 408


def test_other_tunnel_on_keepalive_is_421(web):
    c = HH.Client(web.port)
    c.request(web.host, "/first")
    assert c.response()[0] == 200
    c.request("other.%s" % HH.DOMAIN, "/second")
    status, _, body = c.response()
    assert status == 421 and b"other.%s" % HH.DOMAIN.encode() in body
    assert c.closed(H.t(5)) in ("eof", "reset")
    # pipelined: the first answered by the agent, then the 421
    c = HH.Client(web.port)
    c.send(b"GET /a HTTP/1.1\r\nHost: %s\r\n\r\nGET /b HTTP/1.1\r\nHost: other.%s\r\n\r\n" % (
        web.host.encode(), HH.DOMAIN.encode()))
    status, _, body = c.response()
    assert status == 200 and HH.parse_echo(body)[0].startswith(b"GET /a ")
    assert c.response()[0] == 421


def test_upgrade_passthrough(web):
    c = HH.Client(web.port)
    c.send(b"GET /ws HTTP/1.1\r\nHost: up.%s\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
           % HH.DOMAIN.encode())
    head, c.buf = HH.read_head(c.sock, c.buf)
    assert head.startswith(b"HTTP/1.1 101 ")
    # raw bytes both ways, including ones that are not HTTP at all
    payload = b"\x00\xffGET / HTTP/1.1\r\n\r\n" + os.urandom(200000)
    c.send(payload)
    got = c.buf + H.recv_exact(c.sock, len(payload) - len(c.buf))
    assert got == payload
    # raw bytes sent right behind the Upgrade request wait for the 101
    c = HH.Client(web.port)
    c.send(b"GET /ws HTTP/1.1\r\nHost: up.%s\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
           % HH.DOMAIN.encode() + payload)
    head, c.buf = HH.read_head(c.sock, c.buf)
    assert head.startswith(b"HTTP/1.1 101 ")
    got = c.buf + H.recv_exact(c.sock, len(payload) - len(c.buf))
    assert got == payload


def test_declined_upgrade_keeps_rewriting(web):
    """The service answers an Upgrade request with 200, not 101: the
    connection stays HTTP, so later requests on it are still rewritten and
    routed, sent after the answer or pipelined behind the Upgrade."""
    up = b"GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" % (
        web.host.encode())
    forged = (b"GET /next HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 6.6.6.6\r\n"
              b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n" % (
                  web.host.encode()))
    for pipelined in (False, True):
        c = HH.Client(web.port)
        c.send(up + forged if pipelined else up)
        status, _, body = c.response()
        assert status == 200 and HH.parse_echo(body)[0].startswith(b"GET /ws ")
        if not pipelined:
            c.send(forged)
        status, _, body = c.response()
        assert status == 200
        lines = HH.parse_echo(body)[0].split(b"\r\n")
        assert lines[0] == b"GET /next HTTP/1.1"
        assert b"X-Forwarded-For: 6.6.6.6, 127.0.0.1" in lines, lines
        assert b"X-Forwarded-Proto: http" in lines and b"X-Forwarded-Proto: https" not in lines
        assert b"X-Forwarded-Host: %s" % web.host.encode() in lines, lines
        assert b"evil.example" not in body
        # another tunnel's Host is still refused on this connection
        c.request("other.%s" % HH.DOMAIN)
        assert c.response()[0] == 421
        c.close()


def test_agent_gone_is_502(web, procs):
    web.agent.kill()
    c = HH.Client(web.port)
    deadline = time.monotonic() + H.t(10)
    while True:
        c = HH.Client(web.port)
        c.request(web.host)
        status, _, body = c.response()
        if status == 502 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 502 and b"agent for %s is not connected" % web.host.encode() in body


def test_disabled_listener_refuses_bind(start_edge, procs, servers, tmp_path):
    edge = start_edge(extra=["--domain", HH.DOMAIN], https_addr="false")
    assert edge.https_port is None and edge.http_port
    srv = HH.EchoHeadServer()
    servers.append(srv)
    agent = procs.add(HH.ConfigAgent(str(tmp_path / "a"), edge.addr, edge.ca, {
        "s": {"proto": "httpsraw", "addr": srv.port}}))
    agent.expected_rc = 1
    _, rec = agent.wait_log("failed to start tunnel", err=None)
    assert "https tunnels are disabled on this edge" in rec["err"], rec
    agent.wait_exit(H.t(10))


@pytest.mark.deadline(120)
def test_slow_client_download_is_bounded(start_edge, procs, servers, tmp_path):
    """A client that stops reading stops the agent stream (and the local
    server) instead of making the edge buffer the response."""
    size = 64 << 20
    edge = start_edge(extra=["--domain", HH.DOMAIN])
    big = HH.BigResponseServer(size)
    servers.append(big)
    agent = procs.add(HH.ConfigAgent(str(tmp_path / "a"), edge.addr, edge.ca, {
        "big": {"proto": "httpraw", "addr": big.port, "subdomain": "big"}}))
    agent.urls(["big"])
    rss0 = edge.rss_kib()
    c = HH.Client(edge.http_port, timeout=60)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.request("big." + HH.DOMAIN)
    time.sleep(H.t(2))           # not reading
    grown = edge.rss_kib() - rss0
    assert grown < 24 * 1024, "edge grew %d KiB while the client did not read" % grown
    h = hashlib.sha256()
    head, c.buf = HH.read_head(c.sock, c.buf)
    got = len(c.buf)
    h.update(c.buf)
    while got < size:
        d = c.sock.recv(1 << 20)
        assert d, "response cut at %d" % got
        h.update(d)
        got += len(d)
    want = hashlib.sha256()
    sent = 0
    while sent < size:
        block = H.pattern_block(7 + sent, min(1 << 20, size - sent))
        want.update(block)
        sent += len(block)
    assert got == size and h.hexdigest() == want.hexdigest()


def test_help_lists_http_flags():
    out = subprocess.run([H.BURROWD, "--help"], capture_output=True, text=True).stdout
    for flag in ("--http-addr", "--https-addr", "--host-cert", "--http-header-timeout",
                 "--http-idle-timeout", "--http-body-timeout", "--max-conns-per-ip",
                 "--max-public-conns"):
        assert flag in out, out
