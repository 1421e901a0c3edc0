"""Benchmark burrow's http tunnel against direct, one HAProxy hop and ssh -R.

Everything runs on loopback in this one invocation: the same local HTTP
service (nginx, or bench/httpd.c, or each in turn) behind every path, wrk for
requests/s and latency, bench/load.c for repeated 10 MiB downloads and for
holding idle connections, interleaved rounds, medians reported.
See bench/README.md for what is measured and how to read the output.
"""

import argparse
import http.client
import os
import re
import subprocess
import time

from benchlib import (BenchError, Rounds, add_common_args, compile_tools, ensure_package, fmt,
                      hold_connections, log, new_results, parse_targets, ratio, run_bench,
                      run_load, start_each, status_kib, warn)
from http_paths import (BULK_BYTES, SMALL_BODY, api_get, check_endpoint, start_service,
                        start_target)

TARGETS = ("direct", "haproxy", "ssh", "burrow-inspect", "burrow-noinspect", "burrow-https")
BURROW_TARGETS = ("burrow-inspect", "burrow-noinspect", "burrow-https")
SERVICES = ("nginx", "httpd")
HOLD_TARGETS = ("haproxy", "ssh", "burrow-inspect", "burrow-noinspect")
TIME_BUDGET_S = 300
PREFIX = "http-"            # of the results file name
HOLD_EDGE_MIB = 16.0        # burrowd VmRSS with 1000 idle keep-alive connections <= this
STORE_MIB = 50              # the agent's default inspect_db_size (52428800 bytes)
FILL_DOWNLOADS = 6          # --fill-store: 10 MiB responses captured, more than STORE_MIB

# The targets: (label, figure, comparison, target). Figures are computed
# in report_targets; a ratio > 1 means more of the figure than the baseline.
TARGET_ROWS = (
    ("req/s  burrow-inspect / ssh", "rps_ssh", ">=", 1.0),
    ("req/s  burrow-inspect / haproxy", "rps_haproxy", ">=", 0.75),
    ("p99    burrow-inspect / ssh", "p99_ssh", "<=", 1.0),
    ("bulk   burrow-inspect / haproxy", "bulk_haproxy", ">=", 0.8),
    ("inspection cost 1 - req/s inspect / noinspect", "cost_rps", "<=", 0.10),
    ("inspection cost 1 - bulk inspect / noinspect", "cost_bulk", "<=", 0.15),
)


# ---------------------------------------------------------------------------
# starting the paths (http_paths.py) and checking them


def start_targets(procs, args, workdir, results, targets, svc):
    """Start every path; a path that fails is left out with its reason under errors."""

    def start(t):
        ep = start_target(procs, args, workdir, results, t, svc.port)
        check_endpoint(ep, svc)
        run_wrk(args, ep, 1)   # warm-up: connections, caches, the agent's first streams
        if ep.url:
            results["host"][f"{t}_url"] = ep.url
        log(f"{t}: ready on {ep.host}:{ep.port} (Host: {ep.hosthdr})")
        return ep

    return start_each(results, targets, start)


# ---------------------------------------------------------------------------
# measurements

UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text):
    out = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not m:
        raise BenchError(f"no Requests/sec in wrk output:\n{text.strip()[-400:]}")
    out["rps"] = float(m.group(1))
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text,
                                     re.M):
        out[f"p{pct}_ms"] = round(float(val) * UNIT_MS[unit], 3)
    m = re.search(r"^\s+(\d+) requests in ([\d.]+)(\w+)", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
        errors += sum(out["socket_errors"].values())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
        errors += out["non_2xx"]
    out["errors"] = errors
    return out


def run_wrk(args, ep, seconds, extra=()):
    # Over https wrk sends the URL's host (an IP here) as the server name: the edge
    # finds no tls tunnel of that name and terminates, as it does for a browser.
    scheme = "https" if ep.sni else "http"
    argv = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s",
            "--latency", "-H", f"Host: {ep.hosthdr}", *extra, f"{scheme}://{ep.host}:{ep.port}/"]
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         timeout=seconds + 30)
    if res.returncode != 0:
        raise BenchError(f"wrk failed (status {res.returncode}): {res.stderr.strip()[-300:]}")
    return parse_wrk(res.stdout)


