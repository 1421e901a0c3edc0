"""Hostile and broken clients on the edge's agent listener.

For each: the edge closes that connection within a few seconds, logs why
(`session closed` with a non-empty err), and keeps serving: a normal tunnel
started before still passes data afterwards, and new agents still connect.
"""

import json
import os
import socket
import struct
import threading
import time

import pytest

import helpers as H


def _auth_bytes(token="test-token"):
    return json.dumps({"type": "Auth", "version": "0.1.0", "token": token,
                       "client_id": ""}).encode()


def _bind_bytes(req_id="1"):
    return json.dumps({"type": "Bind", "req_id": req_id, "proto": "tcp", "edge_type": "tcp",
                       "name": "x", "subdomain": "", "hostname": "", "remote_addr": ""}).encode()


# Each attack: f(edge) -> socket the edge must close. They send their bytes
# and return; the common part checks the outcome. The edge may hang up while
# an attack is still sending (e.g. it judges a frame by its length bytes), so
# send errors are ignored.


def _send(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


def _tls(edge):
    s = H.tls_connect(edge.agent_port, edge.ca)
    s.expect_goaway = True   # noqa: attribute on purpose
    return s

def attack_garbage(edge):
    s = _tls(edge)
    _send(s, b"\xde\xad\xbe\xef" * 16 + b"this is not yamux\r\n" * 4)
    return s


def attack_bad_version(edge):
    s = _tls(edge)
    _send(s, H.yamux_hdr(H.YAMUX_WINDOW, H.F_SYN, 1, 0, version=1))
    return s


def attack_bad_type(edge):
    s = _tls(edge)
    _send(s, H.yamux_hdr(7, 0, 1, 0))
    return s


def attack_oversized_ctl_frame(edge):
    s = _tls(edge)
    _send(s, H.yamux_syn(1) + H.yamux_data(1, struct.pack(">I", 0xFFFFFFFF) + b"{"))
    return s


def attack_ctl_frame_just_over_64k(edge):
    s = _tls(edge)
    body = b'{"type":"Auth","pad":"' + b"a" * 65536 + b'"}'
    _send(s, H.yamux_syn(1) + H.yamux_data(1, H.ctl_frame(body)))
    return s


def attack_zero_length_ctl_frame(edge):
    s = _tls(edge)
    _send(s, H.yamux_syn(1) + H.yamux_data(1, struct.pack(">I", 0)))
    return s


def attack_auth_invalid_json(edge):
    s = _tls(edge)
    _send(s, H.yamux_syn(1) + H.yamux_data(
        1, H.ctl_frame(b'{"type":"Auth","version":"0.1.0","token":}}')))
    return s


def attack_auth_not_an_object(edge):
    s = _tls(edge)
    _send(s, H.yamux_syn(1) + H.yamux_data(1, H.ctl_frame(b'["Auth", 1, 2]')))
    return s


def attack_auth_wrong_member_type(edge):
    s = _tls(edge)
    body = json.dumps({"type": "Auth", "version": "0.1.0", "token": 12345,
                       "client_id": ""}).encode()
    _send(s, H.yamux_syn(1) + H.yamux_data(1, H.ctl_frame(body)))
    return s


def attack_bind_before_auth(edge):
    s = _tls(edge)
    _send(s, H.yamux_syn(1) + H.yamux_data(1, H.ctl_frame(_bind_bytes())))
    return s


def attack_second_auth(edge):
    s = _tls(edge)
    _send(s, H.yamux_syn(1) + H.yamux_data(1, H.ctl_frame(_auth_bytes())))
    time.sleep(0.2)
    _send(s, H.yamux_data(1, H.ctl_frame(_auth_bytes())))
    return s


def attack_control_not_stream_1(edge):
    """protocol.md §1: the control stream is stream 1; an agent that opens
    another stream first and authenticates on it is refused."""
    s = _tls(edge)
    _send(s, H.yamux_syn(3) + H.yamux_data(3, H.ctl_frame(_auth_bytes())))
    return s


def attack_plain_http(edge):
    s = socket.create_connection(("127.0.0.1", edge.agent_port), timeout=H.t(10))
    _send(s, b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n")
    return s


def attack_fragmented_header_then_bad_version(edge):
    """A yamux header split over many tiny TLS records, then garbage: the
    parser must cope with fragmentation and still reject the garbage."""
    s = _tls(edge)
    hdr = H.yamux_syn(1)
    for b in hdr:
        _send(s, bytes([b]))
        time.sleep(0.005)
    _send(s, H.yamux_hdr(0, 0, 1, 3, version=9) + b"xyz")
    return s


ATTACKS = [
    attack_garbage,
    attack_bad_version,
    attack_bad_type,
    attack_oversized_ctl_frame,
    attack_ctl_frame_just_over_64k,
    attack_zero_length_ctl_frame,
    attack_auth_invalid_json,
    attack_auth_not_an_object,
    attack_auth_wrong_member_type,
    attack_bind_before_auth,
    attack_second_auth,
    attack_control_not_stream_1,
    attack_plain_http,
    attack_fragmented_header_then_bad_version,
]


def _session_closed_with_err(rec, line):
    return rec.get("msg") == "session closed" and bool(rec.get("err"))


def _check_closed_and_still_serving(tunnel, sock, mark, what, check_goaway=False):
    how, data, secs = H.recv_until_close(sock, H.t(5))
    sock.close()
    edge = tunnel.edge
    assert how in ("eof", "reset"), \
        "%s: edge kept the connection open for 5 s (received %d bytes)\n%s" % (
            what, len(data), edge.tail(20))
    if check_goaway and getattr(sock, "expect_goaway", False):
        # protocol.md §4/§8: protocol error -> Go Away code 1, then close
        frames = H.parse_yamux_frames(data)
        goaways = [f[4] for f in frames if f[1] == H.YAMUX_GOAWAY]
        assert goaways == [1], "%s: expected one Go Away with code 1 before the close, " \
            "got frames %s" % (what, frames)
    r = edge.out.wait(_session_closed_with_err, H.t(5), since=mark)
    assert r is not None, "%s: no `session closed` log with err=\n%s" % (what, edge.tail(20))
    assert edge.alive(), "%s: edge died\n%s" % (what, edge.tail())
    assert H.echo_roundtrip(tunnel.port, os.urandom(50_000)), what
    return r[1]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__[7:] for a in ATTACKS])
