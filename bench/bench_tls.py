"""Benchmark burrow's tls tunnel (passthrough) against a direct TLS connection
and one HAProxy hop routing on SNI.

The local service terminates TLS itself (bench/tls_sink.c), so every target
carries the same end-to-end TLS session and the proxies only move bytes:
- direct:  load --tls  ->  tls_sink
- haproxy: load --tls  ->  HAProxy `mode tcp`, req.ssl_sni routing  ->  tls_sink
- burrow:  load --tls  ->  burrowd's HTTPS port (SNI peek)  ->  burrow tls  ->  tls_sink
See bench/README.md for what is measured and how to read the output.
"""

import argparse
import os
import re
import subprocess
import time

from benchlib import (BenchError, Rounds, add_common_args, add_stream_args, burrow_bins,
                      compile_tools, ensure_package, fmt, free_port, logfmt, new_results,
                      parse_targets, ratio, run_bench, run_load, start_each, start_edge,
                      wait_for_log, wait_port)

TARGETS = ("direct", "haproxy", "burrow")
SNI = "bench.localhost"
TIME_BUDGET_S = 300


def make_cert(workdir):
    """A throwaway P-256 certificate for the local service."""
    cert, key = os.path.join(workdir, "sink.crt"), os.path.join(workdir, "sink.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", f"/CN={SNI}"],
                   check=True, capture_output=True)
    return cert, key


def start_sink(procs, tools, cert, key):
    proc = procs.start("tls_sink", [tools["tls_sink"], cert, key])
    m = wait_for_log(proc, r"^port=(\d+)$", 5)
    return int(m.group(1))


