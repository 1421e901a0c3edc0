"""The agent's command line and config files, run as a user would
(ngrok-compat.md §1 and §4): real `burrow` processes, a real edge where a
session is needed."""
import json
import os
import shutil
import subprocess
import urllib.request

import pytest

import helpers as H

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "config")


def burrow(args, home, timeout=20, cwd=None):
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=os.path.join(str(home), ".config"))
    return subprocess.run([H.BURROW] + args, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL, cwd=cwd)


def test_version_and_help(tmp_path):
    for args in (["version"], ["--version"], ["-version"]):
        r = burrow(args, tmp_path)
        assert r.returncode == 0 and r.stdout.strip().startswith("burrow version ")
    r = burrow(["--help"], tmp_path)
    assert r.returncode == 0 and "start NAME" in r.stdout and "--config" in r.stdout
    for cmd in ("tcp", "http", "start", "config"):
        r = burrow([cmd, "--help"], tmp_path)
        assert r.returncode == 0 and ("USAGE:\n   burrow %s" % cmd) in r.stdout, r.stdout
    r = burrow(["help", "start"], tmp_path)
    assert "burrow start NAME... | --all | --none" in r.stdout
    r = burrow(["tcp", "22", "--bogus"], tmp_path)
    assert r.returncode == 1 and "flag provided but not defined: -bogus" in r.stderr


def test_add_authtoken_both_spellings_keep_the_file(tmp_path):
    r = burrow(["config", "add-authtoken", "tok1"], tmp_path)
    path = tmp_path / ".config" / "burrow" / "burrow.yml"
    assert r.returncode == 0 and str(path) in r.stdout
    assert "authtoken: tok1" in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("# mine\nversion: \"2\"\nauthtoken: tok1  # keep\ntunnels: {}\n")
    r = burrow(["authtoken", "tok2"], tmp_path)
    assert r.returncode == 0
    lines = path.read_text().split("\n")
    assert lines[:2] == ["# mine", 'version: "2"'] and lines[3:] == ["tunnels: {}", ""]
    assert lines[2].startswith("authtoken: tok2") and lines[2].endswith("# keep")
    fresh = tmp_path / "sub" / "new.yml"
    r = burrow(["config", "add-authtoken", "tok3", "--config", str(fresh)], tmp_path)
    assert r.returncode == 0 and "authtoken: tok3" in fresh.read_text()
    r = burrow(["authtoken"], tmp_path)
    assert r.returncode == 1
    assert "You must pass a single argument, the authtoken to save" in r.stderr


def test_config_check_valid_and_every_invalid_case(tmp_path):
    valid = os.path.join(DATA, "valid")
    for case in sorted(os.listdir(valid)):
        f = os.path.join(valid, case, "input.yaml")
        # Files a case names by relative path (classic_full: ngrok's
        # example.crt/.key) are read from the working directory.
        for extra in os.listdir(os.path.join(valid, case)):
            if extra != "input.yaml":
                shutil.copy(os.path.join(valid, case, extra), str(tmp_path))
        r = burrow(["config", "check", "--config", f], tmp_path, cwd=str(tmp_path))
        assert r.returncode == 0, (case, r.stderr)
        assert "Valid configuration file at " + f in r.stdout
    invalid = os.path.join(DATA, "invalid")
    cases = sorted(os.listdir(invalid))
    assert len(cases) >= 15
    for case in cases:
        f = os.path.join(invalid, case, "input.yaml")
        with open(os.path.join(invalid, case, "expected")) as e:
            expected = e.read().strip()
        r = burrow(["config", "check", "--config=" + f], tmp_path)
        assert r.returncode == 1, case
        assert r.stderr.startswith("ERROR:  "), (case, r.stderr)
        assert expected in r.stderr, (case, expected, r.stderr)


