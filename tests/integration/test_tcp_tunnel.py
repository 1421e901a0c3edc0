"""Data path of tcp tunnels: correctness, concurrency, backpressure, closes."""

import hashlib
import os
import socket
import struct
import threading
import time

import pytest

import helpers as H

MiB = 1 << 20


def test_tunnel_starts_logs_and_echoes(tunnel):
    """The basic contract: log lines of both sides and one echo."""
    edge, agent = tunnel.edge, tunnel.agent
    lo, hi = edge.tcp_ports
    host, port = H.parse_tcp_url(tunnel.url)
    assert lo <= port <= hi, "public port %d outside --tcp-ports %d-%d" % (port, lo, hi)
    agent.wait_log("client session established", obj="csess")
    _, rec = agent.wait_log("started tunnel", url=tunnel.url)
    assert rec.get("name") == "command_line", rec
    assert rec.get("addr", "").endswith(":%d" % tunnel.echo.port), rec
    edge.wait_log("session established")
    edge.wait_log("tunnel bound", url=tunnel.url)

    payload = os.urandom(100_000)
    assert H.echo_roundtrip(tunnel.port, payload)
    # debug log of the join, naming the local address
    agent.wait_log("join connections", l=lambda v: v.endswith(":%d" % tunnel.echo.port))


def test_sequential_connections(tunnel):
    """Many short connections one after another all work (stream ids,
    stream teardown)."""
    for i in range(100):
        payload = ("conn %d " % i).encode() * (1 + i * 7)
        assert H.echo_roundtrip(tunnel.port, payload), "connection %d" % i
    assert tunnel.agent.alive() and tunnel.edge.alive()