def start_haproxy_sni(procs, workdir, backend_port, threads):
    """HAProxy as ngrok-style edges run it: read the ClientHello, route on SNI."""
    exe = ensure_package("haproxy", "haproxy", sbin=True)
    port = free_port()
    cfg = os.path.join(workdir, "haproxy-sni.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
    nbthread {threads}
    maxconn 4000

defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend public
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend sink if {{ req.ssl_sni -i {SNI} }}

backend sink
    server local 127.0.0.1:{backend_port}
""")
    subprocess.run([exe, "-c", "-q", "-f", cfg], check=True)
    proc = procs.start("haproxy", [exe, "-db", "-f", cfg])
    wait_port(proc, port, 10)
    v = subprocess.run([exe, "-v"], capture_output=True, text=True)
    return proc, port, v.stdout.splitlines()[0] if v.stdout else "?"


def start_burrow(procs, workdir, build_dir, backend_port):
    """burrowd with its HTTPS port, and `burrow tls` passing TLS through to the sink."""
    _, burrow = burrow_bins(build_dir)
    https_port = free_port()
    # The HTTP listener too goes on a free port: the default 8080 may be taken.
    edge, edge_addr, ca = start_edge(procs, workdir, build_dir,
                                     extra_args=["--https-addr", f"127.0.0.1:{https_port}",
                                                 "--http-addr", f"127.0.0.1:{free_port()}"])
    agent = procs.start("burrow", [burrow, "tls", str(backend_port), "--server-addr", edge_addr,
                                   "--root-cas", ca, "--log", "stdout",
                                   "--web-addr", f"127.0.0.1:{free_port()}"])
    m = wait_for_log(agent, r'^.*msg="started tunnel".*$', 15)
    url = logfmt(m.group(0), "url") or ""
    um = re.match(r"tls://([^:/]+)(?::(\d+))?", url)
    if not um:
        raise BenchError(f"cannot parse the tunnel url {url!r}")
    return edge, agent, um.group(1), int(um.group(2) or https_port), url


def start_targets(args, targets, results, procs, workdir, sink_port):
    """{target: (port, server name, {name: pid})}; all connect to 127.0.0.1."""

    def start(t):
        if t == "direct":
            ep = (sink_port, SNI, {})
        elif t == "haproxy":
            hp, port, version = start_haproxy_sni(procs, workdir, sink_port,
                                                  args.haproxy_threads)
            results["host"]["haproxy"] = version
            ep = (port, SNI, {"haproxy": hp.pid})
        else:
            edge, agent, name, port, url = start_burrow(procs, workdir, args.build_dir,
                                                        sink_port)
            results["host"]["burrow_url"] = url
            ep = (port, name, {"burrowd": edge.pid, "burrow": agent.pid})
        # Each must complete a handshake and echo first.
        r = run_load(args.tools, ["--tls", ep[1], "rate", "127.0.0.1", ep[0], 1, 0.3], 15)
        if not r["conns"]:
            raise BenchError("not working: no TLS connection through it completed")
        return ep

    return start_each(results, targets, start)


def report(results, targets):
    rows = [
        ("tls single-stream MB/s", "bulk1", "mb_per_s"),
        (f"tls {results['config']['streams']}-stream MB/s", "bulkN", "mb_per_s"),
        ("tls handshakes+echo/s", "rate", "conns_per_s"),
        ("tls connect+handshake p99 ms", "rate", "p99_ms"),
    ]
    rounds = results["config"].get("rounds", 1)
    how = "one run" if rounds == 1 else f"median of {rounds} rounds"
    print(f"\nResults (loopback, {how}; ratios against baselines measured in the same run)\n")
    for label, test, key in rows:
        vals = {t: (results["targets"].get(t, {}).get(test) or {}).get(key) for t in targets}
        line = f"  {label + ':':30s} " + ", ".join(f"{t} {fmt(vals[t])}" for t in targets)
        extra = [f"{r:.2f}x {base}" for base in ("haproxy", "direct")
                 if (r := ratio(vals.get("burrow"), vals.get(base))) is not None]
        if extra:
            line += f" (burrow = {', '.join(extra)})"
        print(line)
    b = (results["targets"].get("burrow", {}).get("bulk1") or {}).get("mb_per_s")
    h = (results["targets"].get("haproxy", {}).get("bulk1") or {}).get("mb_per_s")
    if b and h:
        print(f"\n  single-stream vs HAProxy: {b / h:.2f}x "
              f"(target >= 0.70x: {'OK' if b / h >= 0.7 else 'BELOW'})")
    for t, e in (results.get("errors") or {}).items():
        print(f"  {t}: NOT MEASURED: {e.splitlines()[0]}")


def run(args, targets, results, procs, workdir):
    args.tools = compile_tools(workdir, ("tls_sink", "load"))
    cert, key = make_cert(workdir)
    sink_port = start_sink(procs, args.tools, cert, key)
    endpoints = start_targets(args, targets, results, procs, workdir, sink_port)
    order = [t for t in TARGETS if t in endpoints]
    for t in order:
        results["targets"][t] = {}
    summary_key = {"bulk1": "mb_per_s", "bulkN": "mb_per_s", "rate": "conns_per_s"}
    rounds = Rounds(results, args.rounds)
    timeout = args.seconds + args.warmup + 30

    def measure(test, argv, t, rnd):
        port, name, pids = endpoints[t]
        rounds.measure(t, test, summary_key[test], pids,
                       lambda: run_load(args.tools, ["--tls", name, argv[0], "127.0.0.1", port]
                                        + argv[1:], timeout), rnd)

    for rnd in range(1, args.rounds + 1):   # interleaved, as in bench/run tcp
        for t in order:
            measure("bulk1", ["bulk", 1, args.seconds, args.warmup], t, rnd)
        for t in order:
            measure("bulkN", ["bulk", args.streams, args.seconds, args.warmup], t, rnd)
        for t in order:
            measure("rate", ["rate", args.workers, args.seconds], t, rnd)
            time.sleep(1)
    rounds.finish(summary_key)
    report(results, order)
    return 1 if "burrow" in targets and "burrow" not in endpoints else 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench/run tls", description=__doc__.splitlines()[0])
    add_common_args(ap, TARGETS, rounds=1, seconds=5.0)
    add_stream_args(ap, "concurrent clients of the handshake rate")
    args = ap.parse_args(argv)
    targets = parse_targets(ap, args, TARGETS)
    args.build_dir = os.path.abspath(args.build_dir)
    budget = TIME_BUDGET_S + max(0.0, 3 * 3 * (args.seconds + args.warmup + 2) * args.rounds - 60)
    results = new_results("tls", {
        "seconds": args.seconds, "warmup": args.warmup, "streams": args.streams,
        "workers": args.workers, "rounds": args.rounds, "sni": SNI,
        "haproxy_threads": args.haproxy_threads, "mb": "10^6 bytes"})
    return run_bench(args, results, budget,
                     lambda procs, workdir: run(args, targets, results, procs, workdir), "tls-")
