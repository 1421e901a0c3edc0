"""The agent API on web_addr, as ngrok clients use it (ngrok-compat.md §2):
real burrowd and burrow, Python's http.client as the client."""
import http.client
import json
import re
import socket

import pytest

import helpers as H


def web_addr(agent):
    _, rec = agent.wait_log("starting web service", timeout=10, addr=None)
    host, port = rec["addr"].rsplit(":", 1)
    return host, int(port)


def call(addr, method, path, body=None, headers=None, raw=False):
    """One request; returns (status, headers dict, body bytes or parsed JSON)."""
    c = http.client.HTTPConnection(addr[0], addr[1], timeout=H.t(10))
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=hdrs)
    r = c.getresponse()
    payload = r.read()
    c.close()
    if raw or not payload:
        return r.status, dict(r.getheaders()), payload
    assert payload.endswith(b"\n"), payload          # Go's json.Encoder
    assert b"\n" not in payload[:-1], payload        # compact
    return r.status, dict(r.getheaders()), json.loads(payload)


@pytest.fixture
def api(tunnel):
    return web_addr(tunnel.agent), tunnel


def test_readiness_lines_in_order_and_nothing_on_stderr(api):
    addr, tun = api
    msgs = [H.parse_logfmt(line).get("msg") for line in list(tun.agent.out.lines)]
    order = ["starting web service", "client session established", "tunnel session started",
             "started tunnel"]
    idx = [msgs.index(m) for m in order]
    assert idx == sorted(idx), msgs
    assert re.match(r"^\d+\.\d+\.\d+\.\d+:\d+$", "%s:%d" % addr)
    assert list(tun.agent.err.lines) == []


def test_root_and_list(api):
    addr, tun = api
    st, _, body = call(addr, "GET", "/api/")
    assert st == 200
    assert body == {"tunnels_uri": "/api/tunnels", "http_requests_uri": "/api/requests/http"}
    st, _, body = call(addr, "GET", "/api/tunnels")
    assert st == 200 and list(body) == ["tunnels", "uri"] and body["uri"] == "/api/tunnels"
    (t,) = body["tunnels"]
    assert list(t) == ["name", "ID", "uri", "public_url", "proto", "config", "metrics"]
    assert t["name"] == "command_line" and t["proto"] == "tcp"
    assert t["public_url"] == tun.url
    assert t["config"] == {"addr": "localhost:%d" % tun.echo.port, "inspect": False}
    assert list(t["metrics"]["conns"]) == ["count", "gauge", "rate1", "rate5", "rate15",
                                           "p50", "p90", "p95", "p99"]
    assert "gauge" not in t["metrics"]["http"]
    assert re.match(r"^[0-9a-f]{32}$", t["ID"])


def test_metrics_count_connections(api):
    addr, tun = api
    for _ in range(3):
        assert H.echo_roundtrip(tun.port)
    deadline = H.time.time() + H.t(5)
    while True:
        st, _, t = call(addr, "GET", "/api/tunnels/command_line")
        if t["metrics"]["conns"]["count"] == 3 or H.time.time() > deadline:
            break
        H.time.sleep(0.05)
    assert st == 200
    conns = t["metrics"]["conns"]
    assert conns["count"] == 3 and conns["gauge"] == 0
    assert 0 < conns["p50"] <= conns["p99"] < 10e9        # nanoseconds
    # scrapers may accept only the text format
    st, hdrs, text = call(addr, "GET", "/metrics", raw=True,
                          headers={"Accept": "text/plain;version=0.0.4"})
    assert st == 200 and hdrs["Content-Type"].startswith("text/plain")
    assert b'burrow_conns_total{tunnel="command_line"} 3' in text


def test_start_detail_stop_tcp_tunnel_while_bytes_flow(api, servers):
    addr, tun = api
    svc = H.EchoServer()
    servers.append(svc)
    name = "ssh (x)"
    st, _, t = call(addr, "POST", "/api/tunnels", {"name": name, "proto": "tcp",
                                                   "addr": svc.port, "unknown_key": 1})
    assert st == 201, t
    assert t["name"] == name and t["uri"] == "/api/tunnels/ssh%20%28x%29"
    assert t["config"]["addr"] == "localhost:%d" % svc.port
    port = H.parse_tcp_url(t["public_url"])[1]
    s = H.connect(port)
    s.sendall(b"ping")
    assert H.recv_exact(s, 4) == b"ping"
    st, _, t2 = call(addr, "GET", t["uri"])
    assert st == 200 and t2["public_url"] == t["public_url"]
    st, _, body = call(addr, "DELETE", t["uri"], body={})
    assert st == 204 and body == b""
    st, _, err = call(addr, "GET", t["uri"])
    assert st == 404 and err == {"error_code": 100, "status_code": 404,
                                 "msg": "tunnel not found", "details": {"name": name}}
    s.close()
    assert H.echo_roundtrip(tun.port)   # the CLI tunnel is untouched