def memory(pids):
    """VmRSS and VmHWM (peak) of each process, in MiB."""
    return {name: {"rss_mib": round(status_kib(pid, "VmRSS") / 1024, 1),
                   "hwm_mib": round(status_kib(pid, "VmHWM") / 1024, 1)}
            for name, pid in pids.items()}


def captured_requests(results, t, ep):
    """How many requests the agent API lists as captured: shows whether inspection is on."""
    try:
        n = len(api_get(ep.api_port, "/api/requests/http").get("requests") or [])
    except (OSError, ValueError, http.client.HTTPException) as e:
        results["errors"][f"{t} capture"] = f"/api/requests/http: {e}"
        return
    results["targets"].setdefault(t, {})["captured_requests"] = n
    if (n > 0) != (t != "burrow-noinspect"):
        warn(f"{t}: the agent API lists {n} captured requests; the inspection cost "
             "compares what it did not mean to")


def measure_all(args, results, endpoints, svc):
    targets = list(endpoints)
    for t in targets:
        results["targets"][t] = {}
    rounds = Rounds(results, args.rounds)
    for rnd in range(1, args.rounds + 1):
        # Each round starts one path later, so no path is always measured first.
        k = (rnd - 1) % max(1, len(targets))
        order = targets[k:] + targets[:k]
        for t in order:
            ep = endpoints[t]
            rounds.measure(t, "rps", "rps", ep.pids,
                           lambda: run_wrk(args, ep, args.seconds), rnd)
            if ep.pids:
                results["targets"].setdefault(t, {})["memory"] = memory(ep.pids)
        for t in order:
            ep = endpoints[t]
            tls = ["--tls", ep.sni] if ep.sni else []
            rounds.measure(t, "bulk", "mb_per_s", ep.pids,
                           lambda: run_load(args.tools, tls + [
                               "repeat", ep.host, ep.port, ep.hosthdr, svc.bulk_path,
                               BULK_BYTES, args.seconds], args.seconds + 30), rnd)
        # A new connection (and over https a full handshake) per request: what
        # the edge does once per connection, such as reading the ClientHello.
        for t in order:
            ep = endpoints[t]
            if ep.sni:
                rounds.measure(t, "newconn", "rps", ep.pids,
                               lambda: run_wrk(args, ep, args.seconds,
                                               ("-H", "Connection: close")), rnd)
    rounds.finish({"rps": "rps", "bulk": "mb_per_s", "newconn": "rps"},
                  own_median=("p50_ms", "p99_ms"))
    for t, ep in endpoints.items():
        if ep.api_port:
            captured_requests(results, t, ep)


def fill_store(args, results, ep, svc):
    """Download enough through the inspecting agent that its capture store is
    full: each 10 MiB response is captured whole (the per-entry cap is 10 MiB)."""
    for _ in range(FILL_DOWNLOADS):
        run_load(args.tools, ["repeat", ep.host, ep.port, ep.hosthdr, svc.bulk_path,
                              BULK_BYTES, 0], 60)   # 0 s: exactly one download
    results["targets"]["burrow-inspect"]["store_filled_mib"] = FILL_DOWNLOADS * BULK_BYTES / 2**20
    log(f"fill   burrow-inspect   {FILL_DOWNLOADS} x {BULK_BYTES / 2**20:g} MiB captured")


def measure_hold(args, results, endpoints, svc):
    """VmRSS of each path's proxies before and while args.hold idle keep-alive
    connections (one GET / each) are open through it; with --fill-store, the
    inspecting agent's capture store is filled first."""
    for t in HOLD_TARGETS:
        ep = endpoints.get(t)
        if not ep:
            continue
        if args.fill_store and t == "burrow-inspect":
            try:
                fill_store(args, results, ep, svc)
            except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
                results["errors"][f"{t} fill-store"] = str(e)
                warn(f"{t} fill-store: {e}")
        before = {name: round(status_kib(pid) / 1024, 1) for name, pid in ep.pids.items()}
        try:
            held, rss = hold_connections(args.tools, ["hold-http", ep.host, ep.port, ep.hosthdr,
                                                      args.hold], ep.pids, settle=1.0)
        except (BenchError, OSError, ValueError) as e:
            results["errors"][f"{t} hold"] = str(e)
            warn(f"{t} hold: {e}")
            continue
        results["targets"].setdefault(t, {})["hold"] = dict(
            held, connections=args.hold, rss_before_mib=before, rss_mib=rss)
        log(f"hold   {t:16s} {held['held']} connections held ({held['errors']} errors), "
            + ", ".join(f"{n} {before[n]} -> {rss[n]} MiB" for n in rss))
        time.sleep(1)   # the closed connections' TIME_WAIT and the proxies' cleanup


