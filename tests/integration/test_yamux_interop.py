"""Interop of burrow's C yamux engine with the reference implementation.

The reference is hashicorp/yamux as Debian ships it (golang-go +
golang-github-hashicorp-yamux-dev); tests/interop/yamux_go is built here with
no network. Our side is tests/interop/yamux_peer from the build directory.
Both programs speak the same two modes (see their header comments): a server
that echoes every stream and half-closes after the peer's FIN, and a client
that opens N concurrent streams, sends pseudo-random data, half-closes, and
checks the echo byte for byte (C) or by SHA-256 (Go) and the EOF.

Run:  /usr/bin/python3 -m pytest -q tests/integration/test_yamux_interop.py
Env:  BURROW_BUILD_DIR (default <repo>/build), BURROW_TEST_ASAN=1 (timeouts x3)
"""

import os
import re
import shutil
import subprocess
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("BURROW_BUILD_DIR") or os.path.join(REPO, "build"))
GOPATH = "/usr/share/gocode"
SLOW = 3.0 if os.environ.get("BURROW_TEST_ASAN", "0") == "1" else 1.0

MiB = 1 << 20
INITIAL_WINDOW = 256 * 1024
# 64 concurrent streams: empty, small, one frame, past the initial window,
# and 16 MiB ones (far past the 256 KiB window, so flow control has to work).
SIZES = [0, 1000, 65536, 300000, 16 * MiB]
NSTREAMS = 64

BAD_OUTPUT = re.compile(r"\[ERR\]|ERROR: AddressSanitizer|runtime error:|LeakSanitizer|panic:")

pytestmark = pytest.mark.deadline(int(600 * SLOW))


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory):
    go = shutil.which("go")
    if not go:
        pytest.skip("go is not installed")
    if not os.path.isdir(os.path.join(GOPATH, "src/github.com/hashicorp/yamux")):
        pytest.skip("golang-github-hashicorp-yamux-dev is not installed")
    tmp = tmp_path_factory.mktemp("yamux_go")
    out = str(tmp / "yamux_go")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOCACHE=str(tmp / "cache"),
               GOFLAGS="", CGO_ENABLED="0")
    r = subprocess.run([go, "build", "-o", out, "./tests/interop/yamux_go"], cwd=REPO, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert r.returncode == 0, "go build failed:\n" + r.stdout
    return out


@pytest.fixture(scope="module")
def c_peer():
    path = os.path.join(BUILD, "tests", "interop", "yamux_peer")
    if not os.access(path, os.X_OK):
        pytest.fail("%s is missing: build it (ninja -C %s tests/interop/yamux_peer)" % (path, BUILD))
    return path


class Proc:
    """A child process whose stdout/stderr go to files (no pipe can fill)."""

    def __init__(self, argv, tmp, name, env=None):
        self.name = name
        self.out_path = tmp / (name + ".out")
        self.err_path = tmp / (name + ".err")
        self.out = open(self.out_path, "w+")
        self.err = open(self.err_path, "w+")
        self.p = subprocess.Popen(argv, stdout=self.out, stderr=self.err,
                                  env=dict(os.environ, **(env or {})))

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"^PORT (\d+)$", self.stdout(), re.M)
            if m:
                return int(m.group(1))
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("%s printed no port:\n%s" % (self.name, self.report()))

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("%s did not finish in %d s:\n%s"
                                 % (self.name, timeout, self.report()))

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.out.close()
        self.err.close()

    def report(self):
        return "--- %s stdout\n%s--- %s stderr\n%s" % (
            self.name, self.stdout(), self.name, self.stderr()[-4000:])


def run_pair(tmp, server_argv, client_argv, server_env=None, client_env=None):
    """Run a server and a client against it; both must succeed cleanly.
    Returns (server stdout, client stdout)."""
    server = Proc(server_argv, tmp, "server", server_env)
    client = None
    try:
        port = server.wait_port(10 * SLOW)
        client = Proc(client_argv("127.0.0.1:%d" % port), tmp, "client", client_env)
        crc = client.wait(240 * SLOW)
        # The server ends when the client's connection goes away.
        src = server.wait(30 * SLOW)
        both = server.report() + client.report()
        assert crc == 0, "client failed:\n" + both
        assert src == 0, "server failed:\n" + both
        for p in (server, client):
            bad = BAD_OUTPUT.search(p.stderr())
            assert not bad, "%s reported %r:\n%s" % (p.name, bad.group(0), both)
        return server.stdout(), client.stdout()
    finally:
        server.stop()
        if client:
            client.stop()


def summary(text):
    """Parse our peer's summary line: OK key=value..."""
    m = re.search(r"^(OK|FAIL) (.*)$", text, re.M)
    assert m, "no summary line in:\n" + text
    return m.group(1), dict(kv.split("=", 1) for kv in m.group(2).split())


def sizes_args():
    return [str(s) for s in SIZES]


def test_c_client_go_server(tmp_path, go_peer, c_peer):
    sout, cout = run_pair(
        tmp_path, [go_peer, "server"],
        lambda addr: [c_peer, "client", addr, str(NSTREAMS)] + sizes_args())
    status, kv = summary(cout)
    assert status == "OK"
    assert int(kv["clean"]) == NSTREAMS
    assert "SERVED %d" % NSTREAMS in sout


def test_go_client_c_server(tmp_path, go_peer, c_peer):
    sout, cout = run_pair(
        tmp_path, [c_peer, "server"],
        lambda addr: [go_peer, "client", addr, str(NSTREAMS)] + sizes_args())
    assert "OK %d streams" % NSTREAMS in cout
    status, kv = summary(sout)
    assert status == "OK"
    assert int(kv["streams"]) == NSTREAMS
    assert int(kv["clean"]) == NSTREAMS


# With the engine's clock slowed down every window looks consumed at once, so
# auto-tuning grows our receive windows to the 16 MiB ceiling: the reference
# must accept those window updates and use the extra credit (it would stall
# or fail with "receive window exceeded" otherwise).
SLOW_CLOCK = {"YAMUX_PEER_CLOCK_DIV": "1000000"}


def test_grown_windows_accepted_by_go_server(tmp_path, go_peer, c_peer):
    _, cout = run_pair(
        tmp_path, [go_peer, "server"],
        lambda addr: [c_peer, "client", addr, "4", str(32 * MiB)], client_env=SLOW_CLOCK)
    status, kv = summary(cout)
    assert status == "OK"
    assert int(kv["maxwin"]) == 16 * MiB


def test_grown_windows_accepted_by_go_client(tmp_path, go_peer, c_peer):
    sout, _ = run_pair(
        tmp_path, [c_peer, "server"],
        lambda addr: [go_peer, "client", addr, "4", str(32 * MiB)], server_env=SLOW_CLOCK)
    status, kv = summary(sout)
    assert status == "OK"
    assert int(kv["maxwin"]) == 16 * MiB


def test_many_small_streams(tmp_path, go_peer, c_peer):
    # More streams than fit in one window's worth of frames at once, both ways.
    _, cout = run_pair(
        tmp_path, [go_peer, "server"],
        lambda addr: [c_peer, "client", addr, "200", "1", "4096", "70000"])
    assert summary(cout)[1]["clean"] == "200"
    sout, _ = run_pair(
        tmp_path, [c_peer, "server"],
        lambda addr: [go_peer, "client", addr, "200", "1", "4096", "70000"])
    assert summary(sout)[1]["clean"] == "200"