@pytest.mark.deadline(150)
def test_bulk_64mib_each_way_concurrently(start_edge, start_agent, servers):
    """64 MiB of random bytes each way at once, byte-exact (sha256)."""
    size = 16 * MiB if (H.QUICK or H.ASAN) else 64 * MiB
    svc = H.BulkServer()
    servers.append(svc)
    edge = start_edge()
    agent = start_agent(svc.port, edge)
    agent.wait_tunnel()

    s = H.connect(agent.public_port, timeout=60)
    s.sendall(struct.pack(">QQ", size, size))
    sent_hash = hashlib.sha256()
    send_err = []

    def sender():
        try:
            left = size
            while left:
                chunk = os.urandom(min(left, MiB))
                sent_hash.update(chunk)
                s.sendall(chunk)
                left -= len(chunk)
        except Exception as e:
            send_err.append(repr(e))

    th = threading.Thread(target=sender, daemon=True)
    start = time.monotonic()
    th.start()
    recv_hash = hashlib.sha256()
    left = size
    while left:
        d = s.recv(min(left, MiB))
        assert d, "public side closed after %d of %d bytes" % (size - left, size)
        recv_hash.update(d)
        left -= len(d)
    digests = H.recv_exact(s, 64)
    th.join(H.t(60))
    elapsed = time.monotonic() - start
    s.close()
    assert not th.is_alive(), "sender stuck"
    assert not send_err, send_err
    assert len(svc.results) == 1, svc.errors
    res = svc.results[0]
    assert res["recv_left"] == 0, res
    # service -> client direction
    assert recv_hash.digest() == res["sent_sha"], "download corrupted"
    assert digests[:32] == res["sent_sha"]
    # client -> service direction
    assert res["recv_sha"] == sent_hash.digest(), "upload corrupted"
    assert digests[32:] == sent_hash.digest()
    print("bulk: 2 x %d MiB in %.2fs (%.1f MB/s each way)" % (
        size // MiB, elapsed, size / elapsed / 1e6))


@pytest.mark.deadline(120)
def test_200_concurrent_connections(tunnel):
    """200 connections open at once through one tunnel, each echoing its
    own distinct data."""
    n = 200
    connected = threading.Barrier(n + 1)
    echoed = threading.Barrier(n + 1)
    errors = []
    results = [False] * n

    def worker(i):
        s = None
        try:
            s = H.connect(tunnel.port, timeout=60)
            connected.wait(H.t(60))
            payload = struct.pack(">I", i) * 4096 + H.pattern_block(i, 1000 + 37 * i)
            half = len(payload) // 2
            s.sendall(payload[:half])
            time.sleep(0.01)
            s.sendall(payload[half:])
            got = H.recv_exact(s, len(payload))
            results[i] = got == payload
            echoed.wait(H.t(60))   # hold the connection until all have echoed
        except Exception as e:
            errors.append("conn %d: %r" % (i, e))
            for b in (connected, echoed):
                b.abort()
        finally:
            if s:
                s.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    try:
        connected.wait(H.t(60))
        echoed.wait(H.t(90))
    except threading.BrokenBarrierError:
        pass
    for th in threads:
        th.join(H.t(30))
    assert not errors, "%d connections failed, e.g. %s" % (len(errors), errors[:5])
    bad = [i for i, ok in enumerate(results) if not ok]
    assert not bad, "wrong echo on connections %s" % bad[:20]
    assert tunnel.echo.accepted >= n
    # and the tunnel still works afterwards
    assert H.echo_roundtrip(tunnel.port)


@pytest.mark.deadline(150)
def test_stalled_reader_memory_bounded(start_edge, start_agent, servers):
    """The local service pushes a lot into a public client that stops
    reading for 5 s: agent and edge must apply backpressure (bounded RSS),
    then the transfer completes byte-exact."""
    total = 64 * MiB if (H.QUICK or H.ASAN) else 256 * MiB
    limit_kib = 64 * 1024
    svc = H.PushServer(total)
    servers.append(svc)
    edge = start_edge()
    agent = start_agent(svc.port, edge)
    agent.wait_tunnel()
    # warm up the path once so one-time allocations are in the baseline
    time.sleep(0.5)
    base = {"agent": agent.rss_kib(), "edge": edge.rss_kib()}

    s = H.connect(agent.public_port, timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    h = hashlib.sha256()
    got = 0
    while got < MiB:
        d = s.recv(65536)
        assert d, "closed early"
        h.update(d)
        got += len(d)

    peak = dict(base)
    stall_until = time.monotonic() + 5.0
    while time.monotonic() < stall_until:
        for name, p in (("agent", agent), ("edge", edge)):
            r = p.rss_kib()
            assert r is not None, "%s died while the reader stalled\n%s" % (name, p.tail())
            peak[name] = max(peak[name], r)
        time.sleep(0.1)
    pushed_during_stall = svc.sent_bytes
    growth = {k: peak[k] - base[k] for k in base}
    print("stall: base %s peak %s KiB, service pushed %d MiB of %d" % (
        base, peak, pushed_during_stall // MiB, total // MiB))

    # resume reading; everything arrives, in order
    s.settimeout(H.t(60))
    while True:
        d = s.recv(MiB)
        if not d:
            break
        h.update(d)
        got += len(d)
    s.close()
    assert got == total, "received %d of %d bytes" % (got, total)
    assert svc.done.wait(10)
    assert h.digest() == svc.sent_sha[0], "data corrupted"

    assert pushed_during_stall < total, \
        "the service could push everything while the client did not read: no backpressure"
    if not H.ASAN:  # ASan's quarantine and shadow memory make RSS meaningless
        for k in growth:
            assert growth[k] < limit_kib, (
                "%s RSS grew by %d MiB while the public client stalled (limit %d MiB)"
                % (k, growth[k] // 1024, limit_kib // 1024))


def test_local_service_down_closes_public_conn_and_tunnel_survives(start_edge, start_agent,
                                                                    servers):
    """Nothing listens on the local port: the public connection is closed
    promptly; a service started afterwards works through the same URL."""
    local_port = H.free_port()
    edge = start_edge()
    agent = start_agent(local_port, edge)
    agent.wait_tunnel()

    for attempt in range(3):
        try:
            s = H.connect(agent.public_port)
        except ConnectionResetError:
            # The reset can beat connect() back to the client on loopback:
            # that is the prompt close this test asks for.
            continue
        try:
            s.sendall(b"hello?")
        except OSError:
            pass
        how, data, secs = H.recv_until_close(s, H.t(3))
        s.close()
        assert how in ("eof", "reset"), \
            "public connection not closed within 3 s with the local service down"
        assert data == b"", "got data from nowhere: %r" % data[:100]
    assert agent.alive() and edge.alive()

    svc = H.EchoServer(port=local_port)
    servers.append(svc)
    assert H.echo_roundtrip(agent.public_port, b"back up" * 1000)


def test_half_close_propagates(start_edge, start_agent, servers):
    """Client shuts down its write side: the service sees EOF, can still
    answer, and its close reaches the client as EOF."""
    svc = H.RecordingServer(reply=b"bye " * 1000)
    servers.append(svc)
    edge = start_edge()
    agent = start_agent(svc.port, edge)
    agent.wait_tunnel()

    s = H.connect(agent.public_port)
    s.sendall(b"hello " * 1000)
    s.shutdown(socket.SHUT_WR)
    how, data, secs = H.recv_until_close(s, H.t(5))
    s.close()
    assert svc.event.wait(H.t(5)), "service never saw EOF after the client's SHUT_WR"
    assert svc.received == [b"hello " * 1000]
    assert data == b"bye " * 1000, "reply after half-close lost (%d bytes, %s)" % (len(data), how)
    assert how == "eof", "expected a clean EOF after the reply, got %s" % how


def test_close_propagates_both_ways(start_edge, start_agent, servers):
    """Client close reaches the service; service close reaches the client."""
    rec = H.RecordingServer()
    servers.append(rec)
    edge = start_edge()
    agent = start_agent(rec.port, edge)
    agent.wait_tunnel()
    s = H.connect(agent.public_port)
    s.sendall(b"x" * 5000)
    time.sleep(0.2)
    t0 = time.monotonic()
    s.close()
    assert rec.event.wait(H.t(3)), "service did not see the public client's close within 3 s"
    assert rec.received == [b"x" * 5000]

    class Greeter(H._Server):
        def handle(self, conn):
            conn.sendall(b"greetings\n")
            # close right away

    g = Greeter()
    servers.append(g)
    agent2 = start_agent(g.port, edge)
    agent2.wait_tunnel()
    s = H.connect(agent2.public_port)
    how, data, secs = H.recv_until_close(s, H.t(3))
    s.close()
    assert data == b"greetings\n"
    assert how == "eof", "client did not see the service's close within 3 s (%s)" % how
    assert time.monotonic() - t0 < H.t(20)


def test_small_writes_have_no_nagle_stalls(tunnel):
    """write-write-read exchanges of tiny messages: with Nagle left on any
    socket of the data path, exchanges stall ~40 ms on delayed ACKs (the
    brief: set TCP_NODELAY everywhere)."""
    s = H.connect(tunnel.port)
    s.settimeout(H.t(5))
    times = []
    try:
        for i in range(300):
            a, b = b"a%08d\n" % i, b"b%08d\n" % i
            t0 = time.perf_counter()
            s.sendall(a)
            s.sendall(b)
            got = H.recv_exact(s, len(a) + len(b))
            times.append(time.perf_counter() - t0)
            assert got == a + b
    finally:
        s.close()
    times.sort()
    p50, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
    slow = sum(1 for x in times if x > 0.030)
    print("small exchanges: p50 %.2f ms, p90 %.2f ms, >30ms: %d" % (p50 * 1e3, p90 * 1e3, slow))
    assert slow <= 10 * H.SLOW_FACTOR, \
        "%d of 300 exchanges took > 30 ms (p50 %.1f ms, p90 %.1f ms): Nagle on the data path?" % (
            slow, p50 * 1e3, p90 * 1e3)
    assert p90 < 0.010 * H.SLOW_FACTOR, "p90 %.1f ms" % (p90 * 1e3)
