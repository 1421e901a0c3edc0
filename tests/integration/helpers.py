"""Helpers for the integration suite: processes, log parsing, local services.

Everything here is Python stdlib only and binds to 127.0.0.1 only.

The harness drives the real binaries:

    burrowd --agent-addr 127.0.0.1:0 --tcp-ports LO-HI --state-dir DIR --log stdout ...
    burrow tcp PORT --server-addr ADDR --root-cas CA --authtoken TOK --log stdout ...

and follows their logfmt output (docs/cli.md is the contract for the
log lines used here).
"""

import hashlib
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

# --------------------------------------------------------------------------
# environment

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.path.abspath(os.environ.get("BURROW_BUILD_DIR") or os.path.join(REPO_ROOT, "build"))
BURROW = os.path.join(BUILD_DIR, "core", "burrow")
BURROWD = os.path.join(BUILD_DIR, "edge", "burrowd")

ASAN = os.environ.get("BURROW_TEST_ASAN", "0") == "1"
QUICK = os.environ.get("BURROW_TEST_QUICK", "0") == "1"

# Sanitized binaries are several times slower: stretch every timeout.
SLOW_FACTOR = float(os.environ.get("BURROW_TEST_TIMEOUT_FACTOR") or (3.0 if ASAN else 1.0))


def t(seconds):
    """A timeout in seconds, stretched for sanitizer builds."""
    return seconds * SLOW_FACTOR


SANITIZER_MARKERS = (
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "ThreadSanitizer",
    "MemorySanitizer",
    "runtime error:",
    "Segmentation fault",
)


# --------------------------------------------------------------------------
# logfmt

_GO_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"', "'": "'",
}


def _unquote_go(s, i):
    """Parse a Go %q-quoted string starting at s[i] == '"'.

    Returns (value, index after the closing quote). Tolerates a missing
    closing quote (returns the rest of the line)."""
    assert s[i] == '"'
    i += 1
    out = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            e = s[i + 1]
            if e in _GO_SIMPLE_ESCAPES:
                out.append(_GO_SIMPLE_ESCAPES[e])
                i += 2
                continue
            # \xHH, \uHHHH, \UHHHHHHHH (hex) and \OOO (octal): (start, length, base)
            num = {"x": (2, 2, 16), "u": (2, 4, 16), "U": (2, 8, 16)}.get(e)
            if num is None and e in "01234567":
                num = (1, 3, 8)
            if num is not None:
                off, width, base = num
                try:
                    out.append(chr(int(s[i + off:i + off + width], base)))
                    i += off + width
                    continue
                except ValueError:
                    pass
            out.append(e)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out), n


def parse_logfmt(line):
    """Parse one logfmt record into a dict (key -> str).

    Values are bare (up to the next space) or double-quoted with Go escapes.
    A bare key without '=' maps to "". Returns {} for lines that hold no
    key=value pair at all (e.g. stray output)."""
    rec = {}
    s = line.rstrip("\r\n")
    i, n = 0, len(s)
    while i < n:
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and s[j] not in "= ":
            j += 1
        key = s[i:j]
        if j < n and s[j] == "=":
            j += 1
            if j < n and s[j] == '"':
                val, j = _unquote_go(s, j)
            else:
                k = j
                while j < n and s[j] != " ":
                    j += 1
                val = s[k:j]
        else:
            val = ""
        if key:
            rec[key] = val
        i = j
    if "msg" not in rec and "lvl" not in rec:
        return {}
    return rec


# --------------------------------------------------------------------------
# processes