# ---------------------------------------------------------------------------
# report


def figures(results, t):
    """(rps, p50 ms, p99 ms, bulk MB/s) of a target; None where not measured."""
    tr = results["targets"].get(t, {})
    rps, bulk = tr.get("rps") or {}, tr.get("bulk") or {}
    return rps.get("rps"), rps.get("p50_ms"), rps.get("p99_ms"), bulk.get("mb_per_s")


def verdict(value, target, higher_better):
    if value is None:
        return "n/a"
    ok = value >= target if higher_better else value <= target
    return "OK" if ok else ("BELOW" if higher_better else "OVER")


def short_reason(err):
    """One line of an error: its first line and, when there is one, the log line quoted last."""
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    quoted = [line.lstrip("| ").strip() for line in lines[1:] if line.startswith("|")]
    return lines[0].rstrip(":") + (f": {quoted[-1]}" if quoted else "")


def report_table(results, targets):
    print(f"  {'path':18s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'bulk MB/s':>10s}")
    for t in targets:
        rps, p50, p99, bulk = figures(results, t)
        line = f"  {t:18s} {fmt(rps):>8s} {fmt(p50):>8s} {fmt(p99):>8s} {fmt(bulk):>10s}"
        err = results["errors"].get(t)
        if err:
            line += f"   (not measured: {short_reason(err)})"
        print(line)


def report_targets(results):
    ins, hp, ssh, noins = (figures(results, t) for t in ("burrow-inspect", "haproxy", "ssh",
                                                         "burrow-noinspect"))

    def cost(a, b):
        r = ratio(a, b)
        return None if r is None else 1 - r
    values = {"rps_ssh": ratio(ins[0], ssh[0]), "rps_haproxy": ratio(ins[0], hp[0]),
              "p99_ssh": ratio(ins[2], ssh[2]), "bulk_haproxy": ratio(ins[3], hp[3]),
              "cost_rps": cost(ins[0], noins[0]), "cost_bulk": cost(ins[3], noins[3])}
    rows = [(label, values[key], op, target) for label, key, op, target in TARGET_ROWS]
    hold = results["targets"].get("burrow-inspect", {}).get("hold")
    if hold and "burrowd" in hold["rss_mib"]:
        rows.append((f"burrowd MiB, {hold['connections']} idle conns (inspect)",
                     hold["rss_mib"]["burrowd"], "<=", HOLD_EDGE_MIB))
    print("  Targets:")
    for label, value, op, target in rows:
        shown = "n/a" if value is None else f"{value:.2f}"
        v = verdict(value, target, op == ">=")
        print(f"    {label + ':':48s} {shown:>6s}  (target {op} {target:.2f}: {v})")
    captured = results["targets"].get("burrow-inspect", {}).get("captured_requests")
    if captured == 0:
        print("    (burrow-inspect captured no requests: inspection was not on, so the "
              "inspection cost says nothing)")


def report_context(results, targets):
    base = figures(results, "direct")
    hp = figures(results, "haproxy")
    lines = []
    for t in targets:
        if t == "direct":
            continue
        f = figures(results, t)
        shown = [("req/s", ratio(f[0], base[0]), "direct"), ("p99", ratio(f[2], base[2]), "direct"),
                 ("bulk", ratio(f[3], base[3]), "direct")]
        if t != "haproxy":
            shown += [("req/s", ratio(f[0], hp[0]), "haproxy"),
                      ("bulk", ratio(f[3], hp[3]), "haproxy")]
        parts = [f"{what} {r:.2f}x {base_name}" for what, r, base_name in shown if r is not None]
        if parts:
            lines.append(f"    {t + ':':18s} " + ", ".join(parts))
    if lines:
        print("  Context (figure of the path / figure of the baseline):")
        print("\n".join(lines))