def test_config_check_refuses_what_start_refuses(tmp_path):
    """`config check` loads what `burrow start` loads before connecting: the
    root_cas file and each address, not only the file's own rules."""
    cfg = tmp_path / "a.yml"
    cfg.write_text('version: "2"\nroot_cas: %s\n' % (tmp_path / "nope.pem"))
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode == 1, r.stderr
    assert "ERROR:  cannot load CA certificates %s: no such file" % (tmp_path / "nope.pem") \
        in r.stderr
    cfg.write_text('version: "2"\ntunnels:\n  web:\n    proto: http\n    addr: 70000\n')
    for cmd in (["config", "check"], ["start", "web", "--log", "false"]):
        r = burrow(cmd + ["--config", str(cfg)], tmp_path)
        assert r.returncode == 1, (cmd, r.stderr)
        assert ("ERROR:  %s:5:5: Tunnel web specifies an invalid or malformed address '70000': "
                "invalid port" % cfg) in r.stderr, (cmd, r.stderr)


def test_config_check_warns_about_a_proto_without_plugin(tmp_path):
    """The file is valid (the plugin may be installed elsewhere): a warning
    says where plugins were looked for, and the exit status is 0."""
    cfg = tmp_path / "a.yml"
    cfg.write_text('version: "2"\ntunnels:\n  db:\n    proto: postgres\n    addr: 5432\n')
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Valid configuration file at %s" % cfg in r.stdout
    warning = [line for line in r.stderr.splitlines() if line.startswith("WARNING:  ")]
    assert len(warning) == 1, r.stderr
    assert "%s:3: tunnel \"db\": no plugin for proto 'postgres' in " % cfg in warning[0]
    assert "plugins" in warning[0] and "burrow start will refuse it" in warning[0]
    r = burrow(["start", "db", "--log", "false", "--config", str(cfg)], tmp_path)
    assert r.returncode == 1 and "Invalid protocol name 'postgres'" in r.stderr


def test_start_errors(tmp_path):
    cfg = tmp_path / "a.yml"
    cfg.write_text('version: "2"\ntunnels:\n  ssh:\n    proto: tcp\n    addr: 22\n')
    r = burrow(["start", "--config", str(cfg), "nope"], tmp_path)
    assert r.returncode == 1
    assert "Tunnel 'nope' is not defined in the config files." in r.stderr
    assert "Tunnels available: ssh" in r.stderr and "Config files read: [%s]" % cfg in r.stderr
    r = burrow(["start", "--all", "ssh", "--config", str(cfg)], tmp_path)
    assert "You may not specify any tunnel names with the --all switch" in r.stderr
    r = burrow(["start", "-none", "ssh", "--config", str(cfg)], tmp_path)
    assert "You may not specify any tunnel names with the --none switch" in r.stderr
    empty = tmp_path / "e.yml"
    empty.write_text('version: "2"\n')
    r = burrow(["start", "--all", "--config", str(empty)], tmp_path)
    assert "must define at least one tunnel when using --all" in r.stderr


def test_fields_over_protocol_limits_fail_check_and_start(tmp_path):
    """A tunnel whose name or subdomain is longer than the control
    protocol's 4096-byte limit is an error of `config check` at its line,
    and `start` refuses it the same way before connecting. Before, check
    passed and the agent reconnected to the edge about once a second."""
    cfg = tmp_path / "a.yml"
    cfg.write_text('version: "2"\nauthtoken: t\nserver_addr: 127.0.0.1:1\ntunnels:\n'
                   '  ok:\n    proto: tcp\n    addr: 22\n'
                   # YAML caps plain keys at 1024 characters: a long one is explicit
                   '  ? %s\n  : {proto: tcp, addr: 22}\n' % ("n" * 4097))
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("ERROR:  %s:8: tunnel \"nnnn" % cfg), r.stderr
    assert "name is 4097 bytes, longer than the protocol's limit of 4096 bytes" in r.stderr
    r = burrow(["start", "--all", "--config", str(cfg), "--log", "stdout"], tmp_path)
    assert r.returncode == 1 and "%s:8: tunnel" % cfg in r.stderr, r.stderr
    assert "failed to reconnect session" not in r.stdout

    cfg.write_text('version: "2"\ntunnels:\n  web:\n    proto: http\n    addr: 80\n'
                   '    subdomain: %s\n' % ("s" * 4097))
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode == 1
    assert "%s:6:" % cfg in r.stderr and "subdomain is 4097 bytes" in r.stderr, r.stderr


