"""Reservations across an edge restart (docs/edge.md "Reservations across
restarts"): a crashed burrowd keeps its agents' ports and names for them."""
import hashlib
import http.client
import json
import os
import signal
import time

import pytest

import helpers as H
import edge_helpers as HH


def _api(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=H.t(10))
    c.request(method, path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def _agent(procs, tmp_path, edge_addr, ca, tunnels, name, token):
    return procs.add(HH.ConfigAgent(str(tmp_path / name), edge_addr, ca, tunnels,
                                    name="burrow-" + name, authtoken=token))


def _thief_refused(b, tcp_port, srv):
    st, body = _api(b.web_port, "POST", "/api/tunnels",
                    {"name": "port", "proto": "tcp", "addr": "1",
                     "remote_addr": "localhost:%d" % tcp_port})
    assert st == 502 and "is already bound" in body["details"]["err"], body
    st, body = _api(b.web_port, "POST", "/api/tunnels",
                    {"name": "name", "proto": "httpraw", "addr": str(srv.port),
                     "subdomain": "kept"})
    assert st == 502, body
    assert body["details"]["err"] == 'subdomain "kept" is already in use', body


@pytest.mark.deadline(120)
def test_addresses_survive_edge_sigkill(start_edge, procs, echo, servers, tmp_path):
    srv = HH.EchoHeadServer()
    servers.append(srv)
    state = str(tmp_path / "state")
    extra = ["--domain", HH.DOMAIN, "--grace", "60s"]
    edge = start_edge(state_dir=state, agent_addr="127.0.0.1:%d" % H.free_low_port(), extra=extra)
    a = _agent(procs, tmp_path, edge.addr, edge.ca, {
        "t": {"proto": "tcp", "addr": echo.port},
        "w": {"proto": "httpraw", "addr": srv.port, "subdomain": "kept"}}, "a", "owner-token")
    urls = a.urls(["t", "w"])
    _, port = H.parse_tcp_url(urls["t"])

    # the file names the live addresses under a hash of the token, never the token
    with open(os.path.join(state, "reservations.json")) as f:
        text = f.read()
    assert "owner-token" not in text
    assert hashlib.sha256(b"owner-token").hexdigest() in text
    held = json.loads(text)["reservations"]
    assert {"port": port} in [{"port": r["port"]} for r in held if "port" in r], held
    assert any(r.get("name", {}).get("host") == "kept." + HH.DOMAIN for r in held), held

    # the owner cannot come back before the thief has tried
    os.kill(a.pid, signal.SIGSTOP)
    try:
        mark = a.out.mark()
        edge.kill()
        edge2 = start_edge(state_dir=state, agent_addr=edge.addr, tcp_ports=edge.tcp_ports,
                           extra=extra)
        edge2.wait_log("loaded reservations", count="2")
        b = _agent(procs, tmp_path, edge2.addr, edge2.ca, {}, "b", "thief-token")
        b.wait_log("client session established")
        _thief_refused(b, port, srv)
    finally:
        os.kill(a.pid, signal.SIGCONT)

    after = a.urls(["t", "w"], timeout=40, since=mark)
    assert H.parse_tcp_url(after["t"])[1] == port, after
    assert HH.url_host(after["w"]) == "kept." + HH.DOMAIN, after
    assert H.echo_roundtrip(port)
    c = HH.Client(edge2.http_port)
    c.request("kept." + HH.DOMAIN)
    assert c.response()[0] == 200
    _thief_refused(b, port, srv)


def test_corrupt_reservations_file_is_ignored(start_edge, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "reservations.json").write_text('{"version": 1, "reservations": [')
    edge = start_edge(state_dir=str(state))
    edge.wait_log("ignoring unreadable reservations file")
    assert edge.alive()
    (state / "reservations.json").write_text(
        '{"version": 1, "reservations": [{"client_id": "x"}, 7]}')
    edge2 = start_edge(state_dir=str(state))
    edge2.wait_log("ignoring malformed reservations", count="2")
    assert edge2.alive()


def _until_201(port, body, deadline_s):
    end = time.monotonic() + H.t(deadline_s)
    while True:
        st, res = _api(port, "POST", "/api/tunnels", body)
        if st == 201 or time.monotonic() > end:
            return st, res
        time.sleep(0.1)


def _tunnels(port):
    st, body = _api(port, "GET", "/api/tunnels")
    assert st == 200, body
    return {t["name"]: t for t in body["tunnels"]}


@pytest.mark.deadline(120)
def test_taken_address_fails_tunnel_then_retries(start_edge, procs, echo, servers, tmp_path):
    """docs/api.md "Failed tunnels": a re-bind refused because another
    client took the address shows no stale URL but the reason, is logged at
    warn, and is retried until the address is free again."""
    srv = HH.EchoHeadServer()
    servers.append(srv)
    edge = start_edge(extra=["--domain", HH.DOMAIN, "--grace", "1s"])
    proxy = H.CuttableProxy(edge.agent_port)
    servers.append(proxy)
    a = _agent(procs, tmp_path, "127.0.0.1:%d" % proxy.port, edge.ca, {
        "t": {"proto": "tcp", "addr": echo.port},
        "w": {"proto": "httpraw", "addr": srv.port, "subdomain": "lost"}}, "a", "owner-token")
    urls = a.urls(["t", "w"])
    _, port = H.parse_tcp_url(urls["t"])
    b = _agent(procs, tmp_path, edge.addr, edge.ca, {}, "b", "thief-token")
    b.wait_log("client session established")

    os.kill(a.pid, signal.SIGSTOP)
    try:
        mark = a.out.mark()
        assert proxy.cut() >= 1
        # once the grace period is over, the thief gets both addresses
        st, res = _until_201(b.web_port, {"name": "port", "proto": "tcp", "addr": str(echo.port),
                                          "remote_addr": "localhost:%d" % port}, 15)
        assert st == 201, res
        st, res = _until_201(b.web_port, {"name": "name", "proto": "httpraw",
                                          "addr": str(srv.port), "subdomain": "lost"}, 15)
        assert st == 201, res
    finally:
        os.kill(a.pid, signal.SIGCONT)

    for name in ("t", "w"):
        _, rec = a.wait_log("tunnel address refused, retrying", timeout=40, since=mark,
                            name=name, err=None)
        assert rec["lvl"] == "warn", rec
    tunnels = _tunnels(a.web_port)
    assert tunnels["t"]["public_url"] == "", tunnels["t"]
    assert "is already bound" in tunnels["t"]["error"], tunnels["t"]
    assert tunnels["w"]["public_url"] == "", tunnels["w"]
    assert "is already in use" in tunnels["w"]["error"], tunnels["w"]
    # still retrying on the same session
    a.wait_log("tunnel address refused, retrying", timeout=10,
               since=a.out.mark(), name="t")

    # the thief lets go: the owner's retries get both back
    for name in ("port", "name"):
        st, _ = _api(b.web_port, "DELETE", "/api/tunnels/" + name)
        assert st == 204
    after = a.urls(["t", "w"], timeout=40, since=mark)
    assert after["t"] == urls["t"], after
    assert HH.url_host(after["w"]) == "lost." + HH.DOMAIN, after
    tunnels = _tunnels(a.web_port)
    for name in ("t", "w"):
        assert tunnels[name]["public_url"] == after[name], tunnels[name]
        assert "error" not in tunnels[name], tunnels[name]
    assert H.echo_roundtrip(port)
