#!/usr/bin/env python3
"""Allocation-failure torture for the cmocka unit tests (curl's torture mode).

For each unit test binary and each of its cmocka test cases: run the case once
counting the allocating calls (K), then once per chosen N in 1..K with the Nth
call failing (tests/oom/failalloc.c, loaded with LD_PRELOAD). A run may pass or
fail a cmocka check (the out-of-memory made an operation fail: fine), but must
not crash (a signal, cmocka's "Test failed with exception"), trip an assert(),
corrupt the heap (glibc's messages) or hang (the per-run timeout).

Which N: every N when K <= --max-runs, otherwise --max-runs values spread
evenly over 1..K (N_i = 1 + i*(K-1)//(max_runs-1)); the choice depends only on
K and --max-runs, so a run is reproducible. --full tries every N.

Allocations made from inside OpenSSL are not counted (see IGNORE).

cmocka 1.1's assert_string_equal() strcmp()s its arguments, so a check on a
string that an allocation failure left NULL segfaults inside cmocka; when gdb
shows the crash there, the run counts as a failed check, not as a crash.

Each failure is printed with the command that reproduces it, the stack of the
allocation that was failed and, when gdb is installed, the crash's backtrace.
--junit writes a JUnit report: one test case per binary and cmocka case.

  tests/oom/torture.py --build build [--full] [--max-runs N] [BINARY...]
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

# The binaries scripts/test tortures, and how many N per case: chosen so that
# the whole suite takes about two minutes on two cores (docs/testing.md).
CI_BINARIES = ["conf", "tunnel_def", "capture", "api_json", "api_requests", "control",
               "yamux", "base", "replay", "config", "error", "log", "metrics", "httpd"]
CI_MAX_RUNS = 24

# Allocations made by OpenSSL's own code are neither counted nor failed: loading
# the CA store alone makes some 236000 per agent, which would bury burrow's few
# hundred, and what OpenSSL does when its internal allocations fail is
# OpenSSL's business (--openssl includes them).
IGNORE = "libcrypto.so,libssl.so"

# Crashes inside a library that burrow cannot prevent: (a regular expression
# over the frames of the failed allocation's stack, the kinds of failure, why).
EXCLUDE = [
    (r"json_load[sbf]", {"assert", "exception", "signal", "heap"},
     "jansson 2.14's parser asserts (load.c lex_scan_string: Assertion `0'), "
     "dereferences NULL or corrupts the heap inside json_load*() when one of its own "
     "allocations fails"),
    (r"uv_loop_init", {"signal", "exception"},
     "libuv 1.44's uv_loop_init() aborts when uv_signal_init() cannot allocate"),
]

CRASH_PATTERNS = [
    (re.compile(r"Test failed with exception: (.*)"), "exception"),
    (re.compile(r"Assertion `.*' failed"), "assert"),
    (re.compile(r"(double free|free\(\): invalid|malloc\(\): |corrupted )"), "heap"),
]
RUN_RE = re.compile(r"^\[ RUN      \] (\S+)", re.M)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build", help="meson build directory")
    p.add_argument("--full", action="store_true", help="every N of every case")
    p.add_argument("--max-runs", type=int, default=CI_MAX_RUNS,
                   help="N values per test case (default %(default)s)")
    p.add_argument("--case", help="only this cmocka case (a cmocka filter pattern)")
    p.add_argument("--only", type=int, help="only this N")
    p.add_argument("--after", action="store_true",
                   help="fail every call from N on, not just the Nth")
    p.add_argument("--timeout", type=float, default=0,
                   help="per-run timeout in seconds (default: 10 s plus 5x the counting run)")
    p.add_argument("--budget", type=float, default=0,
                   help="stop starting runs after this many seconds (skipped ones are reported)")
    p.add_argument("--openssl", action="store_true",
                   help="count and fail OpenSSL's own allocations too (ignored by default)")
    p.add_argument("--no-gdb", action="store_true", help="no gdb backtrace of crashes")
    p.add_argument("--junit", help="write a JUnit XML report here")
    p.add_argument("binaries", nargs="*",
                   help="unit test names (config) or paths; default: the CI list")
    return p.parse_args()


class Torture:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.lib = os.path.join(self.build, "tests", "oom", "libfailalloc.so")
        if not os.path.exists(self.lib):
            sys.exit(f"torture: {self.lib} not built (ninja -C {args.build})")
        self.tmp = tempfile.mkdtemp(prefix="bw-oom-")
        self.started = time.monotonic()
        self.cases = []      # (binary, case, K, runs, seconds, failures, skipped)
        self.gdb = None if args.no_gdb else shutil.which("gdb")

    def path_of(self, name):
        if os.sep in name:
            return os.path.abspath(name)
        return os.path.join(self.build, "tests", "unit", "test_" + name)

    def env(self, case, **extra):
        env = dict(os.environ)
        env.pop("CMOCKA_TEST_ABORT", None)
        env.update(LD_PRELOAD=self.lib, BW_OOM_TEST=case)
        if not self.args.openssl:
            env.update(BW_FAILALLOC_IGNORE=IGNORE)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, exe, env, timeout):
        """Returns (returncode or None on timeout, output)."""
        proc = subprocess.Popen([exe], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.tmp)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out.decode("utf-8", "replace")
        except BaseException:  # interrupted: take the test down with us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise

    def list_cases(self, exe):
        rc, out = self.run(exe, dict(os.environ), 300)
        return RUN_RE.findall(out)

    def count(self, exe, case):
        path = os.path.join(self.tmp, "count")
        if os.path.exists(path):
            os.unlink(path)
        t0 = time.monotonic()
        rc, out = self.run(exe, self.env(case, BW_FAILALLOC_COUNT=path), 300)
        took = time.monotonic() - t0
        try:
            with open(path) as f:
                return int(f.read()), took
        except (OSError, ValueError):
            print(f"torture: {exe} {case}: no allocation count (exit {rc})\n{out[-2000:]}")
            return 0, took

    def choose(self, k):
        if self.args.only:
            return [self.args.only] if self.args.only <= k else []
        m = self.args.max_runs
        if self.args.full or k <= m:
            return list(range(1, k + 1))
        if m <= 1:
            return [1]
        return sorted({1 + i * (k - 1) // (m - 1) for i in range(m)})

    @staticmethod
    def classify(rc, out):
        if rc is None:
            return "hang", "timed out"
        for pattern, kind in CRASH_PATTERNS:
            m = pattern.search(out)
            if m:
                return kind, m.group(0)
        if rc < 0:
            return "signal", signal.Signals(-rc).name
        return None, ""

    def repro(self, exe, case, n):
        env = f"LD_PRELOAD={self.lib} BW_OOM_TEST={shlex.quote(case)} BW_FAILALLOC_FAIL={n}"
        if self.args.after:
            env += " BW_FAILALLOC_AFTER=1"
        if not self.args.openssl:
            env += f" BW_FAILALLOC_IGNORE={IGNORE}"
        return env, exe

    def alloc_trace(self, path):
        """The failed allocation's stack, frames of the allocator dropped."""
        try:
            with open(path) as f:
                lines = [ln.strip() for ln in f]
        except OSError:
            return []
        frames = [ln for ln in lines if "libfailalloc" not in ln]
        out = []
        for ln in frames[:12]:
            m = re.match(r"(.+?)\((.*?)\+?(0x[0-9a-f]+)?\)\s*\[(0x[0-9a-f]+)\]", ln)
            if m and not m.group(2) and m.group(3):
                where = subprocess.run(["addr2line", "-f", "-C", "-p", "-e", m.group(1),
                                        m.group(3)], capture_output=True, text=True).stdout
                ln = f"{os.path.basename(m.group(1))}: {where.strip()}"
            out.append(ln)
        return out

    def gdb_trace(self, exe, case, n):
        env, _ = self.repro(exe, case, n)
        cmd = [self.gdb, "-nx", "-batch", "-ex", "set pagination off",
               "-ex", "set startup-with-shell off"]
        for kv in env.split(" "):
            cmd += ["-ex", f"set environment {kv.replace('=', ' ', 1)}"]
        cmd += ["-ex", "run", "-ex", "bt 15", exe]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                 cwd=self.tmp, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return []
        return [ln for ln in res.stdout.splitlines() if re.match(r"#\d+ ", ln)]

    @staticmethod
    def excluded(kind, trace):
        for frame, kinds, why in EXCLUDE:
            if kind in kinds and any(re.search(frame, ln) for ln in trace):
                return why
        return None

    def over_budget(self):
        b = self.args.budget
        return b > 0 and time.monotonic() - self.started > b

    def torture_case(self, exe, case):
        name = f"{os.path.basename(exe)}::{case}"
        k, took = self.count(exe, case)
        ns = self.choose(k)
        timeout = self.args.timeout or 10 + 5 * took
        trace_path = os.path.join(self.tmp, "trace")
        t0 = time.monotonic()
        failures, runs, skipped, excluded = [], 0, 0, []
        for n in ns:
            if self.over_budget():
                skipped = len(ns) - runs
                break
            if os.path.exists(trace_path):
                os.unlink(trace_path)
            extra = {"BW_FAILALLOC_FAIL": n, "BW_FAILALLOC_TRACE": trace_path}
            if self.args.after:
                extra["BW_FAILALLOC_AFTER"] = 1
            rc, out = self.run(exe, self.env(case, **extra), timeout)
            runs += 1
            kind, what = self.classify(rc, out)
            if kind is None:
                continue
            trace = self.alloc_trace(trace_path)
            why = self.excluded(kind, trace)
            bt = self.gdb_trace(exe, case, n) if self.gdb and kind != "hang" else []
            if kind == "exception" and any("_assert_string_equal" in ln for ln in bt[:3]):
                continue  # a failed check: cmocka 1.1 strcmp()s a NULL string
            if why:
                excluded.append((n, why))
                continue
            failures.append((n, kind, what, trace, bt))
        secs = time.monotonic() - t0
        self.report(exe, case, name, k, runs, secs, failures, skipped, excluded)
        self.cases.append((os.path.basename(exe), case, k, runs, secs, failures, skipped))

    def report(self, exe, case, name, k, runs, secs, failures, skipped, excluded):
        status = "ok" if not failures else f"{len(failures)} FAILED"
        extra = f", {skipped} skipped (budget)" if skipped else ""
        extra += f", {len(excluded)} excluded" if excluded else ""
        print(f"{name}: K={k} runs={runs} {secs:.1f}s {status}{extra}", flush=True)
        for n, why in excluded[:1]:
            print(f"    excluded N={n}: {why}")
        for i, (n, kind, what, trace, bt) in enumerate(failures):
            env, _ = self.repro(exe, case, n)
            print(f"  N={n} {kind}: {what}")
            if i >= 3:
                continue  # the first few in full; the rest are usually the same site
            print(f"    reproduce: env {env} {exe}")
            print(f"    under gdb: gdb -ex 'set startup-with-shell off' "
                  + " ".join(f"-ex 'set environment {kv.replace('=', ' ', 1)}'"
                             for kv in env.split(" ")) + f" -ex run {exe}")
            print("    failed allocation:")
            for ln in trace:
                print(f"      {ln}")
            if bt:
                print("    crash (gdb):")
                for ln in bt:
                    print(f"      {ln}")
        sys.stdout.flush()

    def junit(self, path):
        suite = ET.Element("testsuite", name="oom")
        for binary, case, k, runs, secs, failures, skipped in self.cases:
            tc = ET.SubElement(suite, "testcase", classname=f"oom.{binary}", name=case,
                               time=f"{secs:.2f}")
            if failures:
                text = "\n".join(f"N={n} {kind}: {what}" for n, kind, what, _, _ in failures)
                ET.SubElement(tc, "failure", message=f"{len(failures)} N crash/hang").text = text
            elif runs == 0 and skipped:
                ET.SubElement(tc, "skipped", message="time budget")
        suite.set("tests", str(len(self.cases)))
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t = Torture(args)
    names = args.binaries or CI_BINARIES
    try:
        for name in names:
            exe = t.path_of(name)
            if not os.access(exe, os.X_OK):
                sys.exit(f"torture: no test binary {exe}")
            t0 = time.monotonic()
            cases = [args.case] if args.case else t.list_cases(exe)
            for case in cases:
                t.torture_case(exe, case)
            mine = [c for c in t.cases if c[0] == os.path.basename(exe)]
            print(f"== {os.path.basename(exe)}: {len(mine)} cases, "
                  f"K={sum(c[2] for c in mine)}, runs={sum(c[3] for c in mine)}, "
                  f"{time.monotonic() - t0:.1f}s, "
                  f"{sum(len(c[5]) for c in mine)} failing runs", flush=True)
    finally:
        if args.junit:
            t.junit(args.junit)
        shutil.rmtree(t.tmp, ignore_errors=True)
    bad = sum(1 for c in t.cases if c[5])
    print(f"torture: {len(t.cases)} cases, {sum(c[3] for c in t.cases)} runs, "
          f"{bad} failing, {time.monotonic() - t.started:.0f}s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
