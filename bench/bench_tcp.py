"""Benchmark burrow's tcp tunnel against a direct connection and one HAProxy hop.

Everything runs on loopback in this one invocation, so the baselines and
burrow are measured on the same machine, in the same conditions, interleaved.
See bench/README.md for what is measured and how to read the output.
"""

import argparse
import os
import re
import time

from benchlib import (BenchError, Rounds, add_common_args, add_stream_args, burrow_bins,
                      compile_tools, fmt, free_port, hold_connections, log, logfmt, new_results,
                      parse_targets, raise_nofile, ratio, rss_kib, run_bench, run_load,
                      start_each, start_edge, start_haproxy, wait_for_log, warn)

TARGETS = ("direct", "haproxy", "burrow")
RSS_TARGET_MIB = 24.0
TIME_BUDGET_S = 300


# ---------------------------------------------------------------------------
# setup


def start_sink(procs, tools, threads):
    proc = procs.start("sink", [tools["sink"], "-t", str(threads)])
    m = wait_for_log(proc, r"^port=(\d+)$", 5)
    return proc, int(m.group(1))


def start_burrow(procs, workdir, build_dir, backend_port, extra_agent_args):
    _, burrow = burrow_bins(build_dir)
    edge, edge_addr, ca = start_edge(procs, workdir, build_dir)
    agent = procs.start("burrow", [burrow, "tcp", str(backend_port), "--server-addr", edge_addr,
                                   "--root-cas", ca, "--log", "stdout",
                                   "--web-addr", f"127.0.0.1:{free_port()}"] + extra_agent_args)
    m = wait_for_log(agent, r'^.*msg="started tunnel".*$', 15)
    url = logfmt(m.group(0), "url") or ""
    um = re.match(r"tcp://([^:/]+):(\d+)", url)
    if not um:
        raise BenchError(f"cannot parse the tunnel url {url!r}")
    host = um.group(1)
    if host == "localhost":
        host = "127.0.0.1"
    return edge, agent, host, int(um.group(2)), url


# ---------------------------------------------------------------------------
# measurements


# ---------------------------------------------------------------------------
# report


def report(results, targets):
    rows = [
        ("tcp single-stream MB/s", "bulk1", "mb_per_s", True),
        (f"tcp {results['config']['streams']}-stream MB/s", "bulkN", "mb_per_s", True),
        ("tcp connections/s", "rate", "conns_per_s", True),
        ("tcp connect+echo p99 ms", "rate", "p99_ms", False),
    ]
    print()
    rounds = results["config"].get("rounds", 1)
    how = "one run" if rounds == 1 else f"median of {rounds} rounds"
    print(f"Results (loopback, {how}; ratios against baselines measured in the same run)")
    print()
    for label, test, key, higher_better in rows:
        vals = {t: (results["targets"].get(t, {}).get(test) or {}).get(key) for t in targets}
        parts = [f"{t} {fmt(vals[t])}" for t in targets]
        line = f"  {label + ':':28s} " + ", ".join(parts)
        b = vals.get("burrow")
        if b is not None:
            extra = []
            for base in ("haproxy", "direct"):
                r = ratio(b, vals.get(base))
                if r is not None:
                    extra.append(f"{r:.2f}x {base}")
            if extra:
                line += f" (burrow = {', '.join(extra)})"
        print(line)
    print()
    hold = results["config"]["hold"]
    print(f"  RSS with {hold} held connections:")
    h = results["targets"].get("haproxy", {}).get("hold")
    if h:
        print(f"    haproxy:          {fmt(h['rss_mib'].get('haproxy'))} MiB"
              f"  (idle {fmt(h['idle_rss_mib'].get('haproxy'))} MiB, held {h['held']})")
    b = results["targets"].get("burrow", {}).get("hold")
    if b:
        total = sum(b["rss_mib"].values())
        verdict = "OK" if total <= RSS_TARGET_MIB else "OVER"
        print(f"    burrowd + burrow: {fmt(b['rss_mib'].get('burrowd'))} + "
              f"{fmt(b['rss_mib'].get('burrow'))} = {fmt(total)} MiB"
              f"  (target <= {RSS_TARGET_MIB:.0f} MiB: {verdict}; idle "
              f"{fmt(b['idle_rss_mib'].get('burrowd'))} + {fmt(b['idle_rss_mib'].get('burrow'))}"
              f" MiB, held {b['held']})")
    elif "burrow" in targets:
        print("    burrow: not measured")
    bulk1 = results["targets"].get("burrow", {}).get("bulk1", {})
    hp1 = results["targets"].get("haproxy", {}).get("bulk1", {})
    if bulk1.get("mb_per_s") and hp1.get("mb_per_s"):
        r = bulk1["mb_per_s"] / hp1["mb_per_s"]
        print()
        print(f"  single-stream bulk vs HAProxy: {r:.2f}x "
              f"(target >= 0.50x: {'OK' if r >= 0.5 else 'BELOW'})")
    errors = results.get("errors") or {}
    if errors:
        print()
        for t, e in errors.items():
            print(f"  {t}: NOT MEASURED: {e.splitlines()[0]}")


