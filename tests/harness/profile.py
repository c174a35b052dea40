"""Where a request's CPU goes: Envoy CPU time per request for plain Envoy, a no-op Wasm filter,
each aimesh filter alone, the full chain and the chain with one filter left out, split into
time in Wasm code and time in Envoy (host calls, buffering, routing) by `perf`.

`python -m harness.profile` (part of `make bench`). All Envoys run at once, one worker each on
core 0; each round loads every one of them in turn (wrk, c=8, on core 1), and the figure is the
median over rounds, so a noisy neighbour shifts every row alike. Envoy's release binary has no
symbols: perf can name only "JIT code" (the filters, compiled by V8) and "envoy" (the rest,
V8's call wrappers included); `harness.bench_host` prices the host calls one by one.

Environment: PROFILE_ROUNDS (default 5), PROFILE_SECONDS (per measurement, default 2),
PROFILE_ONLY (comma list of row names).
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import bench, bench_chain, config, demo, paths, procs

ROUNDS = int(os.environ.get("PROFILE_ROUNDS", "5"))
SECONDS = int(os.environ.get("PROFILE_SECONDS", "2"))
KEY = "sk-aimesh-bench-" + "0" * 48


NATIVE_BUFFER = {
    "name": "envoy.filters.http.buffer",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                     "max_request_bytes": 1 << 20},
}


def systems(mock_port: int) -> dict[str, dict]:
    cluster = config.cluster("local-mock", mock_port)
    cfgs = demo.filter_configs(KEY, unlimited=True)
    full = demo.demo_config(KEY, mock_port, unlimited=True, chain=False)
    out = {
        "plain envoy": config.gateway([], [cluster]),
        # Envoy's own buffer filter holds the whole request body the way the filters' pause does,
        # in native code: what waiting for the body costs without a VM.
        "native buffer filter": config.gateway([NATIVE_BUFFER], [cluster]),
        "no-op wasm filter": config.gateway(
            [config.wasm_filter("probe", {}, wasm_path=str(paths.PROBE_WASM))], [cluster]),
    }
    for name in paths.FILTERS:
        out[f"{name} alone"] = config.gateway([config.wasm_filter(name, cfgs[name])], [cluster])
    out["full chain"] = full
    out["one-filter chain"] = demo.demo_config(KEY, mock_port, unlimited=True, chain=True)
    for name in paths.FILTERS:
        out[f"chain without {name}"] = bench_chain.without(full, name)
    return out


def jit_share(pid: int, seconds: int) -> float | None:
    """Fraction of the process's samples in JIT-compiled (Wasm) code, or None without perf."""
    if not shutil.which("perf"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        rec = subprocess.run(["perf", "record", "-q", "-F", "999", "-p", str(pid), "-o", str(data),
                              "--", "sleep", str(seconds)], capture_output=True)
        if rec.returncode != 0:
            return None
        rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso",
                              "--stdio"], capture_output=True, text=True).stdout
    rows = re.findall(r"^\s+([\d.]+)%\s+(.+?)\s*$", rep, re.M)
    if not rows:
        return None
    return sum(float(p) for p, dso in rows if dso.startswith("[JIT]")) / 100


def measure(envoy: procs.Envoy, script: Path, with_perf: bool) -> tuple[float, float | None]:
    url = f"{envoy.url}/v1/chat/completions"
    bench.wrk(url, script, 8, 1)
    stat = "http.aimesh.downstream_rq_total"
    n0, c0 = envoy.stats(stat).get(stat, 0), bench.cpu_seconds(envoy.proc.pid)
    cmd = (["taskset", "-c", bench.LOAD_CPU] if bench.LOAD_CPU else []) + [
        "wrk", "-t1", "-c8", f"-d{SECONDS}s", "-s", str(script), url]
    load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    share = jit_share(envoy.proc.pid, max(SECONDS - 1, 1)) if with_perf else None
    load.wait()
    n1, c1 = envoy.stats(stat).get(stat, 0), bench.cpu_seconds(envoy.proc.pid)
    return (c1 - c0) / max(n1 - n0, 1) * 1e6, share


def interleaved(cfgs: dict[str, dict], script: Path, with_perf: bool = False
                ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Starts every config at once and loads each in turn for ROUNDS rounds: CPU µs/request
    samples per config, and (with_perf, last round) the share of time in Wasm code."""
    envoys: dict[str, procs.Envoy] = {}
    cpu: dict[str, list[float]] = {}
    share: dict[str, float] = {}
    try:
        for name, cfg in cfgs.items():
            envoys[name] = procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn")
        for r in range(ROUNDS):
            for name, envoy in envoys.items():
                us, s = measure(envoy, script, with_perf=with_perf and r == ROUNDS - 1)
                cpu.setdefault(name, []).append(us)
                if s is not None:
                    share[name] = s
            print(f"  round {r + 1}/{ROUNDS}", file=sys.stderr, flush=True)
    finally:
        for e in envoys.values():
            e.stop()
    return cpu, share


def run() -> str:
    only = [r.strip() for r in os.environ.get("PROFILE_ONLY", "").split(",") if r.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), KEY)
        mock = procs.MockLLM("profile", record=False, cpus=bench.LOAD_CPU)
        try:
            cfgs = {n: c for n, c in systems(mock.port).items() if not only or n in only}
            cpu, share = interleaved(cfgs, script, with_perf=True)
        finally:
            mock.stop()
    med = {n: statistics.median(v) for n, v in cpu.items()}
    base = med.get("plain envoy")
    full = med.get("full chain")
    lines = [f"Envoy CPU per 1 KB chat request (median of {ROUNDS} interleaved rounds, wrk c=8, "
             f"{SECONDS}s each; Envoy 1 worker on core {bench.ENVOY_CPU}). `in Wasm` is perf's "
             "share of samples in JIT code (the filters); the rest is Envoy, host calls included.",
             "", "| configuration | CPU µs/request | vs plain | in Wasm (µs) | in Envoy (µs) "
             "| saved vs full chain (µs) | spread (min–max) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, us in med.items():
        s = share.get(name)
        wasm = f"{us * s:.0f}" if s is not None else "–"
        host = f"{us * (1 - s):.0f}" if s is not None else "–"
        ratio = f"{us / base:.2f}×" if base else "–"
        saved = f"{full - us:+.0f}" if full and name.startswith("chain without") else ""
        lo, hi = min(cpu[name]), max(cpu[name])
        lines.append(f"| {name} | {us:.0f} | {ratio} | {wasm} | {host} | {saved} | {lo:.0f}–{hi:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
