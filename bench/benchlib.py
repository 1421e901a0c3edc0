"""Shared parts of the tcp and http benchmarks: processes, setup, the run frame.

Everything listens on 127.0.0.1. Every process a run starts is registered in
`Procs` and killed when the run ends, also on Ctrl-C, SIGTERM, a failure or
when the run's time bound fires.
"""

import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)


class BenchError(Exception):
    pass


def log(msg):
    print(f"==> {msg}", flush=True)


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# processes


class Procs:
    """Background processes of this run; all of them are killed at exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, **kw):
        logpath = os.path.join(self.workdir, f"{name}.log")
        logf = open(logpath, "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True, **kw)
        logf.close()
        proc.name = name
        proc.logpath = logpath
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=3.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def read_log(proc):
    try:
        with open(proc.logpath, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def log_tail(proc, lines=15):
    text = read_log(proc).rstrip().splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in text) or "    | (no output)"


def wait_for_log(proc, pattern, timeout):
    """First match of the regex `pattern` in the process log, waiting for it."""
    rx = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(read_log(proc))
        if m:
            return m
        if proc.poll() is not None:
            raise BenchError(f"{proc.name} exited (status {proc.returncode}) before logging "
                             f"/{pattern}/:\n{log_tail(proc)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name} did not log /{pattern}/ within {timeout}s:\n"
                             f"{log_tail(proc)}")
        time.sleep(0.05)


def logfmt(line, key):
    m = re.search(rf'(?:^|\s){re.escape(key)}=(?:"((?:[^"\\]|\\.)*)"|(\S*))', line)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def status_kib(pid, field="VmRSS"):
    """A memory figure (VmRSS, VmHWM, ...) from /proc/PID/status, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    """PIDs of the direct children of a process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return out


def run_load(tools, args, timeout):
    """Run bench/load.c with args; returns the JSON object it prints."""
    res = subprocess.run([tools["load"]] + [str(a) for a in args], capture_output=True,
                         stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    if res.returncode != 0:
        raise BenchError(f"load {' '.join(map(str, args))} failed: {res.stderr.strip()}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def hold_connections(tools, load_args, rss_pids, settle):
    """Run `load hold...` with load_args (it opens and checks connections, then
    keeps them open); measure the RSS of rss_pids (MiB) while they are open.
    Returns (what load printed, {name: RSS})."""
    proc = subprocess.Popen([tools["load"]] + [str(a) for a in load_args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line and time.monotonic() < deadline:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                if not line:
                    break
        if not line:
            raise BenchError("holding connections timed out or failed")
        held = json.loads(line)
        time.sleep(settle)
        rss = {name: round(rss_kib(pid) / 1024, 1) for name, pid in rss_pids.items()}
        return held, rss
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_cpu(pids, fn):
    """Run fn(); return (its result, CPU seconds the given processes used meanwhile)."""
    before = {p: cpu_seconds(p) for p in pids}
    result = fn()
    return result, round(sum(cpu_seconds(p) - before[p] for p in pids), 2)


# ---------------------------------------------------------------------------
# setup


def as_root(argv):
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo"):
        return ["sudo"] + ([] if sys.stdin.isatty() else ["-n"]) + argv
    raise BenchError(f"need root to run {' '.join(argv)} (and there is no sudo)")


def find_bin(name, sbin=False):
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/sbin", "/usr/bin") if sbin else ("/usr/bin",):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def ensure_package(binary, package, sbin=False):
    """Path of `binary`; installs the Debian `package` with apt-get when it is missing."""
    path = find_bin(binary, sbin)
    if path:
        return path
    log(f"installing {package} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(as_root(["apt-get", "update", "-q"]), check=True, env=env)
        subprocess.run(as_root(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                package]), check=True, env=env)
    except (subprocess.CalledProcessError, OSError) as e:
        raise BenchError(f"cannot install {package}: {e}")
    path = find_bin(binary, sbin)
    if not path:
        raise BenchError(f"{package} installed but {binary} is still not found")
    return path


# Libraries a C helper links with, beyond libc and pthreads.
TOOL_LIBS = {"load": ("-lssl", "-lcrypto"), "tls_sink": ("-lssl", "-lcrypto")}


def compile_tools(workdir, names, libs=()):
    """Compile bench/<name>.c for each name into workdir; returns {name: path}."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BenchError("no C compiler (cc) found; install build-essential")
    out = {}
    for name in names:
        exe = os.path.join(workdir, name)
        subprocess.run([cc, "-O2", "-pthread", "-o", exe, os.path.join(BENCH_DIR, f"{name}.c")]
                       + list(TOOL_LIBS.get(name, ())) + list(libs), check=True)
        out[name] = exe
    return out


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(max(want, soft), hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(proc, port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{proc.name} exited (status {proc.returncode}):\n{log_tail(proc)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{proc.name} is not listening on {port} after {timeout}s")
            time.sleep(0.05)


# Options of the HAProxy `defaults` section per proxy mode.
HAPROXY_MODE_OPTIONS = {
    "tcp": ["option tcp-smart-connect"],
    "http": ["option http-keep-alive", "timeout http-request 10s",
             "timeout http-keep-alive 60s"],
}


def start_haproxy(procs, workdir, backend_port, threads, maxconn, mode="tcp"):
    """One HAProxy hop to 127.0.0.1:backend_port; returns (process, port, version)."""
    exe = ensure_package("haproxy", "haproxy", sbin=True)
    port = free_port()
    cfg = os.path.join(workdir, "haproxy.cfg")
    options = "".join(f"    {o}\n" for o in HAPROXY_MODE_OPTIONS[mode])
    with open(cfg, "w") as f:
        f.write(f"""global
    nbthread {threads}
    maxconn {maxconn}

defaults
    mode {mode}
{options}    timeout connect 5s
    timeout client 120s
    timeout server 120s

listen bench
    bind 127.0.0.1:{port}
    server backend 127.0.0.1:{backend_port}
""")
    subprocess.run([exe, "-c", "-q", "-f", cfg], check=True)
    proc = procs.start("haproxy", [exe, "-db", "-f", cfg])
    wait_port(proc, port, 10)
    v = subprocess.run([exe, "-v"], capture_output=True, text=True)
    version = v.stdout.splitlines()[0] if v.stdout else "?"
    return proc, port, version


def burrow_bins(build_dir):
    burrowd = os.path.join(build_dir, "edge", "burrowd")
    burrow = os.path.join(build_dir, "core", "burrow")
    for exe in (burrowd, burrow):
        if not os.access(exe, os.X_OK):
            raise BenchError(f"{exe} not found; build first (ninja -C {build_dir})")
    return burrowd, burrow


def start_edge(procs, workdir, build_dir, name="burrowd", extra_args=()):
    """burrowd in dev mode; returns (process, agent address, dev CA path)."""
    burrowd, _ = burrow_bins(build_dir)
    state = os.path.join(workdir, f"{name}-state")
    edge = procs.start(name, [burrowd, "--agent-addr", "127.0.0.1:0", "--state-dir", state,
                              "--log", "stdout"] + list(extra_args))
    wait_for_log(edge, r'msg="edge ready"', 15)
    text = read_log(edge)
    addr_line = re.search(r'^.*msg="listening for agents".*$', text, re.M)
    ca_line = re.search(r'^.*msg="(?:created|using) dev certificate authority".*$', text, re.M)
    if not addr_line or not ca_line:
        raise BenchError(f"{name} did not log its agent address and dev CA:\n{log_tail(edge)}")
    return edge, logfmt(addr_line.group(0), "addr"), logfmt(ca_line.group(0), "ca")


# ---------------------------------------------------------------------------
# the run frame


def add_common_args(ap, targets, rounds, seconds, prefix=""):
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"),
                    help="build directory with core/burrow and edge/burrowd (default: build/)")
    ap.add_argument("--seconds", type=float, default=seconds,
                    help=f"duration of each measurement (default {seconds:g})")
    ap.add_argument("--rounds", type=int, default=rounds,
                    help=f"repeat the measurements, report the median (default {rounds})")
    ap.add_argument("--targets", default=",".join(targets),
                    help="comma-separated subset of: " + ", ".join(targets))
    ap.add_argument("--json", help="where to write the JSON results "
                    f"(default: bench/results/{prefix}<timestamp>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")


def start_each(results, targets, start):
    """{target: start(target)} for every target that starts; one that fails
    (start raises) is left out with its reason under results["errors"]."""
    endpoints = {}
    for t in targets:
        try:
            endpoints[t] = start(t)
        except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired,
                OSError) as e:
            results["errors"][t] = str(e)
            warn(f"{t}: not measured: {e}")
    return endpoints


def add_stream_args(ap, workers_help):
    """The options of the stream benchmarks (tcp, tls): bulk warm-up, parallel
    streams, concurrent clients of the rate measurement, HAProxy threads."""
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="seconds of each bulk transfer not counted (default 0.5)")
    ap.add_argument("--streams", type=int, default=4, help="parallel streams (default 4)")
    ap.add_argument("--workers", type=int, default=4, help=f"{workers_help} (default 4)")
    ap.add_argument("--haproxy-threads", type=int, default=2, help="HAProxy nbthread (default 2)")