def by_program(figures):
    """{process name: (a, b)} summed per program: sshd.1 and sshd.2 are sshd."""
    groups = {}
    for name, (a, b) in figures.items():
        g = groups.setdefault(name.split(".")[0], [0.0, 0.0])
        g[0] += a
        g[1] += b
    return groups


def report_memory(results, targets):
    lines = []
    for t in targets:
        mem = results["targets"].get(t, {}).get("memory")
        if not mem:
            continue
        groups = by_program({n: (m["rss_mib"], m["hwm_mib"]) for n, m in mem.items()})
        total = sum(g[0] for g in groups.values())
        parts = [f"{n} {fmt(g[0])} (peak {fmt(g[1])})" for n, g in groups.items()]
        lines.append(f"    {t + ':':18s} " + " + ".join(parts) + f" = {fmt(total)} MiB")
    if lines:
        print("  Memory after the req/s run (VmRSS, peak VmHWM, MiB):")
        print("\n".join(lines))


def report_hold(results, targets):
    lines = []
    for t in targets:
        hold = results["targets"].get(t, {}).get("hold")
        if not hold:
            continue
        groups = by_program({n: (hold["rss_before_mib"].get(n, 0.0), mib)
                             for n, mib in hold["rss_mib"].items()})
        parts = [f"{n} {fmt(g[0])} -> {fmt(g[1])}" for n, g in groups.items()]
        lines.append(f"    {t + ':':18s} " + ", ".join(parts)
                     + f"   ({hold['held']} held, {hold['errors']} failed)")
    ins = results["targets"].get("burrow-inspect", {})
    if ins.get("store_filled_mib") and ins.get("hold", {}).get("rss_mib", {}).get("burrow"):
        agent = ins["hold"]["rss_mib"]["burrow"]
        lines.append(f"    burrow-inspect's agent after {fmt(ins['store_filled_mib'])} MiB "
                     f"captured (store full at {STORE_MIB} MiB): {fmt(agent)} MiB = the store "
                     f"+ {fmt(agent - STORE_MIB)} MiB")
    if lines:
        n = next(results["targets"][t]["hold"]["connections"] for t in targets
                 if results["targets"].get(t, {}).get("hold"))
        print(f"  Memory with {n} idle keep-alive connections (VmRSS MiB, before -> while "
              "they are open; one GET / on each):")
        print("\n".join(lines))


def report(results, cfg, svc, targets):
    rounds = cfg["rounds"]
    how = "one run" if rounds == 1 else f"median of {rounds} rounds"
    print()
    print(f"HTTP results, local service {svc} (loopback, {how}; wrk -t{cfg['threads']} "
          f"-c{cfg['connections']} -d{cfg['seconds']:g}s, {SMALL_BODY}-byte responses, "
          f"keep-alive; bulk = {BULK_BYTES / 2**20:g} MiB downloads repeated on one keep-alive "
          f"connection for {cfg['seconds']:g}s)")
    print()
    report_table(results, targets)
    print()
    report_targets(results)
    print()
    report_context(results, targets)
    print()
    report_memory(results, targets)
    print()
    report_hold(results, targets)
    for t in targets:
        nc = results["targets"].get(t, {}).get("newconn")
        if nc:
            print(f"\n  {t}, a new connection and TLS handshake per request (wrk with "
                  f"Connection: close): {fmt(nc.get('rps'))} req/s, p99 {fmt(nc.get('p99_ms'))} ms")
    other = {k: v for k, v in results["errors"].items() if k not in targets}
    for k, v in other.items():
        print(f"  {k}: {short_reason(v)}")