def test_hostile_client_is_dropped_edge_keeps_serving(tunnel, attack):
    assert H.echo_roundtrip(tunnel.port)
    mark = tunnel.edge.out.mark()
    sock = attack(tunnel.edge)
    rec = _check_closed_and_still_serving(tunnel, sock, mark, attack.__name__)
    print("edge said: %s" % rec.get("err"))


TLS_ATTACKS = [a for a in ATTACKS if a is not attack_plain_http]


@pytest.mark.parametrize("attack", TLS_ATTACKS, ids=[a.__name__[7:] for a in TLS_ATTACKS])
def test_protocol_error_sends_goaway_1_before_close(tunnel, attack):
    """protocol.md §4/§8: on a protocol error the edge sends Go Away with
    code 1 (protocol error), flushed, and then closes."""
    mark = tunnel.edge.out.mark()
    sock = attack(tunnel.edge)
    _check_closed_and_still_serving(tunnel, sock, mark, attack.__name__, check_goaway=True)


def test_all_attacks_back_to_back_then_new_agent(tunnel, start_agent, servers):
    """Every attack against the same edge, then a brand-new agent still gets
    a working tunnel (nothing leaked into shared state)."""
    for attack in ATTACKS:
        mark = tunnel.edge.out.mark()
        _check_closed_and_still_serving(tunnel, attack(tunnel.edge), mark, attack.__name__)
    svc = H.EchoServer()
    servers.append(svc)
    a = start_agent(svc.port, tunnel.edge)
    a.wait_tunnel()
    assert H.echo_roundtrip(a.public_port)