def test_authtoken_over_protocol_limit_is_refused_before_connecting(tmp_path):
    """Auth carries the token as a protocol string (at most 4096 bytes): a
    longer one fails `config check` at its line and the --authtoken flag
    fails start, instead of a session the edge closes again and again."""
    cfg = tmp_path / "a.yml"
    cfg.write_text('version: "2"\nauthtoken: %s\n' % ("t" * 4097))
    r = burrow(["config", "check", "--config", str(cfg)], tmp_path)
    assert r.returncode == 1
    assert "%s:2:12: 'authtoken' is 4097 bytes" % cfg in r.stderr, r.stderr
    r = burrow(["tcp", "22", "--authtoken", "t" * 4097, "--server-addr", "127.0.0.1:1",
                "--log", "stdout"], tmp_path)
    assert r.returncode == 1, r.stdout
    assert "the authtoken is 4097 bytes, longer than the protocol's limit of 4096" in r.stderr
    assert "failed to reconnect session" not in r.stdout


@pytest.mark.parametrize("case, reason", [
    ("missing", "no such file"),
    ("text", "not a PEM certificate"),
])
def test_root_cas_errors_say_what_happened(tmp_path, case, reason):
    ca = tmp_path / ("nope.pem" if case == "missing" else "notes.txt")
    if case == "text":
        ca.write_text("just some text\n")
    cfg = tmp_path / "a.yml"
    cfg.write_text('version: "2"\nroot_cas: %s\n' % ca)
    for args in (["--config", str(cfg)], ["--root-cas", str(ca)]):
        r = burrow(["start", "--none", "--log", "false"] + args, tmp_path)
        assert r.returncode == 1, r.stderr
        assert "ERROR:  cannot load CA certificates %s: %s" % (ca, reason) in r.stderr, r.stderr


def test_start_merges_config_files_in_order(start_edge, procs, tmp_path, echo, servers):
    """Later files override earlier ones; flags override files; tunnels from
    all files start, with ngrok's log lines about the files read."""
    edge = start_edge()
    other = H.EchoServer()
    servers.append(other)
    web = H.free_port()
    base = tmp_path / "base.yml"
    base.write_text(
        'authtoken: wrong\nserver_addr: 127.0.0.1:1\nlog_level: info\n'
        'tunnels:\n  one:\n    proto: tcp\n    addr: %d\n  two:\n    proto: tcp\n    addr: 1\n'
        % echo.port)
    over = tmp_path / "over.yml"
    over.write_text(
        'server_addr: %s\nroot_cas: %s\nweb_addr: 127.0.0.1:%d\n'
        'tunnels:\n  two:\n    proto: tcp\n    addr: %d\n' % (edge.addr, edge.ca, web, other.port))
    home = tmp_path / "home"
    home.mkdir()
    agent = procs.add(H.Proc([H.BURROW, "start", "--all", "--config", str(base), "--config",
                              str(over), "--authtoken", "test-token", "--log", "stdout"],
                             "burrow-start", cwd=str(home), env={"HOME": str(home)}))
    agent.wait_log("client session established", timeout=15)
    urls = {}
    for _ in range(2):
        i, rec = agent.wait_log("started tunnel", timeout=15, since=len(urls) and i + 1, url=None)
        urls[rec["name"]] = rec["url"]
    assert set(urls) == {"one", "two"}
    assert [r["path"] for r in map(H.parse_logfmt, agent.out.lines)
            if r.get("msg") == "open config file"] == [str(base), str(over)]
    assert H.echo_roundtrip(H.parse_tcp_url(urls["one"])[1])
    assert H.echo_roundtrip(H.parse_tcp_url(urls["two"])[1])   # the override's addr
    with urllib.request.urlopen("http://127.0.0.1:%d/api/tunnels" % web, timeout=5) as resp:
        names = sorted(t["name"] for t in json.load(resp)["tunnels"])
    assert names == ["one", "two"]


def test_web_addr_false_disables_the_api(start_edge, start_agent, echo):
    edge = start_edge()
    agent = start_agent(echo.port, edge, extra=["--web-addr", "false"])
    agent.wait_tunnel()
    assert agent.find_log("starting web service") is None
