"""burrowd's refusals: every invalid or refused setting prints its error and
exits 1, before anything is created or listens (docs/edge.md)."""

import os
import socket
import subprocess

import pytest

import helpers as H


def _run_burrowd(tmp_path, *args):
    state = tmp_path / "state"
    r = subprocess.run([H.BURROWD, "--state-dir", str(state), "--log", "stderr", *args],
                       capture_output=True, text=True, timeout=H.t(20), stdin=subprocess.DEVNULL)
    return r, state


@pytest.mark.parametrize("args, message", [
    (["--agent-addr", "0.0.0.0:4444"],
     "refusing to accept agents on non-loopback address 0.0.0.0:4444 without --auth-tokens"),
    (["--agent-addr", "nonsense"], "invalid --agent-addr 'nonsense' (expected host:port)"),
    (["--agent-addr", "127.0.0.1:70000"], "invalid --agent-addr '127.0.0.1:70000'"),
    (["--http-addr", "bogus:x"], "invalid --http-addr 'bogus:x' (expected host:port)"),
    (["--https-addr", "no.such.host.invalid:1"], "invalid --https-addr 'no.such.host.invalid:1'"),
    (["--tcp-addr", "no.such.host.invalid"], "invalid --tcp-addr 'no.such.host.invalid'"),
    (["--tcp-ports", "5-1"], "invalid --tcp-ports '5-1' (expected LOW-HIGH)"),
    (["--grace", "soon"], "invalid --grace 'soon'"),
    (["--http-header-timeout", "0s"], "invalid --http-header-timeout '0s'"),
    (["--http-body-timeout", "soon"], "invalid --http-body-timeout 'soon'"),
    (["--max-conns-per-ip", "0"], "invalid --max-conns-per-ip '0' (expected 1-1000000)"),
    (["--max-public-conns", "many"], "invalid --max-public-conns 'many'"),
])
def test_refused_setting_exits_1_before_anything_starts(tmp_path, args, message):
    r, state = _run_burrowd(tmp_path, *args)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "ERROR:  " + message in r.stderr
    assert "Assertion" not in r.stderr and "Sanitizer" not in r.stderr
    # Refused before anything was created: no dev CA was written.
    assert not os.path.exists(state / "ca.pem")


@pytest.mark.parametrize("https", ["127.0.0.1:0", "false"])
def test_unloadable_host_cert_exits_1_before_writing_or_listening(tmp_path, https):
    agent_port = H.free_port()
    r, state = _run_burrowd(tmp_path, "--agent-addr", "127.0.0.1:%d" % agent_port,
                            "--http-addr", "127.0.0.1:0", "--https-addr", https, "--host-cert",
                            str(tmp_path / "nope.pem") + ":" + str(tmp_path / "nope.key"))
    assert r.returncode == 1, (r.returncode, r.stderr)
    pem = tmp_path / "nope.pem"
    assert "ERROR:  --host-cert %s:%s: cannot load certificate %s: no such file" % (
        pem, tmp_path / "nope.key", pem) in r.stderr, r.stderr
    assert "listening for" not in r.stderr
    # Checked before anything was written: the empty state dir got no dev CA.
    assert not os.path.exists(state / "ca.pem"), os.listdir(state)


def _make_cert(tmp_path, name):
    cert, key = tmp_path / (name + ".pem"), tmp_path / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:%s.example.org" % name],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("case, reason", [
    ("missing cert", "cannot load certificate {cert}: no such file"),
    ("text cert", "cannot load certificate {cert}: not a PEM certificate"),
    ("missing key", "cannot load private key {key}: no such file"),
    ("text key", "cannot load private key {key}: not a PEM private key"),
    ("other key", "cannot load private key {key}: key does not match certificate"),
])
def test_host_cert_errors_say_what_happened(tmp_path, case, reason):
    """OpenSSL's own words ("system lib", "PEM lib") do not say what is wrong
    with the file: the message does."""
    cert, key = _make_cert(tmp_path, "own")
    if case == "missing cert":
        cert = tmp_path / "nope.pem"
    elif case == "text cert":
        cert = tmp_path / "notes.txt"
        cert.write_text("just some text\n")
    elif case == "missing key":
        key = tmp_path / "nope.key"
    elif case == "text key":
        key = tmp_path / "notes.txt"
        key.write_text("just some text\n")
    else:
        _, key = _make_cert(tmp_path, "other")
    r, _ = _run_burrowd(tmp_path, "--agent-addr", "127.0.0.1:%d" % H.free_port(),
                        "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0",
                        "--host-cert", "%s:%s" % (cert, key))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert reason.format(cert=cert, key=key) in r.stderr, r.stderr
    assert "system lib" not in r.stderr and "PEM lib" not in r.stderr


@pytest.mark.parametrize("case, reason", [
    ("missing", "cannot load certificate {cert}: no such file"),
    ("text", "cannot load certificate {cert}: not a PEM certificate"),
])
def test_tls_cert_errors_say_what_happened(tmp_path, case, reason):
    cert, key = _make_cert(tmp_path, "own")
    if case == "missing":
        cert = tmp_path / "nope.pem"
    else:
        cert = tmp_path / "notes.txt"
        cert.write_text("just some text\n")
    r, _ = _run_burrowd(tmp_path, "--agent-addr", "127.0.0.1:%d" % H.free_port(),
                        "--tls-cert", str(cert), "--tls-key", str(key))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert reason.format(cert=cert) in r.stderr, r.stderr


def test_busy_port_exits_1_and_names_it(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flag in ("--agent-addr", "--http-addr", "--https-addr"):
            addrs = {"--agent-addr": "127.0.0.1:0", "--http-addr": "127.0.0.1:0",
                     "--https-addr": "127.0.0.1:0"}
            addrs[flag] = "127.0.0.1:%d" % port
            args = [a for kv in addrs.items() for a in kv]
            r, _ = _run_burrowd(tmp_path, *args)
            assert r.returncode == 1, (flag, r.returncode, r.stderr)
            assert "127.0.0.1:%d: address already in use" % port in r.stderr, (flag, r.stderr)
            assert "Assertion" not in r.stderr and "Sanitizer" not in r.stderr
