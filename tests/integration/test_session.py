"""Agent <-> edge sessions: auth, reconnect, resume, restarts, shutdown."""

import os
import signal
import threading
import time

import pytest

import helpers as H


def _reconnect_loop_msgs(rec, line):
    return rec.get("msg") in ("session closed, starting reconnect loop",
                              "failed to reconnect session")


# ---------------------------------------------------------------- auth


def test_bad_token_agent_exits_1_edge_keeps_serving(start_edge, start_agent, echo, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# allowed tokens\ngood-token-123\n\nother-token\n")
    edge = start_edge(auth_tokens=str(tokens))

    bad = start_agent(echo.port, edge, authtoken="wrong-token")
    bad.expected_rc = 1
    rc = bad.wait_exit(H.t(10))
    assert rc is not None, "agent with a bad token did not exit within 10 s\n" + bad.tail()
    assert rc == 1, "exit status %r, expected 1\n%s" % (rc, bad.tail())
    bad._drain()
    _, rec = bad.wait_log("authentication failed", timeout=1)
    assert rec.get("lvl") == "crit", rec
    assert rec.get("err"), rec
    errs = [l for l in bad.err.lines if l.startswith("ERROR:")]
    assert errs, "no ERROR: line on stderr\n" + bad.tail()
    assert "authentication failed" in errs[0], errs
    assert bad.find_log("started tunnel") is None
    assert edge.alive(), "edge died after a bad token\n" + edge.tail()

    # the edge keeps serving: the right token works (and so does the second one)
    for tok in ("good-token-123", "other-token"):
        good = start_agent(echo.port, edge, authtoken=tok)
        good.wait_tunnel()
        assert H.echo_roundtrip(good.public_port)


# ---------------------------------------------------------------- reconnect


@pytest.mark.deadline(90)
def test_edge_not_running_agent_retries_then_connects(start_edge, start_agent, echo, tmp_path):
    state = str(tmp_path / "state")
    # first start creates the dev CA; stop it again
    first = start_edge(state_dir=state, agent_addr="127.0.0.1:%d" % H.free_low_port())
    assert first.find_log("created dev certificate authority") is not None, first.tail()
    port = first.agent_port
    rc, forced = first.stop()
    assert (rc, forced) == (0, False), first.tail()

    agent = start_agent(echo.port, "127.0.0.1:%d" % port, ca=first.ca)
    i, rec = agent.wait_log("failed to reconnect session", timeout=10, err=None)
    _, rec2 = agent.wait_log("failed to reconnect session", timeout=10, since=i + 1)
    # backoff: retry= is a duration, growing (1 s doubling, capped at 30 s)
    r1, r2 = H.parse_duration(rec.get("retry")), H.parse_duration(rec2.get("retry"))
    assert 0.2 <= r1 <= 2 and r1 < r2 <= 30, (rec, rec2)
    assert agent.alive(), "agent gave up while the edge is down\n" + agent.tail()
    assert agent.find_log("started tunnel") is None

    assert H.port_is_free(port), "agent port was taken meanwhile; rerun"
    edge = start_edge(state_dir=state, agent_addr="127.0.0.1:%d" % port)
    assert edge.find_log("using dev certificate authority") is not None, edge.tail()
    assert edge.ca == first.ca
    agent.wait_tunnel(timeout=40)   # backoff may have grown to a few seconds
    assert H.echo_roundtrip(agent.public_port)


def _echo_pump(port, stop, stats):
    """Echo traffic in a loop until the connection breaks or stop is set."""
    try:
        s = H.connect(port)
        s.settimeout(H.t(10))
        block = os.urandom(64 * 1024)
        while not stop.is_set():
            s.sendall(block)
            got = H.recv_exact(s, len(block))
            if got != block:
                stats["corrupt"] = True
                break
            stats["rounds"] = stats.get("rounds", 0) + 1
    except Exception as e:
        stats["error"] = repr(e)
        stats["error_at"] = time.monotonic()


def _restart_edge_test(start_edge, start_agent, echo, tmp_path, how):
    state = str(tmp_path / "state")
    edge = start_edge(state_dir=state, agent_addr="127.0.0.1:%d" % H.free_low_port())
    agent = start_agent(echo.port, edge)
    _, url1 = agent.wait_tunnel()
    agent.wait_log("client session established")

    stop, stats = threading.Event(), {}
    th = threading.Thread(target=_echo_pump, args=(agent.public_port, stop, stats), daemon=True)
    th.start()
    deadline = time.monotonic() + H.t(10)
    while stats.get("rounds", 0) < 20 and time.monotonic() < deadline and "error" not in stats:
        time.sleep(0.02)
    assert stats.get("rounds", 0) >= 20, "no traffic before the restart: %r" % stats

    mark = agent.out.mark()
    t_kill = time.monotonic()
    if how == "kill":
        edge.kill()
    else:
        rc, forced = edge.stop()
        assert (rc, forced) == (0, False), "edge SIGTERM: rc=%r forced=%r\n%s" % (
            rc, forced, edge.tail())
    # the public connection in flight is gone with the edge
    th.join(H.t(10))
    stop.set()
    assert not th.is_alive(), "public connection hangs after the edge went away"
    assert "error" in stats and not stats.get("corrupt"), stats
    # the agent closes the local side of the dead session's connection
    deadline = time.monotonic() + H.t(5)
    while not (echo.finished or echo.errors) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echo.finished or echo.errors, \
        "agent kept the local connection of a dead session open\n" + agent.tail(20)

    agent.wait_log("session closing", since=mark, timeout=10)
    agent.wait_log("session closed, starting reconnect loop", since=mark, timeout=10)
    agent.wait_log("failed to reconnect session", since=mark, timeout=10)
    assert agent.alive(), "agent exited after losing the edge\n" + agent.tail()

    edge2 = start_edge(state_dir=state, agent_addr=edge.addr, tcp_ports=edge.tcp_ports)
    assert edge2.ca == edge.ca
    _, url2 = agent.wait_tunnel(timeout=40, since=mark)
    print("url before %s, after restart %s (%.1fs)" % (url1, url2, time.monotonic() - t_kill))
    assert H.echo_roundtrip(agent.public_port, os.urandom(300_000))
    assert agent.alive() and edge2.alive()


@pytest.mark.deadline(90)
def test_edge_sigkill_mid_transfer_agent_reconnects(start_edge, start_agent, echo, tmp_path):
    _restart_edge_test(start_edge, start_agent, echo, tmp_path, "kill")


@pytest.mark.deadline(90)
def test_edge_sigterm_restart_agent_reconnects(start_edge, start_agent, echo, tmp_path):
    _restart_edge_test(start_edge, start_agent, echo, tmp_path, "term")


# ---------------------------------------------------------------- resume


def _proxied_tunnel(start_edge, start_agent, echo, servers):
    edge = start_edge()
    proxy = H.CuttableProxy(edge.agent_port)
    servers.append(proxy)
    agent = start_agent(echo.port, "127.0.0.1:%d" % proxy.port, ca=edge.ca)
    agent.wait_tunnel()
    assert H.echo_roundtrip(agent.public_port)
    return edge, proxy, agent


def _client_ids(edge, since=0):
    return [rec.get("client_id") for _, rec in
            edge.out.find_all(H.msg_is("session established"), since)]


@pytest.mark.deadline(90)
def test_resume_after_link_cut_same_url(start_edge, start_agent, echo, servers):
    """The agent's connection is cut (RST) twice; each time the agent
    reconnects through the same path and gets the SAME public url back."""
    edge, proxy, agent = _proxied_tunnel(start_edge, start_agent, echo, servers)
    url1 = agent.url
    ids = _client_ids(edge)
    assert len(ids) == 1 and ids[0], "edge did not log the session's client_id\n" + edge.tail()

    for round_ in range(2):
        # a public connection open across the cut
        held = H.connect(agent.public_port)
        held.sendall(b"hold")
        assert H.recv_exact(held, 4) == b"hold"
        n_local = len(echo.finished) + len(echo.errors)
        amark, emark = agent.out.mark(), edge.out.mark()
        assert proxy.cut() >= 1
        agent.wait_log("session closed, starting reconnect loop", since=amark, timeout=10)
        _, url = agent.wait_tunnel(timeout=20, since=amark)
        assert url == url1, "round %d: url changed after reconnect: %s -> %s" % (
            round_, url1, url)
        edge.wait_log("session closed", since=emark, timeout=5)
        edge.wait_log("session established", since=emark, timeout=5)
        assert _client_ids(edge, emark) == ids, "client id not resumed"
        assert H.echo_roundtrip(agent.public_port, os.urandom(100_000))
        # streams of the lost session are gone on both ends (protocol.md 7.3)
        how, _, _ = H.recv_until_close(held, H.t(5))
        held.close()
        assert how in ("eof", "reset"), "public connection of the lost session still open"
        deadline = time.monotonic() + H.t(5)
        while len(echo.finished) + len(echo.errors) < n_local + 2 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        # +2: the held connection and the echo_roundtrip one
        assert len(echo.finished) + len(echo.errors) >= n_local + 2, \
            "agent kept the local connection of the lost session open"
    assert agent.alive() and edge.alive()


@pytest.mark.slow
@pytest.mark.deadline(120)
def test_dead_link_detected_by_heartbeat_and_resumed(start_edge, start_agent, echo, servers):
    """The path to the edge black-holes (no FIN, no RST): the agent's
    heartbeat (10 s interval, 15 s tolerance) notices, it reconnects and
    gets the same url back."""
    edge, proxy, agent = _proxied_tunnel(start_edge, start_agent, echo, servers)
    url1 = agent.url
    amark = agent.out.mark()
    t0 = time.monotonic()
    assert proxy.freeze() >= 1
    agent.wait_log("session closed, starting reconnect loop", since=amark, timeout=45)
    detected = time.monotonic() - t0
    _, url = agent.wait_tunnel(timeout=30, since=amark)
    print("dead link detected after %.1fs" % detected)
    assert detected < H.t(35), "dead link detected only after %.1fs" % detected
    assert url == url1, "url changed after heartbeat reconnect: %s -> %s" % (url1, url)
    assert H.echo_roundtrip(agent.public_port)


@pytest.mark.slow
@pytest.mark.deadline(150)
def test_memory_stable_over_reconnects(start_edge, start_agent, echo, servers):
    """Repeated link cuts do not make agent or edge memory grow."""
    edge, proxy, agent = _proxied_tunnel(start_edge, start_agent, echo, servers)

    def cycle():
        amark = agent.out.mark()
        proxy.cut()
        agent.wait_tunnel(timeout=30, since=amark)
        assert H.echo_roundtrip(agent.public_port, os.urandom(200_000))

    for _ in range(3):
        cycle()
    base = (agent.rss_kib(), edge.rss_kib())
    for _ in range(10):
        cycle()
    after = (agent.rss_kib(), edge.rss_kib())
    print("RSS KiB agent %d -> %d, edge %d -> %d" % (base[0], after[0], base[1], after[1]))
    if not H.ASAN:
        assert after[0] - base[0] < 4096, "agent RSS grew %d KiB over 10 reconnects" % (
            after[0] - base[0])
        assert after[1] - base[1] < 4096, "edge RSS grew %d KiB over 10 reconnects" % (
            after[1] - base[1])


# ---------------------------------------------------------------- shutdown


def test_clean_shutdown_agent_then_edge(tunnel):
    assert H.echo_roundtrip(tunnel.port)
    # a connection held open across the shutdown
    held = H.connect(tunnel.port)
    held.sendall(b"ping")
    assert H.recv_exact(held, 4) == b"ping"
    emark = tunnel.edge.out.mark()

    rc, forced = tunnel.agent.stop()
    assert not forced, "agent ignored SIGTERM\n" + tunnel.agent.tail()
    assert rc == 0, "agent exit status %r after SIGTERM\n%s" % (rc, tunnel.agent.tail())
    assert tunnel.agent.sanitizer_report() is None, tunnel.agent.tail()
    how, _, _ = H.recv_until_close(held, H.t(5))
    held.close()
    assert how in ("eof", "reset"), "held public connection survived the agent's exit"
    tunnel.edge.wait_log("session closed", since=emark, timeout=5)

    rc, forced = tunnel.edge.stop()
    assert not forced, "edge ignored SIGTERM\n" + tunnel.edge.tail()
    assert rc == 0, "edge exit status %r after SIGTERM\n%s" % (rc, tunnel.edge.tail())
    assert tunnel.edge.sanitizer_report() is None, tunnel.edge.tail()


def test_clean_shutdown_edge_then_agent(tunnel):
    held = H.connect(tunnel.port)
    held.sendall(b"ping")
    assert H.recv_exact(held, 4) == b"ping"
    amark = tunnel.agent.out.mark()
    rc, forced = tunnel.edge.stop()
    assert (rc, forced) == (0, False), "edge: rc=%r forced=%r\n%s" % (rc, forced,
                                                                      tunnel.edge.tail())
    how, _, _ = H.recv_until_close(held, H.t(5))
    held.close()
    assert how in ("eof", "reset")
    tunnel.agent.wait_log("session closed, starting reconnect loop", since=amark, timeout=10)
    # SIGTERM while the agent is in its reconnect loop
    rc, forced = tunnel.agent.stop()
    assert (rc, forced) == (0, False), "agent: rc=%r forced=%r\n%s" % (rc, forced,
                                                                       tunnel.agent.tail())
    assert tunnel.agent.sanitizer_report() is None
    assert tunnel.edge.sanitizer_report() is None


def test_sigint_is_clean_too(tunnel):
    for p in (tunnel.agent, tunnel.edge):
        rc, forced = p.stop(sig=signal.SIGINT)
        assert (rc, forced) == (0, False), "%s: rc=%r forced=%r\n%s" % (p.name, rc, forced,
                                                                        p.tail())


# ---------------------------------------------------------------- refusals


def test_remote_addr_granted_then_taken_is_a_clear_error(start_edge, start_agent, echo):
    edge = start_edge()
    port = edge.tcp_ports[0] + 7
    first = start_agent(echo.port, edge, extra=["--remote-addr", "127.0.0.1:%d" % port])
    _, url = first.wait_tunnel()
    assert H.parse_tcp_url(url)[1] == port, url

    second = start_agent(echo.port, edge, extra=["--remote-addr", "127.0.0.1:%d" % port])
    second.expected_rc = 1
    rc = second.wait_exit(H.t(10))
    assert rc == 1, "agent asking for a taken port: rc=%r (expected exit 1)\n%s" % (
        rc, second.tail())
    second._drain()
    r = second.out.find(lambda rec, line: rec.get("lvl") in ("eror", "crit") and
                        "already" in rec.get("err", ""))
    assert r is not None, "no error log naming the taken address\n" + second.tail()
    assert any(l.startswith("ERROR:") for l in second.err.lines), second.tail()
    assert second.find_log("started tunnel") is None
    # the owner is undisturbed
    assert first.alive() and edge.alive()
    assert H.echo_roundtrip(port)


def test_untrusted_edge_certificate_is_refused(start_edge, start_agent, echo):
    """No silent insecure mode: an agent that does not trust the edge's CA
    never starts a tunnel (it reports the verification failure)."""
    edge = start_edge()
    other = start_edge()   # a different dev CA
    assert open(other.ca).read() != open(edge.ca).read()
    agent = start_agent(echo.port, edge, ca=other.ca)
    agent.wait_log("failed to reconnect session", timeout=10,
                   err=lambda v: "certif" in v.lower() or "verif" in v.lower())
    time.sleep(1)
    assert agent.find_log("started tunnel") is None
    assert agent.find_log("client session established") is None
    assert edge.find_log("session established") is None


def test_grace_period_reserves_port_of_lost_agent(start_edge, start_agent, echo):
    """A crashed agent's port stays reserved for the grace period (another
    agent cannot take it, public connections are not accepted), and is
    free again afterwards."""
    grace = 3.0
    edge = start_edge(extra=["--grace", "%ds" % grace])
    a = start_agent(echo.port, edge)
    a.wait_tunnel()
    port = a.public_port
    emark = edge.out.mark()
    a.kill()
    t0 = time.monotonic()
    edge.wait_log("session closed", since=emark, timeout=5)

    b = start_agent(echo.port, edge, extra=["--remote-addr", "127.0.0.1:%d" % port])
    b.expected_rc = 1
    rc = b.wait_exit(H.t(5))
    assert rc == 1, "took a port reserved for a lost session: rc=%r\n%s" % (rc, b.tail())
    assert b.find_log("started tunnel") is None

    try:
        s = H.connect(port, timeout=2)
    except OSError:
        pass   # refused: fine
    else:
        s.sendall(b"x")
        how, data, _ = H.recv_until_close(s, H.t(3))
        s.close()
        assert how in ("eof", "reset") and data == b"", \
            "public connection to a reserved port neither refused nor closed"

    left = grace + 0.7 - (time.monotonic() - t0)
    if left > 0:
        time.sleep(left)
    c = start_agent(echo.port, edge, extra=["--remote-addr", "127.0.0.1:%d" % port])
    c.wait_tunnel()
    assert c.public_port == port
    assert H.echo_roundtrip(port)


# ---------------------------------------------------------------- backoff


class _AuthThenDropEdge:
    """An edge that accepts every Auth and hangs up right after: a session
    that authenticates but never stays up (e.g. its binds keep failing)."""

    def __init__(self, state_dir):
        import socket
        import ssl
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(state_dir, "server.pem"),
                                 os.path.join(state_dir, "server.key"))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import json
        self.sock.settimeout(0.5)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                s = self.ctx.wrap_socket(c, server_side=True)
                r = H.YamuxReader(s)
                body = bytearray()
                while True:
                    f = r.frame(H.t(5))
                    if f is None:
                        break
                    if f[1] == H.YAMUX_DATA and f[3] == 1:
                        body += f[5]
                        if len(body) >= 4 and len(body) >= 4 + int.from_bytes(body[:4], "big"):
                            break
                resp = json.dumps({"type": "AuthResp", "client_id": "ab" * 16,
                                   "version": "0.1.0", "error": ""}).encode()
                s.sendall(H.yamux_hdr(H.YAMUX_WINDOW, H.F_ACK, 1, 0) +
                          H.yamux_data(1, H.ctl_frame(resp)))
                time.sleep(0.1)
                s.close()
            except OSError:
                c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_backoff_grows_when_sessions_die_right_after_auth(start_edge, start_agent, echo):
    """A successful Auth alone does not reset the reconnect backoff: only a
    session that stayed up does (protocol.md §7.3). Before, every Auth reset
    it, so an agent whose session the edge closed right after auth (an
    invalid Bind) reconnected about once a second forever."""
    edge = start_edge()   # only for its dev certificate and CA
    fake = _AuthThenDropEdge(edge.state_dir)
    try:
        agent = start_agent(echo.port, "127.0.0.1:%d" % fake.port, ca=edge.ca)
        retries = []
        since = 0
        for _ in range(3):
            i, rec = agent.wait_log("session closed, starting reconnect loop", timeout=20,
                                    since=since)
            retries.append(H.parse_duration(rec.get("retry")))
            since = i + 1
        assert retries == [1.0, 2.0, 4.0], retries
    finally:
        fake.close()
