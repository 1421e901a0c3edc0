"""Setting up an http tunnel for the integration suite, in one place: the
real http plugin behind the real edge's public HTTP listener (a single
plain-http tunnel, bind_tls false, unless the test asks otherwise).

The test-only "httptcp" build of the plugin (same code, edge type tcp) stays
on the plugin path for tests that want HTTP over a raw tcp edge.
"""
import json
import os

import helpers as H

HTTPTCP_DIR = os.path.join(H.BUILD_DIR, "tests", "httptcp")
PLUGIN_PATH = os.path.join(H.BUILD_DIR, "plugins") + ":" + HTTPTCP_DIR


def write_config(path, edge, tunnels, web_port):
    """A config file (JSON is YAML) with `tunnels` = {name: definition}."""
    cfg = {"version": "2", "server_addr": edge.addr, "root_cas": edge.ca,
           "authtoken": "test-token", "web_addr": "127.0.0.1:%d" % web_port,
           "tunnels": tunnels}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path


def http_tunnel_def(local, **options):
    """The definition of one http tunnel to `local` (a port or an addr)."""
    d = {"proto": "http", "addr": str(local), "bind_tls": "false"}
    d.update(options)
    return d


def start_agent(procs, tmp_path, edge, tunnels, name="burrow-http"):
    home = tmp_path / ("home-" + name)
    home.mkdir(exist_ok=True)
    cfg = write_config(str(home / "burrow.yml"), edge, tunnels, H.free_port())
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "BURROW_PLUGIN_PATH": PLUGIN_PATH}
    agent = procs.add(H.Proc([H.BURROW, "start", "--all", "--config", cfg, "--log", "stdout",
                              "--log-level", "debug"], name, cwd=str(home), env=env))
    return agent, cfg


def start_http_tunnel(procs, tmp_path, edge, local, **options):
    """Start an agent with one http tunnel to `local`; returns
    (connect_host, connect_port, host_header) for clients: where to connect
    and the Host they should send."""
    agent, _ = start_agent(procs, tmp_path, edge, {"web": http_tunnel_def(local, **options)})
    _, rec = agent.wait_log("started tunnel", timeout=15, url=None)
    scheme, hostport = rec["url"].split("://", 1)
    assert scheme == "http", rec["url"]
    host, port = H.parse_hostport(hostport)
    return "127.0.0.1", port, "%s:%d" % (host, port)