class LogStream:
    """Collects the lines of one pipe in a background thread."""

    def __init__(self, pipe, name):
        self.name = name
        self.lines = []       # raw lines (str, without newline)
        self.records = []     # parse_logfmt() of each line, same indexes
        self.closed = False
        self.cond = threading.Condition()
        self._pipe = pipe
        self._thread = threading.Thread(target=self._run, name="log-" + name, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for raw in iter(self._pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                rec = parse_logfmt(line)
                with self.cond:
                    self.lines.append(line)
                    self.records.append(rec)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def join(self, timeout=5):
        self._thread.join(timeout)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def text(self):
        with self.cond:
            return "\n".join(self.lines)

    def find(self, pred, since=0):
        """First (index, record) at or after `since` whose record matches."""
        with self.cond:
            for i in range(since, len(self.records)):
                if pred(self.records[i], self.lines[i]):
                    return i, self.records[i]
        return None

    def find_all(self, pred, since=0):
        with self.cond:
            return [(i, self.records[i]) for i in range(since, len(self.records))
                    if pred(self.records[i], self.lines[i])]

    def wait(self, pred, timeout, since=0, alive=None):
        """Wait for a matching line. Returns (index, record) or None on
        timeout, or when the stream closed (the process exited) without it.
        `alive` is an optional callable; when it returns False the wait
        ends early (after draining what was read)."""
        deadline = time.monotonic() + timeout
        pos = since
        with self.cond:
            while True:
                while pos < len(self.records):
                    if pred(self.records[pos], self.lines[pos]):
                        return pos, self.records[pos]
                    pos += 1
                if self.closed:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.2))


def msg_is(msg, **kv):
    """A predicate for LogStream.find/wait: record msg == msg and each
    key == value (value None: key present; callable: called on the value)."""

    def pred(rec, line):
        if rec.get("msg") != msg:
            return False
        for k, v in kv.items():
            if v is None:
                if k not in rec:
                    return False
            elif callable(v):
                if k not in rec or not v(rec[k]):
                    return False
            elif rec.get(k) != v:
                return False
        return True

    return pred


def _die_with_parent():
    """In the child: get SIGKILL when the test runner dies, so an aborted
    run leaves no burrow/burrowd behind."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Proc:
    """A child process whose stdout and stderr are collected line by line."""

    def __init__(self, argv, name, cwd=None, env=None):
        self.argv = list(argv)
        self.name = name
        self.expected_rc = 0          # what stop()/check() accept
        self.killed = False           # SIGKILLed on purpose: rc not checked
        self.stopped = False
        e = dict(os.environ)
        if env:
            e.update(env)
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env=e, start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self.popen.pid
        self.out = LogStream(self.popen.stdout, name + ".stdout")
        self.err = LogStream(self.popen.stderr, name + ".stderr")

    # -- state

    def alive(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def wait_exit(self, timeout):
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        # The reader threads may not have reached EOF yet: a check of what
        # the process printed just before it exited must see all of it.
        self.out.join(5)
        self.err.join(5)
        return rc

    def rss_kib(self):
        """VmRSS of the process in KiB (None when it is gone)."""
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    # -- logs

    def wait_log(self, pred_or_msg, timeout=10, since=0, **kv):
        """Wait for a stdout log record; raise AssertionError with the log
        tail when it does not come."""
        pred = msg_is(pred_or_msg, **kv) if isinstance(pred_or_msg, str) else pred_or_msg
        r = self.out.wait(pred, t(timeout), since)
        if r is None:
            what = pred_or_msg if isinstance(pred_or_msg, str) else getattr(pred, "__name__", "?")
            raise AssertionError(
                "%s: no log line %r %r within %.1fs (%s)\n%s" % (
                    self.name, what, kv, t(timeout),
                    "exited rc=%r" % self.returncode if not self.alive() else "still running",
                    self.tail()))
        return r

    def find_log(self, msg, since=0, **kv):
        return self.out.find(msg_is(msg, **kv), since)

    def tail(self, n=60):
        out = self.out.lines[-n:]
        err = self.err.lines[-n:]
        return ("---- %s stdout (last %d) ----\n%s\n---- %s stderr (last %d) ----\n%s" % (
            self.name, len(out), "\n".join(out), self.name, len(err), "\n".join(err)))

    def sanitizer_report(self):
        """The first line of a sanitizer/crash report in the output, or None."""
        for stream in (self.err, self.out):
            for line in list(stream.lines):
                for m in SANITIZER_MARKERS:
                    if m in line:
                        return line
        return None

    # -- stopping

    def send_signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL on purpose (the test simulates a crash)."""
        self.killed = True
        self.send_signal(signal.SIGKILL)
        self.popen.wait(10)
        self._drain()

    def stop(self, timeout=5, sig=signal.SIGTERM):
        """SIGTERM, then SIGKILL after `timeout` seconds. Returns
        (returncode, killed_by_us_after_timeout)."""
        forced = False
        if self.alive():
            self.send_signal(sig)
            try:
                self.popen.wait(t(timeout))
            except subprocess.TimeoutExpired:
                forced = True
                self.send_signal(signal.SIGKILL)
                self.popen.wait(10)
        self.stopped = True
        self._drain()
        return self.popen.returncode, forced

    def _drain(self):
        self.out.join(5)
        self.err.join(5)
        for p in (self.popen.stdout, self.popen.stderr):
            try:
                p.close()
            except Exception:
                pass

    def check(self, rc, forced):
        """Problems (list of str) after stop()."""
        problems = []
        rep = self.sanitizer_report()
        if rep:
            problems.append("%s: sanitizer/crash report: %s" % (self.name, rep))
        if forced:
            problems.append("%s: did not exit within %.0fs of SIGTERM (killed)" % (
                self.name, t(5)))
        elif not self.killed and rc != self.expected_rc:
            if rc is not None and rc < 0:
                problems.append("%s: died of signal %d (expected exit status %d)" % (
                    self.name, -rc, self.expected_rc))
            else:
                problems.append("%s: exit status %r (expected %d)" % (
                    self.name, rc, self.expected_rc))
        return problems


