"""A stdout whose reader stops must not stop the agent: with --log stdout
into a pipe nobody reads, the API keeps answering, SIGTERM still stops the
agent, and once the pipe is read again a `dropped N log lines` record says
what was lost (docs/config.md, log)."""
import http.client
import os
import re
import select
import signal
import subprocess
import time

import helpers as H

DROPPED = re.compile(rb'msg="dropped (\d+) log lines" obj=log\n')


def read_until(fd, pattern, timeout):
    """Read the pipe until pattern matches or EOF; returns the bytes."""
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not (pattern and pattern.search(buf)):
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    return buf


def flood(port, n):
    """n requests on one keep-alive connection, each logging three records
    of some 3 KB (start, the 404 warning and end all carry the path)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=H.t(10))
    path = "/api/tunnels/" + "x" * 3000
    for _ in range(n):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.status == 404
    c.close()


def wait_api(port, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=H.t(2))
            c.request("GET", "/api")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("API did not come up")


def test_stdout_nobody_reads_does_not_stop_the_agent(tmp_path):
    web = H.free_port()
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"))
    # No edge: the agent keeps retrying its session, which logs too.
    argv = [H.BURROW, "tcp", "9", "--server-addr", "127.0.0.1:%d" % H.free_port(),
            "--authtoken", "test-token", "--web-addr", "127.0.0.1:%d" % web,
            "--log", "stdout", "--log-level", "debug"]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd=str(tmp_path), env=env,
                         start_new_session=True, preexec_fn=H._die_with_parent)
    fd = p.stdout.fileno()
    try:
        wait_api(web, H.t(15))
        # ~2.7 MB of records against a 64 KiB pipe: it fills and stays full.
        flood(web, 300)
        out = read_until(fd, DROPPED, H.t(20))
        m = DROPPED.search(out)
        assert m, out[-2000:]
        assert int(m.group(1)) > 0
        # The agent still logs after the gap.
        flood(web, 1)
        assert re.search(rb"msg=end .*status=404", read_until(fd, re.compile(rb"msg=end .*\n"),
                                                               H.t(10)))
        # Fill it again and stop the agent while nobody reads.
        flood(web, 300)
        p.send_signal(signal.SIGTERM)
        assert p.wait(H.t(10)) == 0
        out += read_until(fd, None, H.t(10))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def refused_requests(port, n):
    """n public requests for a host no tunnel holds: each is answered 404
    and logs a `refused request` record of some 320 bytes at debug."""
    host = ".".join(["y" * 60] * 3) + ".localhost"
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=H.t(10))
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        r.read()
        assert r.status == 404
        c.close()


def test_edge_stdout_nobody_reads_drains_from_the_loop(tmp_path):
    """burrowd's log queue drains from its loop: once the pipe is read again
    the `dropped` record arrives without waiting for a record to push it."""
    argv = [H.BURROWD, "--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
            "--https-addr", "false", "--state-dir", str(tmp_path), "--log", "stdout",
            "--log-level", "debug", "--tcp-ports", "%d-%d" % H.free_port_range()]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd=str(tmp_path),
                         start_new_session=True, preexec_fn=H._die_with_parent)
    fd = p.stdout.fileno()
    try:
        head = read_until(fd, re.compile(rb'msg="edge ready"'), H.t(15))
        port = int(re.search(rb'msg="listening for http" obj=edge addr=[0-9.]+:(\d+)', head).group(1))
        # 1 MB of records against a 64 KiB pipe and a 256 KiB queue nobody
        # reads: both fill.
        refused_requests(port, 3000)
        out = read_until(fd, DROPPED, H.t(10))
        m = DROPPED.search(out)
        assert m, out[-2000:]
        assert int(m.group(1)) > 0
        p.send_signal(signal.SIGTERM)
        read_until(fd, None, H.t(10))
        assert p.wait(H.t(10)) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