# ---------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench/run http", description=__doc__.splitlines()[0])
    add_common_args(ap, TARGETS, rounds=3, seconds=5.0, prefix=PREFIX)
    ap.add_argument("--quick", action="store_true",
                    help="about a minute per service: same as --rounds 1 --seconds 3")
    ap.add_argument("--service", choices=SERVICES + ("both",), default="nginx",
                    help="the local service behind every path: nginx (Debian nginx-light), "
                    "bench/httpd.c, or both, one whole measurement each (default nginx)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--connections", type=int, default=50,
                    help="wrk connections (default 50)")
    ap.add_argument("--hold", type=int, default=1000, metavar="N",
                    help="after the rounds, hold N idle keep-alive connections through each "
                    "proxy and read its memory (default 1000; 0: skip)")
    ap.add_argument("--fill-store", action="store_true",
                    help="before holding the connections, fill burrow-inspect's 50 MiB "
                    "capture store with 10 MiB downloads, so its agent's RSS is read with "
                    "a full store")
    ap.add_argument("--haproxy-threads", type=int, default=2, help="HAProxy nbthread (default 2)")
    ap.add_argument("--server-threads", type=int, default=2,
                    help="threads of bench/httpd.c (default 2)")
    ap.add_argument("--nginx-workers", type=int, default=2,
                    help="nginx worker_processes (default 2)")
    ap.add_argument("--agent-arg", action="append", default=[],
                    help="extra argument for `burrow http` (repeatable)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 3.0
    if args.hold < 0:
        ap.error("--hold must be 0 or more")
    targets = parse_targets(ap, args, TARGETS)
    args.build_dir = os.path.abspath(args.build_dir)
    services = SERVICES if args.service == "both" else (args.service,)

    per_round = 2 * len(targets) * (args.seconds + 2)
    per_service = TIME_BUDGET_S + max(0.0, per_round * args.rounds - 120) + (60 if args.hold else 0)
    results = new_results("http", {
        "service": args.service, "seconds": args.seconds, "rounds": args.rounds,
        "threads": args.threads, "connections": args.connections, "bulk_bytes": BULK_BYTES,
        "hold": args.hold, "fill_store": args.fill_store, "haproxy_threads": args.haproxy_threads,
        "server_threads": args.server_threads, "nginx_workers": args.nginx_workers,
        "mb": "10^6 bytes", "latency": "ms, from wrk --latency"})
    del results["targets"]   # per service, under results["services"][name]["targets"]
    results["services"] = {}
    return run_bench(args, results, per_service * len(services),
                     lambda procs, workdir: run(args, services, targets, results, procs,
                                                workdir),
                     prefix=PREFIX)


def run_service(args, name, targets, res, procs, workdir):
    """The whole measurement with the local service `name`; 1 if a burrow path is missing."""
    svc = start_service(procs, args, workdir, name)
    res["host"]["service"] = svc.version
    log(f"local service: {name} ({svc.version}) on 127.0.0.1:{svc.port}")
    endpoints = start_targets(procs, args, workdir, res, targets, svc)
    measure_all(args, res, endpoints, svc)
    if args.hold or args.fill_store:
        measure_hold(args, res, endpoints, svc)
    missing = [t for t in targets if t in BURROW_TARGETS and t not in endpoints]
    return 1 if missing else 0


def run(args, services, targets, results, procs, workdir):
    args.wrk = ensure_package("wrk", "wrk")
    args.tools = compile_tools(workdir, ("load",))
    if "httpd" in services:
        args.tools.update(compile_tools(workdir, ("httpd",), ["-luv", "-lhttp_parser"]))
    status = 0
    for name in services:
        # Each service's processes, configs and logs in a directory of their own;
        # all of them are stopped before the next service starts.
        res = results["services"][name] = {"host": {}, "targets": {}, "errors": {}}
        sdir = os.path.join(workdir, f"service-{name}")
        os.makedirs(sdir)
        procs.workdir = sdir
        mark = len(procs.procs)
        try:
            status |= run_service(args, name, targets, res, procs, sdir)
        except BenchError as e:
            res["errors"]["service"] = str(e)
            warn(f"{name}: not measured: {e}")
            status = 1
        finally:
            for proc in reversed(procs.procs[mark:]):
                procs.stop(proc)
        report(res, results["config"], name, targets)
    return status
