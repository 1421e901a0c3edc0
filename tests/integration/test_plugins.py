"""How the agent finds and loads plugins (docs/plugin-abi.md): objects built
against ABI 1.0 keep working, BURROW_PLUGIN_PATH adds to the standard
directory, every load is logged, and one object may provide several protos."""

import os

import helpers as H

ABI10_DIR = os.path.join(H.BUILD_DIR, "tests", "abi10")
HTTPTCP_DIR = os.path.join(H.BUILD_DIR, "tests", "httptcp")


def _loaded(agent):
    """{path: protos} from the agent's `loaded plugin` lines."""
    return {rec["path"]: rec["protos"]
            for _, rec in agent.out.find_all(lambda r, line: r.get("msg") == "loaded plugin")}


def test_abi_1_0_binary_loads_and_forwards(start_edge, start_agent, echo, monkeypatch):
    """tcp.so built from the 1.0 release's source against the 1.0 headers
    (tests/abi10) is found first, shadows the bundled tcp with a warning
    naming both files, and carries a tunnel byte-exact."""
    monkeypatch.setenv("BURROW_PLUGIN_PATH", ABI10_DIR)
    edge = start_edge()
    agent = start_agent(echo.port, edge)
    agent.wait_tunnel()
    old = os.path.join(ABI10_DIR, "tcp.so")
    assert _loaded(agent).get(old) == "tcp", _loaded(agent)
    _, rec = agent.wait_log("plugin refused", lvl="warn")
    assert "provides proto 'tcp', already provided by " + old in rec["err"], rec
    assert H.echo_roundtrip(H.parse_tcp_url(agent.url)[1], os.urandom(200_000))


def test_plugin_path_adds_to_the_bundled_plugins(start_edge, start_agent, echo, monkeypatch):
    """Pointing BURROW_PLUGIN_PATH at one extra plugin keeps tcp, tls, http
    and https; http.so is one object providing two protos."""
    monkeypatch.setenv("BURROW_PLUGIN_PATH", HTTPTCP_DIR)
    edge = start_edge()
    agent = start_agent(echo.port, edge)
    agent.wait_tunnel()
    loaded = _loaded(agent)
    assert loaded.get(os.path.join(HTTPTCP_DIR, "httptcp.so")) == "httptcp", loaded
    protos = sorted(p for v in loaded.values() for p in v.split(","))
    assert protos == ["http", "https", "httptcp", "tcp", "tls"], loaded
    assert [p for p in loaded if p.endswith("/http.so")], loaded
    assert H.echo_roundtrip(H.parse_tcp_url(agent.url)[1], b"still tcp")