def parse_targets(ap, args, known):
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in known:
            ap.error(f"unknown target {t!r} (known: {', '.join(known)})")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return [t for t in known if t in targets]


def new_results(bench, config):
    return {
        "bench": bench,
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "machine": platform.machine()},
        "config": config,
        "targets": {},
        "errors": {},
    }


def median_run(runs, key):
    """The run whose `key` is the median (the lower one for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return dict(ordered[(len(ordered) - 1) // 2])


class Rounds:
    """Results of every (target, test) over the rounds; the median goes in the results."""

    def __init__(self, results, rounds):
        self.results = results
        self.rounds = rounds
        self.runs = {}   # (target, test) -> [result per round]

    def measure(self, target, test, key, pids, fn, rnd):
        """Run fn() -> result dict, noting the CPU time of pids; None on failure."""
        try:
            r, cpu = measure_cpu(list(pids.values()), fn)
        except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
            self.results["errors"][f"{target} {test}"] = str(e)
            warn(f"{target} {test}: {e}")
            return None
        r["proxy_cpu_s"] = cpu
        self.runs.setdefault((target, test), []).append(r)
        err = f", {r['errors']} errors" if r.get("errors") else ""
        tag = f" (round {rnd}/{self.rounds})" if self.rounds > 1 else ""
        log(f"{test:6s} {target:16s} {r[key]:10.1f} {key}{err}{tag}")
        return r

    def finish(self, keys, own_median=()):
        """Store the median run per key (test -> key); fields in own_median get
        their own median over the rounds instead of the median run's value."""
        for (t, test), rs in self.runs.items():
            key = keys[test]
            median = median_run(rs, key)
            if len(rs) > 1:
                median["rounds"] = [r[key] for r in rs]
                for k in own_median:
                    vals = [r[k] for r in rs if r.get(k) is not None]
                    if k in median and vals:
                        median[k] = median_run([{k: v} for v in vals], k)[k]
                        median[f"rounds_{k}"] = vals
            self.results["targets"].setdefault(t, {})[test] = median