class ProcessRegistry:
    """Tracks every process a test starts; stops and checks them at
    teardown."""

    def __init__(self):
        self.procs = []

    def add(self, p):
        self.procs.append(p)
        return p

    def stop_all(self):
        """Stop agents before edges (reverse start order); return problems."""
        problems = []
        order = [p for p in reversed(self.procs) if isinstance(p, Agent)]
        order += [p for p in reversed(self.procs) if not isinstance(p, Agent)]
        for p in order:
            if p.stopped or p.killed and not p.alive():
                # stopped/killed by the test itself: its rc was the test's
                # business, but a sanitizer report is always a failure
                if not p.stopped:
                    p._drain()
                    p.stopped = True
                problems += [x for x in p.check(p.returncode, False) if "sanitizer" in x]
                continue
            if not p.alive():
                # exited by itself before teardown
                p._drain()
                p.stopped = True
                rc = p.returncode
                problems += p.check(rc, False)
                if rc != p.expected_rc and not p.killed:
                    problems.append("%s exited by itself before teardown\n%s" % (p.name, p.tail()))
                continue
            rc, forced = p.stop()
            pr = p.check(rc, forced)
            if pr:
                pr.append(p.tail())
            problems += pr
        return problems


# --------------------------------------------------------------------------
# ports


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A currently free TCP port on 127.0.0.1 (ephemeral range)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_low_port(lo=32000, hi=32700):
    """A free port below the ephemeral range, for listeners that must be
    re-bound later (an ephemeral port may meanwhile be taken as some
    connection's source port)."""
    for _ in range(200):
        p = random.randrange(lo, hi)
        if port_is_free(p):
            return p
    raise RuntimeError("no free port found")


