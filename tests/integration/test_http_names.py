"""Hostnames of http/https tunnels (docs/edge.md "Hostnames") and the HTTPS
listener's certificates (docs/edge.md "Certificates")."""
import http.client
import json
import os
import re
import ssl
import subprocess
import time

import pytest

import helpers as H
import edge_helpers as HH


@pytest.fixture
def edge(start_edge):
    return start_edge(extra=["--domain", HH.DOMAIN])


@pytest.fixture
def srv(servers):
    s = HH.EchoHeadServer()
    servers.append(s)
    return s


def agent_with(procs, tmp_path, edge, tunnels, name="a", server_addr=None):
    return procs.add(HH.ConfigAgent(str(tmp_path / name), server_addr or edge.addr, edge.ca,
                                    tunnels, name="burrow-" + name))


def https_get(port, sni, cafile, host=None):
    ctx = ssl.create_default_context(cafile=cafile)
    sock = ssl_sock = None
    sock = H.connect(port)
    ssl_sock = ctx.wrap_socket(sock, server_hostname=sni)
    c = HH.Client(port, sock=ssl_sock)
    c.request(host or sni)
    out = c.response()
    c.close()
    return out, ssl_sock


def test_random_requested_and_hostname(edge, srv, procs, tmp_path):
    agent = agent_with(procs, tmp_path, edge, {
        "r1": {"proto": "httpraw", "addr": srv.port},
        "r2": {"proto": "httpraw", "addr": srv.port},
        "sub": {"proto": "httpraw", "addr": srv.port, "subdomain": "MyApp"},
        "hn": {"proto": "httpraw", "addr": srv.port, "hostname": "App.Example.ORG"},
    })
    urls = agent.urls(["r1", "r2", "sub", "hn"])
    pat = r"^http://([0-9a-f]{16})\.%s:%d$" % (re.escape(HH.DOMAIN), edge.http_port)
    m1, m2 = re.match(pat, urls["r1"]), re.match(pat, urls["r2"])
    assert m1 and m2, urls
    assert m1.group(1) != m2.group(1)
    assert urls["sub"] == "http://myapp.%s:%d" % (HH.DOMAIN, edge.http_port)
    assert urls["hn"] == "http://app.example.org:%d" % edge.http_port
    for u in urls.values():
        c = HH.Client(edge.http_port)
        c.request(HH.url_host(u).upper())  # Host matching is case-insensitive
        assert c.response()[0] == 200
        c.close()


def test_invalid_names_refused(edge, srv, procs, tmp_path):
    for i, (d, text) in enumerate([
            ({"hostname": "bad_name.example"}, 'invalid hostname "bad_name.example"'),
            ({"hostname": "a" * 64 + ".example"}, "longer than 63"),
            ({"subdomain": "x.y"}, 'invalid subdomain "x.y"')]):
        d = dict(d, proto="httpraw", addr=srv.port)
        agent = agent_with(procs, tmp_path, edge, {"t": d}, name="bad%d" % i)
        agent.expected_rc = 1
        _, rec = agent.wait_log("failed to start tunnel", err=None)
        assert text in rec["err"], rec
        agent.wait_exit(H.t(10))