def test_window_overrun_is_a_protocol_error(tunnel):
    """A client sending more than the receive window the edge granted on
    the control stream is dropped; the same bytes sent within the window
    are fine (positive control)."""
    raw = H.RawSession(tunnel.edge.agent_port, tunnel.edge.ca)
    try:
        resp = raw.auth()
        assert resp is not None, "no AuthResp (frames: %s)" % raw.frames[-10:]
        assert not resp.get("error"), resp
        assert resp.get("client_id"), resp

        def pad_frame(i):
            return H.ctl_frame(json.dumps({"type": "ZzPadding", "i": "%08d" % i,
                                           "p": "x" * 1000}).encode())

        frame_len = len(pad_frame(0))

        def padding(nbytes):
            out = b"".join(pad_frame(i) for i in range(nbytes // frame_len + 1))
            return out[:nbytes]

        # positive control: half the window in whole frames, within flow control
        raw.pump(0.3)
        avail = raw.send_window[1]
        assert avail > frame_len, raw.send_window
        ok = padding((avail // 2) // frame_len * frame_len)
        raw.send(H.yamux_data(1, ok))
        raw.send_window[1] -= len(ok)
        assert raw.ping(0x1234), "session died although the client respected the window"

        # now overrun: one data frame larger than what is left of the window
        raw.pump(0.5)
        avail = raw.send_window[1]
        over = padding(avail + 128 * 1024)
        mark = tunnel.edge.out.mark()
        raw.sock.expect_goaway = True
        try:
            raw.send(H.yamux_data(1, over))
        except OSError:
            pass  # the edge may hang up while we are still sending
        rec = _check_closed_and_still_serving(tunnel, raw.sock, mark, "window overrun",
                                              check_goaway=True)
        # the yamux engine's reason at warn, although the session had
        # authenticated; not the symptom "control stream reset" at info
        assert rec.get("lvl") == "warn", rec
        assert "window" in rec.get("err", ""), rec
    finally:
        raw.close()


def test_raw_session_auth_and_bind_then_bad_bind(tunnel):
    """A hand-driven session that follows the protocol works (so the
    hostile tests are not failing for a reason of the harness), and a Bind
    the edge refuses gets a clear error while the session stays up."""
    raw = H.RawSession(tunnel.edge.agent_port, tunnel.edge.ca)
    try:
        resp = raw.auth()
        assert resp is not None and not resp.get("error") and resp.get("client_id"), resp
        raw.send_ctl(_bind_bytes("7"))
        b = raw.wait_msg("BindResp")
        assert b is not None, "no BindResp"
        assert b.get("req_id") == "7" and not b.get("error"), b
        host, port = H.parse_tcp_url(b.get("url"))
        tunnel_id = b.get("tunnel_id")
        assert tunnel_id and len(tunnel_id) == 32, b
        lo, hi = tunnel.edge.tcp_ports
        assert lo <= port <= hi
        # a remote_addr the edge cannot serve (outside the range)
        bad = json.loads(_bind_bytes("8"))
        bad["remote_addr"] = "127.0.0.1:%d" % (hi + 1 if hi < 65535 else lo - 1)
        raw.send_msg(bad)
        b = raw.wait_msg("BindResp")
        assert b is not None, "no BindResp for a bad remote_addr"
        assert b.get("req_id") == "8" and b.get("error"), b
        # the address another session (the agent of the fixture) holds
        bad = json.loads(_bind_bytes("9"))
        bad["remote_addr"] = "127.0.0.1:%d" % tunnel.port
        raw.send_msg(bad)
        b = raw.wait_msg("BindResp")
        assert b is not None and b.get("req_id") == "9" and b.get("error"), b
        assert not b.get("url") and not b.get("tunnel_id"), b
        assert raw.ping(77), "session not alive after refused binds"
        assert H.echo_roundtrip(tunnel.port), "the other agent's tunnel was disturbed"

        # an agent-opened stream other than the control stream is reset
        raw.send(H.yamux_syn(3))
        assert raw.wait_for(lambda: 3 in raw.rsts, 5), "stream 3 not reset: %s" % raw.frames[-5:]
        assert raw.ping(78)

        # a public connection: the edge opens an even stream with a Conn frame
        pub = H.connect(port)
        pub.sendall(b"hello agent")
        assert raw.wait_for(lambda: any(len(v) >= 4 for v in raw.stream_data.values()), 5), \
            "edge opened no stream for the public connection: %s" % raw.frames[-5:]
        sid = next(k for k, v in raw.stream_data.items() if len(v) >= 4)
        assert sid % 2 == 0, "edge used an odd stream id %d" % sid
        assert any(o[0] == sid for o in raw.opened), "no SYN for stream %d" % sid
        n = struct.unpack(">I", raw.stream_data[sid][:4])[0]
        assert raw.wait_for(lambda: len(raw.stream_data[sid]) >= 4 + n + len(b"hello agent"), 5)
        conn = json.loads(bytes(raw.stream_data[sid][4:4 + n]))
        assert conn.get("type") == "Conn", conn
        assert conn.get("tunnel_id") == tunnel_id, conn
        assert conn.get("edge_type") == "tcp", conn
        assert conn.get("client_addr") == "127.0.0.1:%d" % pub.getsockname()[1], conn
        assert bytes(raw.stream_data[sid][4 + n:]) == b"hello agent"
        # bytes back, then FIN both ways
        raw.send(H.yamux_data(sid, b"hello public", flags=H.F_ACK))
        assert H.recv_exact(pub, len(b"hello public")) == b"hello public"
        pub.shutdown(socket.SHUT_WR)
        assert raw.wait_for(lambda: sid in raw.fins, 5), "public half-close not sent as FIN"
        raw.send(H.yamux_hdr(H.YAMUX_WINDOW, H.F_FIN, sid, 0))
        how, data, _ = H.recv_until_close(pub, H.t(5))
        assert (how, data) == ("eof", b""), (how, data)
        pub.close()
        assert raw.ping(79)
    finally:
        raw.close()
    assert H.echo_roundtrip(tunnel.port)


def test_idle_connections_do_not_block_new_agents(tunnel, start_agent, servers):
    """Fifty connections that never speak must not stall the edge's
    handshakes with real agents."""
    idle = [socket.create_connection(("127.0.0.1", tunnel.edge.agent_port), timeout=5)
            for _ in range(50)]
    try:
        svc = H.EchoServer()
        servers.append(svc)
        t0 = time.monotonic()
        a = start_agent(svc.port, tunnel.edge)
        a.wait_tunnel(timeout=8)
        assert time.monotonic() - t0 < H.t(8)
        assert H.echo_roundtrip(a.public_port)
        assert H.echo_roundtrip(tunnel.port)
    finally:
        for s in idle:
            s.close()


@pytest.mark.slow
@pytest.mark.deadline(60)
def test_silent_clients_closed_after_auth_timeout(tunnel):
    """Clients that connect and send nothing (no ClientHello; TLS but no
    yamux; yamux SYN but no Auth) are closed after the auth timeout (10 s)."""
    edge = tunnel.edge
    mark = edge.out.mark()
    tcp_only = socket.create_connection(("127.0.0.1", edge.agent_port), timeout=5)
    tls_only = H.tls_connect(edge.agent_port, edge.ca)
    syn_only = H.tls_connect(edge.agent_port, edge.ca)
    syn_only.sendall(H.yamux_syn(1))
    socks = {"tcp_only": tcp_only, "tls_only": tls_only, "syn_only": syn_only}
    results = {}

    def watch(name, s):
        results[name] = H.recv_until_close(s, H.t(25))

    threads = [threading.Thread(target=watch, args=kv, daemon=True) for kv in socks.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join(H.t(30))
    for name, s in socks.items():
        s.close()
    for name in socks:
        how, data, secs = results.get(name, ("?", b"", 0))
        assert how in ("eof", "reset"), "%s: not closed within 25 s" % name
        assert secs >= 5, "%s: closed after %.1fs, before any reasonable auth timeout" % (
            name, secs)
        assert secs < H.t(16), "%s: closed only after %.1fs (auth timeout 10 s)" % (name, secs)
    assert edge.alive()
    closed = edge.out.find_all(_session_closed_with_err, mark)
    assert len(closed) >= 2, "expected `session closed` logs for the silent clients\n" + \
        edge.tail(20)
    assert H.echo_roundtrip(tunnel.port)


@pytest.mark.slow
@pytest.mark.deadline(80)
def test_authenticated_silent_session_dropped_pinging_one_kept(tunnel):
    """protocol.md §3: the edge drops a session from which nothing has
    arrived for 30 s; a session that pings every 5 s stays up."""
    silent = H.RawSession(tunnel.edge.agent_port, tunnel.edge.ca)
    alive = H.RawSession(tunnel.edge.agent_port, tunnel.edge.ca)
    try:
        for raw in (silent, alive):
            r = raw.auth()
            assert r is not None and not r.get("error"), r
        t0 = time.monotonic()
        closed_at = None
        n = 0
        while time.monotonic() - t0 < H.t(45):
            n += 1
            assert alive.ping(1000 + n, timeout=5), \
                "pinging session dropped after %.1fs" % (time.monotonic() - t0)
            if closed_at is None and not silent.pump(0.01):
                closed_at = time.monotonic() - t0
                if closed_at > 35:
                    break
            if closed_at is not None and time.monotonic() - t0 > 35:
                break
            time.sleep(min(5.0, max(0.0, 35.5 - (time.monotonic() - t0))))
        assert closed_at is not None, "silent authenticated session still open after 45 s"
        assert closed_at >= 20, "silent session dropped after only %.1fs" % closed_at
        assert alive.ping(99999), "pinging session dropped"
    finally:
        silent.close()
        alive.close()
    assert H.echo_roundtrip(tunnel.port)


def test_raw_auth_refused_goaway_0_and_close(start_edge, tmp_path):
    """protocol.md §5.2: a refused Auth gets an AuthResp with the error and
    an empty client_id, then Go Away 0 and the connection closes."""
    tokens = tmp_path / "tokens"
    tokens.write_text("right\n")
    edge = start_edge(auth_tokens=str(tokens))
    raw = H.RawSession(edge.agent_port, edge.ca)
    try:
        t0 = time.monotonic()
        r = raw.auth("wrong")
        assert r is not None, "no AuthResp for a bad token"
        assert r.get("error") and r.get("client_id") == "", r
        assert raw.wait_for(lambda: raw.reader.closed, 5), "edge kept a refused session open"
        assert time.monotonic() - t0 < H.t(3)
        assert raw.goaway == 0, "expected Go Away 0 after a refused Auth, got %r" % raw.goaway
    finally:
        raw.close()
    raw = H.RawSession(edge.agent_port, edge.ca)
    try:
        r = raw.auth("right")
        assert r is not None and not r.get("error") and len(r.get("client_id", "")) == 32, r
    finally:
        raw.close()


def test_raw_resume_semantics(tunnel):
    """protocol.md §7.3: resuming a live client_id ends the old session
    (Go Away 0) and returns the same id with its reserved address; an unknown
    id gets a new one."""
    edge = tunnel.edge
    r1 = H.RawSession(edge.agent_port, edge.ca)
    r2 = r3 = None
    try:
        a = r1.auth()
        cid = a["client_id"]
        r1.send_ctl(_bind_bytes("1"))
        b = r1.wait_msg("BindResp")
        assert b and not b.get("error"), b
        url = b["url"]

        r2 = H.RawSession(edge.agent_port, edge.ca)
        a2 = r2.auth(client_id=cid)
        assert a2 is not None and not a2.get("error"), a2
        assert a2.get("client_id") == cid, "live session not resumed: %r" % a2
        assert r1.wait_for(lambda: r1.reader.closed, 5), "old session not ended"
        assert r1.goaway == 0, "old session: expected Go Away 0, got %r" % r1.goaway
        # the resumed session gets its address back
        bind = json.loads(_bind_bytes("1"))
        bind["remote_addr"] = "127.0.0.1:%d" % H.parse_tcp_url(url)[1]
        r2.send_msg(bind)
        b2 = r2.wait_msg("BindResp")
        assert b2 and not b2.get("error") and b2.get("url") == url, (b2, url)

        # someone else (a fresh session) cannot take the resumed address
        r3 = H.RawSession(edge.agent_port, edge.ca)
        a3 = r3.auth()
        assert a3 is not None and not a3.get("error"), a3
        r3.send_msg(bind)
        b3 = r3.wait_msg("BindResp")
        assert b3 and b3.get("error"), b3
    finally:
        for r in (r1, r2, r3):
            if r:
                r.close()
    assert H.echo_roundtrip(tunnel.port)


def test_raw_unknown_client_id_gets_a_new_id(tunnel):
    """protocol.md §7.3: an unknown client_id is not adopted; the edge
    answers with a new id (the agent detects that nothing was resumed)."""
    edge = tunnel.edge
    raw = H.RawSession(edge.agent_port, edge.ca)
    try:
        unknown = "0123456789abcdef0123456789abcdef"
        a = raw.auth(client_id=unknown)
        assert a is not None and not a.get("error"), a
        cid = a.get("client_id", "")
        assert len(cid) == 32 and all(c in "0123456789abcdef" for c in cid), a
        assert cid != unknown, "edge adopted a client_id it never issued: %r" % a
    finally:
        raw.close()