# ---------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench/run [tcp]", description=__doc__.splitlines()[0])
    add_common_args(ap, TARGETS, rounds=1, seconds=5.0)
    add_stream_args(ap, "concurrent workers for the connection rate")
    ap.add_argument("--hold", type=int, default=1000,
                    help="connections held open for the RSS measurement (default 1000)")
    ap.add_argument("--sink-threads", type=int, default=2,
                    help="threads of the local service (default 2)")
    ap.add_argument("--agent-arg", action="append", default=[],
                    help="extra argument for `burrow tcp` (repeatable)")
    args = ap.parse_args(argv)
    targets = parse_targets(ap, args, TARGETS)
    args.build_dir = os.path.abspath(args.build_dir)

    per_round = 3 * 3 * (args.seconds + args.warmup + 2)
    budget = TIME_BUDGET_S + max(0.0, per_round * args.rounds - 60)
    nofile = raise_nofile(args.hold * 4 + 1024)
    if nofile < args.hold * 2 + 100:
        warn(f"RLIMIT_NOFILE is {nofile}: holding {args.hold} connections may fail")
    results = new_results("tcp", {
        "seconds": args.seconds, "warmup": args.warmup, "streams": args.streams,
        "workers": args.workers, "hold": args.hold, "rounds": args.rounds,
        "haproxy_threads": args.haproxy_threads, "sink_threads": args.sink_threads,
        "mb": "10^6 bytes"})
    return run_bench(args, results, budget,
                     lambda procs, workdir: run(args, targets, results, procs, workdir))


def start_targets(args, targets, results, procs, workdir, sink_port):
    """Start the proxies; returns {target: (host, port, {name: pid} of the proxy processes)}."""

    def start(t):
        if t == "direct":
            ep = ("127.0.0.1", sink_port, {})
        elif t == "haproxy":
            hp, hp_port, version = start_haproxy(procs, workdir, sink_port,
                                                 args.haproxy_threads, args.hold * 2 + 1000)
            results["host"]["haproxy"] = version
            ep = ("127.0.0.1", hp_port, {"haproxy": hp.pid})
        else:
            edge, agent, host, port, url = start_burrow(procs, workdir, args.build_dir,
                                                        sink_port, args.agent_arg)
            results["host"]["burrow_url"] = url
            ep = (host, port, {"burrowd": edge.pid, "burrow": agent.pid})
        # Sanity: each endpoint must echo before anything is measured.
        if run_load(args.tools, ["hold", ep[0], ep[1], 1], 15)["held"] != 1:
            raise BenchError("not working: echo through it failed")
        return ep

    return start_each(results, targets, start)


def run(args, targets, results, procs, workdir):
    args.tools = compile_tools(workdir, ("sink", "load"))
    _, sink_port = start_sink(procs, args.tools, args.sink_threads)
    endpoints = start_targets(args, targets, results, procs, workdir, sink_port)
    order = [t for t in TARGETS if t in endpoints]
    for t in order:
        results["targets"][t] = {}
    load_timeout = args.seconds + args.warmup + 30
    summary_key = {"bulk1": "mb_per_s", "bulkN": "mb_per_s", "rate": "conns_per_s"}
    rounds = Rounds(results, args.rounds)

    def measure(test, argv, t, rnd):
        host, port, pids = endpoints[t]
        rounds.measure(t, test, summary_key[test], pids,
                       lambda: run_load(args.tools, [argv[0], host, port] + argv[1:],
                                        load_timeout), rnd)

    # Interleaved: each measurement runs against every target in turn, and
    # with --rounds the whole sequence repeats; the median run is reported.
    for rnd in range(1, args.rounds + 1):
        for t in order:
            measure("bulk1", ["bulk", 1, args.seconds, args.warmup], t, rnd)
        for t in order:
            measure("bulkN", ["bulk", args.streams, args.seconds, args.warmup], t, rnd)
        for t in order:
            measure("rate", ["rate", args.workers, args.seconds], t, rnd)
            time.sleep(1)   # let TIME_WAIT sockets of the previous target age a little
    rounds.finish(summary_key)

    for t in order:
        measure_hold(args, results, t, endpoints[t])
    report(results, order)
    return 1 if "burrow" in targets and "burrow" not in endpoints else 0


def measure_hold(args, results, t, endpoint):
    host, port, pids = endpoint
    if not pids:
        return
    idle = {name: round(rss_kib(pid) / 1024, 1) for name, pid in pids.items()}
    try:
        held, rss = hold_connections(args.tools, ["hold", host, port, args.hold], pids,
                                     settle=1.0)
        results["targets"][t]["hold"] = {"held": held["held"], "errors": held["errors"],
                                         "rss_mib": rss, "idle_rss_mib": idle}
        log(f"hold   {t:16s} {held['held']} connections held, RSS "
            + " + ".join(f"{n} {v} MiB" for n, v in rss.items()))
    except (BenchError, OSError, ValueError) as e:
        results["errors"][f"{t} hold"] = str(e)
        warn(f"{t} hold: {e}")