def run_bench(args, results, budget_s, body, prefix=""):
    """Run body(procs, workdir) -> exit status inside the common frame.

    The frame bounds the run to budget_s, turns SIGTERM and the time bound into
    a clean stop, kills every process started through `procs`, and writes the
    results JSON (also after a failure, with the reason under "errors").
    """
    def on_signal(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(budget_s))
    workdir = tempfile.mkdtemp(prefix="burrow-bench.")
    procs = Procs(workdir)
    started = time.monotonic()
    status = 0
    try:
        status = body(procs, workdir)
    except KeyboardInterrupt as e:
        warn(f"interrupted ({e or 'SIGINT'}); stopping")
        results["errors"]["run"] = f"interrupted: {e}"
        status = 130
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        results["errors"]["run"] = str(e)
        status = 1
    finally:
        signal.alarm(0)
        procs.stop_all()
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        write_results(results, args.json, prefix)
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


def write_results(results, path, prefix):
    if not path:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = os.path.join(BENCH_DIR, "results", f"{prefix}{stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    shown = os.path.abspath(path)
    if shown.startswith(ROOT + os.sep):
        shown = os.path.relpath(shown, ROOT)
    print(f"\nresults written to {shown} ({results['elapsed_s']} s)")


# ---------------------------------------------------------------------------
# report helpers


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:.0f}{unit}"
    return f"{v:.1f}{unit}" if v >= 1 else f"{v:.2f}{unit}"


def ratio(a, b):
    if a is None or not b:
        return None
    return a / b
