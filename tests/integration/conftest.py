"""pytest configuration and fixtures of the integration suite.

Run:  /usr/bin/python3 -m pytest -q tests/integration
Env:  BURROW_BUILD_DIR (default <repo>/build), BURROW_TEST_ASAN=1 (sanitizer
      build: timeouts stretched), BURROW_TEST_QUICK=1 (shorter payloads).

Every process a test starts is registered; at teardown it gets SIGTERM
(SIGKILL after 5 s) and the test fails (error at teardown) if a process did
not exit with its expected status, had to be killed, or printed a
sanitizer/crash report.
"""

import os
import signal
import sys
import types

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import helpers as H  # noqa: E402

DEFAULT_DEADLINE = 60  # seconds per test (stretched for sanitizer builds)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes long; deselected with -m 'not slow'")
    config.addinivalue_line(
        "markers", "deadline(seconds): per-test wall-clock limit (default %d s)" % DEFAULT_DEADLINE)


class DeadlineExceeded(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """No test may hang: SIGALRM raises in the main thread after the
    deadline (blocking socket calls and lock waits are interrupted). Only
    the test body is guarded; fixture setup waits have their own timeouts
    and teardown must always run to completion (it stops the processes)."""
    m = item.get_closest_marker("deadline")
    seconds = m.args[0] if m else DEFAULT_DEADLINE
    seconds = int(H.t(seconds)) + 1

    def on_alarm(signum, frame):
        raise DeadlineExceeded("test exceeded its deadline of %d s" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def procs():
    reg = H.ProcessRegistry()
    yield reg
    problems = reg.stop_all()
    if problems:
        pytest.fail("process check failed at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def servers():
    """Registry of local services / proxies closed at teardown."""
    lst = []
    yield lst
    for s in lst:
        try:
            s.close()
        except Exception:
            pass


@pytest.fixture
def start_edge(procs, tmp_path):
    """start_edge(**kw) -> Edge, ready (agent addr and CA known)."""
    count = [0]

    def start(state_dir=None, wait=True, **kw):
        count[0] += 1
        if state_dir is None:
            state_dir = str(tmp_path / ("edge%d" % count[0]))
        os.makedirs(state_dir, exist_ok=True)
        e = procs.add(H.Edge(state_dir, name="burrowd#%d" % count[0], **kw))
        if wait:
            e.wait_ready()
        return e

    return start


@pytest.fixture
def start_agent(procs, tmp_path):
    """start_agent(local, edge_or_addr, ca=None, **kw) -> Agent (not waited)."""
    count = [0]

    def start(local, server, ca=None, **kw):
        count[0] += 1
        if isinstance(server, H.Edge):
            addr, ca = server.addr, ca or server.ca
        else:
            addr = server
        home = tmp_path / ("agent%d" % count[0])
        home.mkdir(exist_ok=True)
        return procs.add(H.Agent(local, addr, ca, name="burrow#%d" % count[0],
                                 cwd=str(home), **kw))

    return start


@pytest.fixture
def echo(servers):
    s = H.EchoServer()
    servers.append(s)
    return s


@pytest.fixture
def tunnel(start_edge, start_agent, echo):
    """An edge, an echo service and an agent with a tcp tunnel to it."""
    edge = start_edge()
    agent = start_agent(echo.port, edge)
    agent.wait_tunnel()
    host, port = H.parse_tcp_url(agent.url)
    return types.SimpleNamespace(edge=edge, agent=agent, echo=echo, url=agent.url, port=port)