def _api(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=H.t(10))
    c.request(method, path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def test_name_held_by_another_session(edge, srv, procs, tmp_path):
    a = agent_with(procs, tmp_path, edge, {
        "web": {"proto": "httpraw", "addr": srv.port, "subdomain": "taken"},
        "hn": {"proto": "httpraw", "addr": srv.port, "hostname": "held.example.org"}})
    a.urls(["web", "hn"])
    b = agent_with(procs, tmp_path, edge, {}, name="b")
    b.wait_log("client session established")
    st, body = _api(b.web_port, "POST", "/api/tunnels",
                    {"name": "x", "proto": "httpraw", "addr": str(srv.port),
                     "subdomain": "taken"})
    assert st == 502 and body["error_code"] == 103, body
    assert body["details"]["err"] == 'subdomain "taken" is already in use', body
    st, body = _api(b.web_port, "POST", "/api/tunnels",
                    {"name": "y", "proto": "httpsraw", "addr": str(srv.port),
                     "hostname": "held.example.org"})
    assert st == 502 and body["error_code"] == 103, body
    assert body["details"]["err"] == 'hostname "held.example.org" is already in use', body
    # the same session may take its name once more for the other scheme
    a2 = a.web_port
    st, body = _api(a2, "POST", "/api/tunnels",
                    {"name": "twin", "proto": "httpsraw", "addr": str(srv.port),
                     "hostname": "taken.%s" % HH.DOMAIN})
    assert st == 201, body
    assert body["public_url"] == "https://taken.%s:%d" % (HH.DOMAIN, edge.https_port)
    # ... but not twice for the same scheme
    st, body = _api(a2, "POST", "/api/tunnels",
                    {"name": "again", "proto": "httpraw", "addr": str(srv.port),
                     "hostname": "taken.%s" % HH.DOMAIN})
    assert st == 502, body
    # unbind frees the name for others
    st, _ = _api(a2, "DELETE", "/api/tunnels/hn")
    assert st == 204
    edge.wait_log("tunnel unbound", url="http://held.example.org:%d" % edge.http_port)
    st, body = _api(b.web_port, "POST", "/api/tunnels",
                    {"name": "z", "proto": "httpraw", "addr": str(srv.port),
                     "hostname": "held.example.org"})
    assert st == 201, body


@pytest.mark.deadline(90)
def test_resume_keeps_hostname(edge, srv, procs, servers, tmp_path):
    proxy = H.CuttableProxy(edge.agent_port)
    servers.append(proxy)
    agent = agent_with(procs, tmp_path, edge, {
        "rnd": {"proto": "httpraw", "addr": srv.port}},
        server_addr="127.0.0.1:%d" % proxy.port)
    url1 = agent.urls(["rnd"])["rnd"]
    mark = agent.out.mark()
    assert proxy.cut() >= 1
    agent.wait_log("session closed, starting reconnect loop", since=mark, timeout=10)
    _, rec = agent.wait_log("started tunnel", timeout=20, since=mark, url=None)
    assert rec["url"] == url1, edge.tail()
    c = HH.Client(edge.http_port)
    c.request(HH.url_host(url1))
    assert c.response()[0] == 200
    # another agent cannot take the name in the meantime either
    b = agent_with(procs, tmp_path, edge, {
        "t": {"proto": "httpraw", "addr": srv.port, "hostname": HH.url_host(url1)}},
        name="b")
    b.expected_rc = 1
    _, rec = b.wait_log("failed to start tunnel", err=None)
    assert "is already in use" in rec["err"]
    b.wait_exit(H.t(10))


def test_https_dev_wildcard_and_sni(edge, srv, procs, tmp_path):
    agent = agent_with(procs, tmp_path, edge, {
        "sec": {"proto": "httpsraw", "addr": srv.port, "subdomain": "sec"}})
    url = agent.urls(["sec"])["sec"]
    assert url == "https://sec.%s:%d" % (HH.DOMAIN, edge.https_port)
    (status, _, body), s = https_get(edge.https_port, "sec." + HH.DOMAIN, edge.ca)
    assert status == 200
    head = HH.parse_echo(body)[0]
    assert HH.has_line(head, b"X-Forwarded-Proto: https"), head
    agent.wait_log("raw http conn", server_name="sec." + HH.DOMAIN)
    # the http listener does not serve https tunnels
    c = HH.Client(edge.http_port)
    c.request("sec." + HH.DOMAIN)
    assert c.response()[0] == 404


def test_https_host_cert(start_edge, srv, procs, tmp_path):
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=own", "-addext",
                    "subjectAltName=DNS:own.example.org,DNS:*.wild.example.org"],
                   check=True, capture_output=True)
    edge = start_edge(extra=["--domain", HH.DOMAIN, "--host-cert", cert + ":" + key])
    agent = agent_with(procs, tmp_path, edge, {
        "own": {"proto": "httpsraw", "addr": srv.port, "hostname": "own.example.org"},
        "w": {"proto": "httpsraw", "addr": srv.port, "hostname": "x.wild.example.org"},
        "dev": {"proto": "httpsraw", "addr": srv.port, "subdomain": "dev"}})
    agent.urls(["own", "w", "dev"])
    for name in ("own.example.org", "x.wild.example.org"):
        (status, _, _), _ = https_get(edge.https_port, name, cert)
        assert status == 200
    # other names still get the dev wildcard certificate
    (status, _, _), _ = https_get(edge.https_port, "dev." + HH.DOMAIN, edge.ca)
    assert status == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(edge.https_port, "dev." + HH.DOMAIN, cert)


def test_bad_host_cert_fails_startup(start_edge, tmp_path):
    edge = start_edge(extra=["--host-cert", "/nonexistent.pem:/nonexistent.key"], wait=False)
    edge.expected_rc = 1
    assert edge.wait_exit(H.t(10)) == 1
    assert any("--host-cert" in line for line in edge.err.lines), edge.tail()


