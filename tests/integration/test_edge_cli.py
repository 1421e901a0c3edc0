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
])
def test_refused_setting_exits_1_before_anything_starts(tmp_path, args, message):
    r, state = _run_burrowd(tmp_path, *args)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "ERROR:  " + message in r.stderr
    assert "Assertion" not in r.stderr and "Sanitizer" not in r.stderr
    # Refused before anything was created: no dev CA was written.
    assert not os.path.exists(state / "ca.pem")


def test_unloadable_host_cert_exits_1_before_listening(tmp_path):
    agent_port = H.free_port()
    r, _ = _run_burrowd(tmp_path, "--agent-addr", "127.0.0.1:%d" % agent_port,
                        "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0",
                        "--host-cert", str(tmp_path / "nope.pem") + ":" + str(tmp_path / "nope.key"))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "ERROR:  --host-cert" in r.stderr and "nope.pem" in r.stderr
    assert "listening for" not in r.stderr


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
