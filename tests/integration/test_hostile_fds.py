"""Descriptor exhaustion on the edge's public side (docs/edge.md "Limits"):
burrowd takes the whole hard descriptor limit, and slow public clients
cannot hold connections open for ever."""
import contextlib
import os
import resource
import socket
import time
import types

import pytest

import helpers as H
import edge_helpers as HH


@contextlib.contextmanager
def _soft_nofile(n):
    """Children started inside inherit a soft descriptor limit of n."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_raises_soft_descriptor_limit_to_hard(start_edge):
    with _soft_nofile(256) as hard:
        edge = start_edge()
    _, rec = edge.wait_log("descriptor limit", 5)
    want = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert rec.get("nofile") == want and rec.get("was") == "256", rec


@pytest.fixture
def web(start_edge, procs, servers, tmp_path):
    """An edge with a 1 s body timeout and an http tunnel "web" to an echo
    server that answers once it has the whole body."""
    edge = start_edge(extra=["--domain", HH.DOMAIN, "--http-body-timeout", "1s"])
    srv = HH.EchoHeadServer()
    servers.append(srv)
    agent = procs.add(HH.ConfigAgent(str(tmp_path / "agent"), edge.addr, edge.ca, {
        "web": {"proto": "httpraw", "addr": srv.port, "subdomain": "web"},
    }))
    agent.urls(["web"])
    return types.SimpleNamespace(edge=edge, port=edge.http_port, host="web.%s" % HH.DOMAIN)


def _post_head(host, length):
    return b"POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
        host.encode(), length)


def test_trickling_body_gets_408(web):
    """A body that brings a byte every 0.3 s never goes idle, yet it is
    ended: under 1 KiB per body timeout is a stall."""
    c = HH.Client(web.port)
    c.send(_post_head(web.host, 100000))
    c.sock.settimeout(0.3)
    start = time.monotonic()
    got = b""
    while time.monotonic() - start < H.t(8) and b"\r\n\r\n" not in got:
        try:
            c.send(b"x")
            d = c.sock.recv(4096)
            if not d:
                break
            got += d
        except socket.timeout:
            continue
        except OSError:
            break
    took = time.monotonic() - start
    assert got.startswith(b"HTTP/1.1 408 "), (got, took)
    assert b"Request body timeout" in got or b"\r\n\r\n" in got
    assert 0.9 <= took <= H.t(7), took
    c.close()


def test_slow_but_steady_body_passes(web):
    """2 KiB per 0.5 s keeps above the floor: the request is answered."""
    c = HH.Client(web.port)
    body = b"y" * 8192
    c.send(_post_head(web.host, len(body)))
    for i in range(0, len(body), 2048):
        time.sleep(0.5)
        c.send(body[i:i + 2048])
    c.sock.settimeout(H.t(10))
    status, _, resp = c.response()
    assert status == 200, resp
    assert resp.endswith(b" 8192\n"), resp
    c.close()


def _held(port, n):
    socks = [H.connect(port, 5) for _ in range(n)]
    return socks


def _closed_at_once(port):
    try:
        c = HH.Client(port)
    except ConnectionResetError:  # the reset can beat connect() back on loopback
        return "reset"
    how = c.closed(H.t(2))
    c.close()
    return how


def test_per_ip_cap_refuses_the_excess(start_edge, tunnel_cap):
    """--max-conns-per-ip 5: five public connections from 127.0.0.1 stay
    open, the sixth is closed at once, on http and on a tcp tunnel port
    alike (one count), and a slot freed is usable again. Refusals are
    logged aggregated: one line, not one per connection."""
    edge, tcp_port = tunnel_cap
    held = _held(edge.http_port, 3) + _held(tcp_port, 2)
    try:
        time.sleep(0.3)
        for port in (edge.http_port, tcp_port, edge.https_port):
            for _ in range(3):
                assert _closed_at_once(port) in ("eof", "reset"), port
        _, rec = edge.wait_log("public connections refused", 5)
        assert rec.get("reason") == "per-ip limit" and rec.get("r") == "127.0.0.1", rec
        time.sleep(0.5)
        lines = [r for r in list(edge.out.records) if r.get("msg") == "public connections refused"]
        assert len(lines) == 1, lines
        # the held ones still work: a request on one of them is answered
        held[0].sendall(b"GET / HTTP/1.1\r\nHost: nobody.%s\r\n\r\n" % HH.DOMAIN.encode())
        assert held[0].recv(64).startswith(b"HTTP/1.1 404 ")
        held.pop(0).close()
        time.sleep(0.3)
        c = HH.Client(edge.http_port)
        assert c.closed(0.5) == "timeout"
        c.close()
    finally:
        for s in held:
            s.close()


@pytest.fixture
def tunnel_cap(start_edge, start_agent, echo):
    edge = start_edge(extra=["--domain", HH.DOMAIN, "--max-conns-per-ip", "5"])
    agent = start_agent(echo.port, edge)
    agent.wait_tunnel()
    return edge, H.parse_tcp_url(agent.url)[1]


@pytest.fixture
def low_nofile(tmp_path, monkeypatch):
    """burrowd started with soft and hard descriptor limits of 256."""
    wrap = tmp_path / "burrowd-256"
    wrap.write_text('#!/bin/sh\nulimit -n 256 || exit 99\nexec "%s" "$@"\n' % H.BURROWD)
    wrap.chmod(0o755)
    monkeypatch.setattr(H, "BURROWD", str(wrap))


def _flood(port, n):
    """Up to n public connections held open (fewer if the edge refuses some)."""
    socks = []
    for _ in range(n):
        try:
            socks.append(H.connect(port, 5))
        except OSError:
            pass
    return socks


@pytest.mark.parametrize("extra", [[], ["--max-public-conns", "100000"]],
                         ids=["derived-total-cap", "descriptor-reserve"])
def test_agent_connects_while_public_side_is_saturated(low_nofile, start_edge, start_agent,
                                                       echo, extra):
    """Under a 256-descriptor limit 400 public connections are held open.
    The edge stops taking public ones in time (by the total cap derived from
    the limit, or, with that cap lifted, by the descriptor reserve), so an
    agent still connects and binds a tcp tunnel, which passes data once the
    flood is gone."""
    # The flood outlives the test's waits: only the limits can save the agent.
    edge = start_edge(extra=["--max-conns-per-ip", "1000", "--http-header-timeout", "60s"] + extra)
    _, rec = edge.wait_log("descriptor limit", 5)
    assert rec.get("nofile") == "256", rec
    flood = []
    try:
        for port in (edge.http_port, edge.https_port):
            flood += _flood(port, 200)
        time.sleep(1)
        if extra:
            edge.wait_log("public listener out of file descriptors", 5)
        else:
            edge.wait_log("public connections refused", 5, reason="total limit")
        agent = start_agent(echo.port, edge)
        agent.wait_tunnel(timeout=H.t(10))
        assert edge.alive()
    finally:
        for s in flood:
            s.close()
    # The tunnel's own public connections count too; with the flood gone
    # they pass again.
    time.sleep(0.5)
    port = H.parse_tcp_url(agent.url)[1]
    with H.connect(port, 5) as s:
        s.sendall(b"ping")
        s.settimeout(H.t(5))
        assert s.recv(16) == b"ping"


class _Flood:
    """Threads that open public connections as fast as they can, until
    stopped. Connections the edge closed are let go; the ones it holds stay
    open (closing them would hand the edge its descriptors back)."""

    def __init__(self, port, threads=4, sweep=1000):
        import threading
        self.port, self.sweep, self.stopping, self.socks = port, sweep, False, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _closed_by_peer(s):
        try:
            return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _run(self):
        while not self.stopping:
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", self.port))
            except OSError:
                s.close()
                continue
            s.setblocking(False)  # _closed_by_peer must not wait
            with self.lock:
                self.socks.append(s)
                if len(self.socks) < self.sweep:
                    continue
                dead = {x for x in self.socks if self._closed_by_peer(x)}
                self.socks = [x for x in self.socks if x not in dead]
            for x in dead:
                x.close()

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join()
        for s in self.socks:
            s.close()


def _cpu_seconds(pid):
    """utime + stime of pid, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_public_listener_pauses_while_descriptors_run_out(low_nofile, start_edge, start_agent,
                                                          echo):
    """A flood of public connections under a 256-descriptor limit, with the
    connection caps lifted: once the public side reaches the agents' reserve
    the listener refuses what waits and pauses (50 ms doubling to 1 s), one
    log line per pause, instead of accepting and closing each connection as
    fast as the flood comes. burrowd stays nearly idle, an agent still gets
    in, and once the flood ends a new public connection is served."""
    edge = start_edge(extra=["--max-conns-per-ip", "100000", "--max-public-conns", "100000",
                             "--http-header-timeout", "60s"])
    flood = _Flood(edge.http_port)
    try:
        listener = "127.0.0.1:%d" % edge.http_port
        _, rec = edge.wait_log("public listener out of file descriptors", 10, listener=listener)
        assert int(rec["refused"]) > 0 and rec["pause"] == "50ms", rec
        edge.wait_log(lambda rec, line: rec.get("msg") == "public listener out of file "
                      "descriptors" and rec.get("pause") in ("400ms", "800ms", "1000ms"), 15)
        before = _cpu_seconds(edge.pid)
        time.sleep(2)
        spent = _cpu_seconds(edge.pid) - before
        assert spent < 0.5, "burrowd used %.2f s of CPU in 2 s of flood" % spent
        agent = start_agent(echo.port, edge)
        agent.wait_tunnel(timeout=H.t(10))
    finally:
        flood.stop()
    # the next pause is at most 1 s: then the first connection kept says so
    c = HH.Client(edge.http_port)
    c.request("nobody.localhost")
    status, _, _ = c.response()
    assert status == 404
    c.close()
    edge.wait_log("public listener accepting again", 5, listener=listener)
    # the pauses are logged, not each refusal
    lines = [r for r in list(edge.out.records)
             if r.get("msg") == "public listener out of file descriptors"]
    refused = sum(int(r["refused"]) for r in lines)
    assert refused >= 10 * len(lines), (refused, len(lines))