def test_reservation_expires_after_grace(start_edge, srv, procs, tmp_path):
    edge = start_edge(extra=["--domain", HH.DOMAIN, "--grace", "1500ms"])
    a = agent_with(procs, tmp_path, edge, {
        "g": {"proto": "httpraw", "addr": srv.port, "subdomain": "gone"}})
    a.urls(["g"])
    b = agent_with(procs, tmp_path, edge, {}, name="b")
    b.wait_log("client session established")
    a.kill()
    edge.wait_log("session closed")
    c = HH.Client(edge.http_port)
    c.request("gone." + HH.DOMAIN)
    assert c.response()[0] == 502     # held for its client, agent not connected
    body = {"name": "g", "proto": "httpraw", "addr": str(srv.port), "subdomain": "gone"}
    st, _ = _api(b.web_port, "POST", "/api/tunnels", body)
    assert st == 502
    time.sleep(H.t(1.6))
    st, res = _api(b.web_port, "POST", "/api/tunnels", body)
    assert st == 201, res


def test_wildcard_certificate_reused(start_edge, tmp_path):
    state = str(tmp_path / "st")
    e1 = start_edge(state_dir=state, extra=["--domain", HH.DOMAIN])
    pem = open(os.path.join(state, "wildcard.pem")).read()
    e1.stop()
    start_edge(state_dir=state, extra=["--domain", HH.DOMAIN])
    assert open(os.path.join(state, "wildcard.pem")).read() == pem
    start_edge(state_dir=state, extra=["--domain", "other.test"], http_addr="false")
    assert open(os.path.join(state, "wildcard.pem")).read() != pem


# --------------------------------------------------------------------------
# the default domain "localhost": "*.localhost" is not accepted by OpenSSL's
# host checks, so each https name gets its own dev certificate


def verified_get(edge, host):
    """Status of GET / over TLS verified against the edge's CA for `host`
    (no check_hostname hacks)."""
    return https_get(edge.https_port, host, edge.ca)[0][0]


def cert_of(edge, host):
    """(DER, subjectAltName) of the verified certificate served to `host`."""
    s = ssl.create_default_context(cafile=edge.ca).wrap_socket(
        H.connect(edge.https_port), server_hostname=host)
    der, cert = s.getpeercert(binary_form=True), s.getpeercert()
    s.close()
    return der, cert["subjectAltName"]


def curl_ok(edge, host):
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                        str(H.t(10)), "--cacert", edge.ca, "--resolve",
                        "%s:%d:127.0.0.1" % (host, edge.https_port),
                        "https://%s:%d/" % (host, edge.https_port)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "200", (r.returncode, r.stdout, r.stderr)


def test_https_localhost_names_verify(start_edge, srv, procs, tmp_path):
    edge = start_edge()  # the default --domain localhost
    agent = agent_with(procs, tmp_path, edge, {
        "r": {"proto": "httpsraw", "addr": srv.port},
        "s": {"proto": "httpsraw", "addr": srv.port, "subdomain": "app"}})
    urls = agent.urls(["r", "s"])
    assert re.match(r"^https://[0-9a-f]{16}\.localhost:%d$" % edge.https_port, urls["r"]), urls
    assert urls["s"] == "https://app.localhost:%d" % edge.https_port
    hosts = [HH.url_host(u) for u in urls.values()]
    ders = set()
    for h in hosts:
        assert verified_get(edge, h) == 200
        der, san = cert_of(edge, h)
        ders.add(der)
        assert san == (("DNS", h),)  # exactly that name
        curl_ok(edge, h)
        edge.wait_log("minted dev certificate", host=h)
    assert len(ders) == 2  # each tunnel has a certificate of its own
    # a name no tunnel holds gets the wildcard, which clients refuse here
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(edge.https_port, "nobody.localhost", edge.ca)


def test_https_localhost_rebind_and_resume(start_edge, srv, procs, servers, tmp_path):
    edge = start_edge()
    proxy = H.CuttableProxy(edge.agent_port)
    servers.append(proxy)
    agent = agent_with(procs, tmp_path, edge, {
        "s": {"proto": "httpsraw", "addr": srv.port, "subdomain": "again"}},
        server_addr="127.0.0.1:%d" % proxy.port)
    agent.urls(["s"])
    assert verified_get(edge, "again.localhost") == 200
    # unbind: the certificate goes with the name
    st, _ = _api(agent.web_port, "DELETE", "/api/tunnels/s")
    assert st == 204
    edge.wait_log("dropped dev certificate", host="again.localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(edge.https_port, "again.localhost", edge.ca)
    # rebind: verifies again
    st, body = _api(agent.web_port, "POST", "/api/tunnels",
                    {"name": "s2", "proto": "httpsraw", "addr": str(srv.port),
                     "subdomain": "again"})
    assert st == 201, body
    assert verified_get(edge, "again.localhost") == 200
    curl_ok(edge, "again.localhost")
    # a resumed session takes its reserved name back, still verifiable
    mark = agent.out.mark()
    assert proxy.cut() >= 1
    agent.wait_log("session closed, starting reconnect loop", since=mark, timeout=10)
    agent.wait_log("started tunnel", timeout=20, since=mark, name="s2")
    assert verified_get(edge, "again.localhost") == 200
    curl_ok(edge, "again.localhost")