def test_start_errors(api):
    addr, tun = api
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "command_line", "proto": "tcp",
                                                     "addr": 1})
    assert (st, err["error_code"]) == (400, 102)
    assert err["details"]["err"] == 'tunnel "command_line" already exists'
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "x", "proto": "invalid-proto",
                                                     "addr": 1})
    assert (st, err["error_code"]) == (400, 102) and "protocol name" in err["details"]["err"]
    st, _, err = call(addr, "POST", "/api/tunnels", {"proto": "tcp", "addr": 1})
    assert err["details"]["err"] == "Tunnel declaration must contain a 'name'"
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "x", "proto": "tcp"})
    assert (st, err["error_code"]) == (400, 102) and "must specify 'addr'" in err["details"]["err"]
    # An http definition runs as twins ("web (http)" first): errors still
    # name the tunnel as the request did.
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "web", "proto": "http"})
    assert (st, err["details"]["err"]) == (400, "Tunnel web must specify 'addr' to tunnel to")
    st, _, err = call(addr, "POST", "/api/tunnels", {
        "name": "web", "proto": "http", "addr": 80,
        "ip_restriction": {"allow_cidrs": ["10.0.0.0/33"]}})
    assert (st, err["details"]["err"]) == (
        400, "Tunnel web specifies an invalid CIDR in 'ip_restriction.allow_cidrs': 10.0.0.0/33")
    # the edge refuses a port outside its range: 502 / 103 with the edge's words
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "y", "proto": "tcp", "addr": 1,
                                                     "remote_addr": "localhost:1"})
    assert (st, err["error_code"], err["msg"]) == (502, 103, "failed to start tunnel"), err
    assert "outside" in err["details"]["err"]
    st, _, body = call(addr, "GET", "/api/tunnels")
    assert [t["name"] for t in body["tunnels"]] == ["command_line"]


def test_over_long_fields_are_400_and_cost_no_other_tunnel(api):
    """A string over the control protocol's 4096-byte limit is refused by
    the agent before it sends a Bind (400/102 naming the field). Before, the
    edge closed the whole session over it and the agent reconnected."""
    addr, tun = api
    big = "n" * 5000
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": big, "proto": "tcp", "addr": 1})
    assert (st, err["error_code"], err["msg"]) == (400, 102, "invalid tunnel configuration"), err
    assert "name is 5000 bytes, longer than the protocol's limit of 4096" in err["details"]["err"]
    for key in ("subdomain", "hostname"):
        st, _, err = call(addr, "POST", "/api/tunnels", {"name": "w", "proto": "http", "addr": 1,
                                                         key: "a" * 4097})
        assert (st, err["error_code"]) == (400, 102), err
        assert "%s is 4097 bytes" % key in err["details"]["err"], err
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "r", "proto": "tcp", "addr": 1,
                                                     "remote_addr": "a" * 4097})
    assert (st, err["error_code"]) == (400, 102) and "remote_addr is 4097" in err["details"]["err"]
    # the session and its tunnel are untouched, and a good tunnel still starts
    assert H.echo_roundtrip(tun.port)
    st, _, body = call(addr, "GET", "/api/tunnels")
    assert [t["name"] for t in body["tunnels"]] == ["command_line"]
    msgs = [H.parse_logfmt(line).get("msg") for line in list(tun.agent.out.lines)]
    assert msgs.count("client session established") == 1, msgs


def test_framework_errors(api):
    addr, _ = api
    st, _, err = call(addr, "POST", "/api/tunnels", "name=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 415 and err["msg"] == "unsupported request Content-Type"
    st, _, err = call(addr, "POST", "/api/tunnels", "{not json")
    assert st == 400 and "error_code" not in err
    assert err["msg"] == "failed to deserialize request parameter"
    st, hdrs, err = call(addr, "PUT", "/api/tunnels", {})
    assert st == 405 and hdrs["Allow"] == "GET, POST"
    assert err["details"] == {"method": "PUT", "allowed": "GET, POST"}
    st, _, err = call(addr, "GET", "/api/xyz")
    assert st == 404 and err == {"status_code": 404, "msg": "Not Found",
                                 "details": {"path": "/api/xyz"}}
    st, _, text = call(addr, "GET", "/api/tunnels", headers={"Host": "evil.example"}, raw=True)
    assert st == 401 and text.startswith(b'Rejected host "evil.example".')


def test_requests_routes_answer_empty(api):
    addr, _ = api
    st, _, body = call(addr, "GET", "/api/requests/http?limit=5&tunnel_name=command_line")
    assert st == 200 and body == {"uri": "/api/requests/http", "requests": []}
    st, _, err = call(addr, "GET", "/api/requests/http?limit=abc")
    assert st == 400
    st, _, body = call(addr, "DELETE", "/api/requests/http")
    assert st == 204
    st, _, err = call(addr, "GET", "/api/requests/http/airt_nope")
    assert (st, err["error_code"], err["details"]) == (404, 106, {"id": "airt_nope"})
    st, _, err = call(addr, "POST", "/api/requests/http", {"id": "airt_nope"})
    assert (st, err["error_code"]) == (404, 106)


def test_not_ready_before_session_then_ok(start_edge, start_agent, echo):
    port = H.free_port()   # nothing listens: the session never comes up
    edge = start_edge()
    agent = start_agent(echo.port, "127.0.0.1:%d" % port, ca=edge.ca)
    addr = web_addr(agent)
    st, _, err = call(addr, "POST", "/api/tunnels", {"name": "x", "proto": "tcp", "addr": 1})
    assert st == 503 and err == {
        "error_code": 104, "status_code": 503,
        "msg": "ngrok is not yet ready to start tunnels",
        "details": {"err": "a successful ngrok tunnel session has not yet been established"}}


def test_two_agents_get_4040_and_4041(start_edge, start_agent, echo):
    for p in (4040, 4041):
        if not H.port_is_free(p):
            pytest.skip("port %d is in use on this machine" % p)
    edge = start_edge()
    a = start_agent(echo.port, edge)
    assert web_addr(a) == ("127.0.0.1", 4040)
    b = start_agent(echo.port, edge)
    assert web_addr(b) == ("127.0.0.1", 4041)
    assert b.find_log("can't bind default web address, trying alternatives") is not None