def free_port_range(count=50, lo=20000, hi=32000):
    """A random range [base, base+count-1] below the ephemeral range whose
    ports are all currently free."""
    for _ in range(200):
        base = random.randrange(lo // 100, (hi - count) // 100) * 100 + random.choice((0, 50))
        if all(port_is_free(p) for p in range(base, base + count)):
            return base, base + count - 1
    raise RuntimeError("no free port range found")


def parse_hostport(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def parse_duration(v):
    """Seconds of a Go-style duration ("1s", "1.5s", "500ms", "1m30s")."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", v or "")
    assert parts and "".join(a + b for a, b in parts) == v, "not a duration: %r" % (v,)
    return sum(float(a) * units[b] for a, b in parts)


def parse_tcp_url(url):
    m = re.match(r"^tcp://([^:/]+):(\d+)/?$", url or "")
    assert m, "not a tcp:// url: %r" % (url,)
    return m.group(1), int(m.group(2))


# --------------------------------------------------------------------------
# edge and agent


class Edge(Proc):
    def __init__(self, state_dir, agent_addr="127.0.0.1:0", tcp_ports=None, auth_tokens=None,
                 extra=(), name="burrowd", http_addr="127.0.0.1:0", https_addr="127.0.0.1:0"):
        if tcp_ports is None:
            tcp_ports = free_port_range()
        self.state_dir = state_dir
        self.tcp_ports = tcp_ports
        self.http_port = self.https_port = None
        # Never the fixed default ports 8080/8443: the kernel picks free ones.
        argv = [BURROWD, "--agent-addr", agent_addr, "--tcp-ports", "%d-%d" % tcp_ports,
                "--state-dir", state_dir, "--log", "stdout", "--log-level", "debug",
                "--http-addr", http_addr, "--https-addr", https_addr]
        if auth_tokens is not None:
            argv += ["--auth-tokens", auth_tokens]
        argv += list(extra)
        super().__init__(argv, name, cwd=state_dir)
        self.addr = None
        self.ca = None

    def wait_ready(self, timeout=15):
        _, rec = self.wait_log("listening for agents", timeout, addr=None)
        self.addr = rec["addr"]
        r = self.out.find(lambda rec, line: rec.get("msg") in (
            "created dev certificate authority", "using dev certificate authority"))
        self.wait_log("edge ready", timeout)
        for msg, attr in (("listening for http", "http_port"), ("listening for https",
                                                                 "https_port")):
            lr = self.find_log(msg)
            if lr is not None:
                setattr(self, attr, parse_hostport(lr[1]["addr"])[1])
        if r is None:
            r = self.out.find(lambda rec, line: rec.get("msg") in (
                "created dev certificate authority", "using dev certificate authority"))
        assert r is not None and r[1].get("ca"), \
            "edge did not log where its dev CA is\n" + self.tail()
        self.ca = r[1]["ca"]
        if not os.path.isabs(self.ca):
            self.ca = os.path.join(self.state_dir, self.ca)
        assert os.path.exists(self.ca), "dev CA %s does not exist" % self.ca
        return self

    @property
    def agent_port(self):
        return parse_hostport(self.addr)[1]


class Agent(Proc):
    def __init__(self, local, server_addr, root_cas, authtoken="test-token", proto="tcp",
                 extra=(), name="burrow", cwd=None):
        argv = [BURROW, proto, str(local), "--server-addr", server_addr,
                "--root-cas", root_cas, "--authtoken", authtoken,
                "--log", "stdout", "--log-level", "debug"]
        argv += list(extra)
        # Keep the agent from reading a user's ngrok/burrow configuration and
        # from binding the shared 127.0.0.1:4040 of other test runs when it
        # can avoid it.
        env = {}
        if cwd:
            env["HOME"] = cwd
            env["XDG_CONFIG_HOME"] = os.path.join(cwd, ".config")
            env["XDG_DATA_HOME"] = os.path.join(cwd, ".local", "share")
        super().__init__(argv, name, cwd=cwd, env=env)
        self.url = None

    def wait_tunnel(self, timeout=15, since=0):
        """Wait for `started tunnel`; returns (index, url)."""
        i, rec = self.wait_log("started tunnel", timeout, since=since, url=None)
        self.url = rec["url"]
        return i, rec["url"]

    @property
    def public_port(self):
        return parse_tcp_url(self.url)[1]


# --------------------------------------------------------------------------
# sockets


def connect(port, timeout=10, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=t(timeout))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_until_close(sock, timeout):
    """Read until the peer closes. Returns (how, data, seconds):
    how in {"eof", "reset", "timeout"}."""
    start = time.monotonic()
    deadline = start + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout", bytes(data), time.monotonic() - start
        sock.settimeout(min(left, 1.0))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ssl.SSLWantReadError:
            continue
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return "reset", bytes(data), time.monotonic() - start
        except ssl.SSLError:
            # unclean TLS shutdown / alert: the edge dropped us
            return "reset", bytes(data), time.monotonic() - start
        except OSError:
            return "reset", bytes(data), time.monotonic() - start
        if not chunk:
            return "eof", bytes(data), time.monotonic() - start
        data += chunk


def echo_roundtrip(port, payload=None, timeout=10):
    """Connect to `port`, send payload, expect it back; returns the bytes."""
    if payload is None:
        payload = os.urandom(4096)
    s = connect(port, timeout)
    try:
        s.sendall(payload)
        got = recv_exact(s, len(payload))
    finally:
        s.close()
    return got == payload


def pattern_block(seed, size):
    """Deterministic pseudo-random bytes (fast, for large payloads)."""
    rnd = random.Random(seed)
    return rnd.randbytes(size)


# --------------------------------------------------------------------------
# local services


class _Server:
    """A threaded TCP server on 127.0.0.1 calling handle(conn) per connection."""

    def __init__(self, port=0, backlog=1024):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.errors = []
        self.lock = threading.Lock()
        self.conns = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="srv-%d" % self.port)
        self._thread.start()

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._stop:
                conn.close()
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._wrap, args=(conn,), daemon=True).start()

    def _wrap(self, conn):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.handle(conn)
        except Exception as e:  # recorded, tests may look
            with self.lock:
                self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass


class EchoServer(_Server):
    """Echoes everything; on EOF it half-closes its side too and records
    what it received (counts) in `finished`."""

    def __init__(self, port=0):
        self.finished = []   # (bytes_received,) per connection that saw EOF
        super().__init__(port)

    def handle(self, conn):
        conn.settimeout(120)
        n = echo_until_eof(conn)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            self.finished.append(n)


def echo_until_eof(sock):
    """Send back everything `sock` receives until EOF; returns the byte count."""
    n = 0
    while True:
        data = sock.recv(1 << 18)
        if not data:
            return n
        n += len(data)
        sock.sendall(data)


class BulkServer(_Server):
    """For bidirectional bulk transfers.

    The client first sends a 16-byte header: u64 BE bytes it will send (N),
    u64 BE bytes it wants (M). The service then concurrently reads exactly N
    bytes (hashing them) and sends M pseudo-random bytes (hashing them).
    Afterwards it sends 64 bytes: sha256(sent) + sha256(received), and
    records (N, M, sha_recv, sha_sent) in `results`. No half-close needed.
    """

    def __init__(self, port=0, chunk=1 << 18):
        self.results = []
        self.chunk = chunk
        self.sent_bytes = 0           # progress of the current sender(s)
        super().__init__(port)

    def handle(self, conn):
        conn.settimeout(180)
        hdr = recv_exact(conn, 16)
        n, m = struct.unpack(">QQ", hdr)
        recv_hash = hashlib.sha256()
        result = {}

        def reader():
            left = n
            try:
                while left:
                    d = conn.recv(min(left, 1 << 20))
                    if not d:
                        break
                    recv_hash.update(d)
                    left -= len(d)
            except OSError as e:
                result["rerr"] = repr(e)
            result["recv_left"] = left

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        sent_hash = hashlib.sha256()
        block = pattern_block(m ^ 0x5EED, self.chunk)
        i = 0
        left = m
        while left:
            piece = block if left >= len(block) else block[:left]
            # vary every chunk so that reordering/duplication is detectable
            piece = struct.pack(">Q", i) + piece[8:] if len(piece) >= 8 else piece
            conn.sendall(piece)
            sent_hash.update(piece)
            left -= len(piece)
            i += 1
            with self.lock:
                self.sent_bytes += len(piece)
        rt.join()
        sh, rh = sent_hash.digest(), recv_hash.digest()
        with self.lock:
            self.results.append({"n": n, "m": m, "sent_sha": sh, "recv_sha": rh,
                                 "recv_left": result.get("recv_left"),
                                 "rerr": result.get("rerr")})
        conn.sendall(sh + rh)


class PushServer(_Server):
    """Pushes `total` pseudo-random bytes to every connection, then closes.
    Records the sha256 of what it sent per connection in `sent_sha` and the
    running byte count in `sent_bytes`."""

    def __init__(self, total, port=0, chunk=1 << 18):
        self.total = total
        self.chunk = chunk
        self.sent_bytes = 0
        self.sent_sha = []
        self.done = threading.Event()
        super().__init__(port)

    def handle(self, conn):
        conn.settimeout(300)
        h = hashlib.sha256()
        block = pattern_block(0xB10C, self.chunk)
        left, i = self.total, 0
        while left:
            piece = block if left >= len(block) else block[:left]
            piece = struct.pack(">Q", i) + piece[8:]
            conn.sendall(piece)
            h.update(piece)
            left -= len(piece)
            i += 1
            with self.lock:
                self.sent_bytes += len(piece)
        with self.lock:
            self.sent_sha.append(h.digest())
        self.done.set()
        conn.shutdown(socket.SHUT_WR)
        # wait for the peer to close so the tail is not lost to an RST
        try:
            conn.settimeout(30)
            while conn.recv(65536):
                pass
        except OSError:
            pass


class RecordingServer(_Server):
    """Records what each connection sent until EOF (for close/half-close
    tests), and optionally replies `reply` after EOF."""

    def __init__(self, port=0, reply=None):
        self.reply = reply
        self.received = []
        self.eof_times = []
        self.event = threading.Event()
        super().__init__(port)

    def handle(self, conn):
        conn.settimeout(60)
        buf = bytearray()
        while True:
            try:
                d = conn.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            buf += d
        with self.lock:
            self.received.append(bytes(buf))
            self.eof_times.append(time.monotonic())
        if self.reply is not None:
            try:
                conn.sendall(self.reply)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.event.set()


# --------------------------------------------------------------------------
# a TCP proxy whose connections can be cut (for resume tests)


class HttpsServer:
    """A local HTTPS service: http.server behind TLS with certfile/keyfile,
    answering every GET with 200 and `body` and recording the paths it saw
    in `seen`. close() stops it (the `servers` fixture calls it)."""

    def __init__(self, certfile, keyfile, body):
        import http.server
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to target; cut() drops every live
    connection (with RST) while the listener stays up."""

    def __init__(self, target_port, port=0):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []
        self.accepted = 0
        self.refuse = False
        self.frozen = set()
        self.frozen_pairs = []
        self.cut_socks = set()
        self._stop = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.refuse or self._stop:
                _rst_close(c)
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst_close(c)
                continue
            with self.lock:
                self.accepted += 1
                self.pairs.append((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        a.settimeout(None)
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                # a frozen pair black-holes traffic (a dead network path)
                while self._is_frozen(a) and not self._stop:
                    time.sleep(0.05)
                    d = b""
                if d:
                    b.sendall(d)
        except OSError:
            pass
        with self.lock:
            was_cut = a in self.cut_socks or b in self.cut_socks
        if not was_cut:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _is_frozen(self, sock):
        with self.lock:
            return sock in self.frozen

    def freeze(self):
        """Stop forwarding on every live connection without closing it: the
        peers only notice through their own timeouts. New connections are
        forwarded normally."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
            for c, u in pairs:
                self.frozen.add(c)
                self.frozen.add(u)
            self.frozen_pairs += pairs
        return len(pairs)

    def cut(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
            for c, u in pairs:
                self.cut_socks.add(c)
                self.cut_socks.add(u)
        for c, u in pairs:
            _rst_close(c)
            _rst_close(u)
        return len(pairs)

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.cut()
        with self.lock:
            frozen, self.frozen_pairs = self.frozen_pairs, []
        for c, u in frozen:
            _rst_close(c)
            _rst_close(u)


def _rst_close(s):
    """Abort a connection with RST. SHUT_RD first wakes a thread blocked in
    recv() on it (closing the fd alone would not: the kernel releases the
    socket, and sends the RST, only when that recv returns)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# --------------------------------------------------------------------------
# raw protocol (hostile clients)

YAMUX_DATA, YAMUX_WINDOW, YAMUX_PING, YAMUX_GOAWAY = 0, 1, 2, 3
F_SYN, F_ACK, F_FIN, F_RST = 1, 2, 4, 8
YAMUX_INITIAL_WINDOW = 256 * 1024


def yamux_hdr(typ, flags, stream_id, length, version=0):
    return struct.pack(">BBHII", version, typ, flags, stream_id, length)


def yamux_data(stream_id, payload, flags=0):
    return yamux_hdr(YAMUX_DATA, flags, stream_id, len(payload)) + payload


def yamux_syn(stream_id, delta=0):
    """Open a stream the way hashicorp/yamux does: a window update with SYN."""
    return yamux_hdr(YAMUX_WINDOW, F_SYN, stream_id, delta)


def ctl_frame(obj_bytes):
    return struct.pack(">I", len(obj_bytes)) + obj_bytes


def tls_connect(port, ca, timeout=10, server_name="localhost"):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", port), timeout=t(timeout))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=server_name)


class YamuxReader:
    """Parses yamux frames arriving on a (TLS) socket, incrementally."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.closed = None   # None, "eof" or "reset"

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(1 << 20)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            self.closed = "reset"
            return False
        if not d:
            self.closed = "eof"
            return False
        self.buf += d
        return True

    def frame(self, timeout):
        """Next frame (ver, typ, flags, sid, length, payload) or None."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 12:
                ver, typ, flags, sid, length = struct.unpack(">BBHII", self.buf[:12])
                need = 12 + (length if typ == YAMUX_DATA else 0)
                if len(self.buf) >= need:
                    payload = bytes(self.buf[12:need])
                    del self.buf[:need]
                    return ver, typ, flags, sid, length, payload
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._fill(min(left, 0.5))


class RawSession:
    """A hand-driven agent session: TLS + yamux client + control frames.

    Answers pings, tracks the send window of the control stream (stream 1)
    and collects control messages."""

    def __init__(self, port, ca, timeout=10):
        self.sock = tls_connect(port, ca, timeout)
        self.reader = YamuxReader(self.sock)
        self.send_window = {}      # sid -> bytes we may still send
        self.ctl_buf = bytearray()
        self.msgs = []             # decoded control messages (dicts)
        self.frames = []           # every frame seen (for debugging)
        self.pongs = set()
        self.opened = []           # (sid, flags) of streams the edge opened
        self.stream_data = {}      # sid -> bytes received on streams other than 1
        self.fins = set()
        self.rsts = set()
        self.goaway = None         # Go Away code received

    def send(self, data):
        self.sock.sendall(data)

    def open_control(self):
        self.send(yamux_syn(1))
        self.send_window[1] = YAMUX_INITIAL_WINDOW

    def send_ctl(self, obj_bytes, sid=1):
        data = ctl_frame(obj_bytes)
        self.send(yamux_data(sid, data))
        self.send_window[sid] = self.send_window.get(sid, YAMUX_INITIAL_WINDOW) - len(data)

    def send_msg(self, obj, sid=1):
        import json
        self.send_ctl(json.dumps(obj).encode(), sid)

    def pump(self, timeout):
        """Process frames for up to `timeout` s (returns early on close).
        Returns False when the connection closed."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            f = self.reader.frame(left)
            if f is None:
                if self.reader.closed:
                    return False
                continue
            self._handle(f)

    def _handle(self, f):
        import json
        ver, typ, flags, sid, length, payload = f
        self.frames.append(f[:5])
        if typ == YAMUX_PING:
            if flags & F_SYN:
                self.send(yamux_hdr(YAMUX_PING, F_ACK, 0, length))
            elif flags & F_ACK:
                self.pongs.add(length)
            return
        if typ == YAMUX_WINDOW:
            self.send_window[sid] = self.send_window.get(sid, YAMUX_INITIAL_WINDOW) + length
            if flags & F_SYN:
                self.opened.append((sid, flags))
            if flags & F_RST:
                self.rsts.add(sid)
            if flags & F_FIN:
                self.fins.add(sid)
            return
        if typ == YAMUX_GOAWAY:
            self.goaway = length
            return
        if typ == YAMUX_DATA:
            if flags & F_SYN:
                self.opened.append((sid, flags))
            if sid != 1:
                self.stream_data.setdefault(sid, bytearray()).extend(payload)
                if flags & F_FIN:
                    self.fins.add(sid)
                if flags & F_RST:
                    self.rsts.add(sid)
                if payload:
                    self.send(yamux_hdr(YAMUX_WINDOW, 0, sid, len(payload)))
                return
            if sid == 1 and payload:
                self.ctl_buf += payload
                # keep the edge's window open so it is never the one stalling
                self.send(yamux_hdr(YAMUX_WINDOW, 0, 1, len(payload)))
                while len(self.ctl_buf) >= 4:
                    n = struct.unpack(">I", self.ctl_buf[:4])[0]
                    if len(self.ctl_buf) < 4 + n:
                        break
                    body = bytes(self.ctl_buf[4:4 + n])
                    del self.ctl_buf[:4 + n]
                    try:
                        self.msgs.append(json.loads(body))
                    except ValueError:
                        self.msgs.append({"type": "<undecodable>", "raw": body[:200]})

    def wait_msg(self, typ, timeout=10):
        deadline = time.monotonic() + t(timeout)
        while True:
            for m in self.msgs:
                if m.get("type") == typ:
                    self.msgs.remove(m)
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.pump(min(left, 0.2)) and not any(m.get("type") == typ for m in self.msgs):
                return None

    def wait_for(self, cond, timeout=10):
        """Pump until cond() is true; returns cond()."""
        deadline = time.monotonic() + t(timeout)
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(min(left, 0.2)):
                break
        return cond()

    def ping(self, opaque, timeout=5):
        """Send a yamux ping; True when the ACK comes back."""
        self.send(yamux_hdr(YAMUX_PING, F_SYN, 0, opaque))
        deadline = time.monotonic() + t(timeout)
        while opaque not in self.pongs:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not self.pump(min(left, 0.2)):
                return opaque in self.pongs
        return True

    def auth(self, token="test-token", client_id=""):
        self.open_control()
        self.send_msg({"type": "Auth", "version": "0.1.0", "token": token,
                       "client_id": client_id})
        return self.wait_msg("AuthResp")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_yamux_frames(data):
    """Split raw bytes into yamux frames [(ver, typ, flags, sid, length)]
    (as far as they parse)."""
    out = []
    i = 0
    while len(data) - i >= 12:
        ver, typ, flags, sid, length = struct.unpack(">BBHII", data[i:i + 12])
        out.append((ver, typ, flags, sid, length))
        i += 12 + (length if typ == YAMUX_DATA else 0)
    return out
