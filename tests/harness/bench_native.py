"""Same-run comparison of the native build (`libaimesh.so`) with plain Envoy and the Wasm chain:
the issue-22 floors (native >= 0.75x plain Envoy's requests/s at saturation, <= 40 µs added p50
at concurrency 1, Envoy RSS <= 1.3x plain Envoy's), measured in interleaved rounds so the
shared machine's drift hits every system alike.

`python -m harness.bench_native` (`make bench-native`); PROFILE_ROUNDS rounds (default 5) of
PROFILE_SECONDS each, as `harness.bench_ab`. Figures are medians over the rounds; RSS is read
after the last round, with every Envoy warm and under the same config as its requests.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from . import bench, config, demo, peers, procs, profile

# The floors, printed next to what was measured.
RPS_FLOOR = 0.75
ADDED_P50_CEILING_US = 40
RSS_CEILING = 1.3


def measure() -> dict[str, dict[str, float]]:
    rounds = profile.ROUNDS
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), profile.KEY)
        mock = procs.MockLLM("bench-native", record=False, cpus=bench.LOAD_CPU)
        cfgs = {
            "plain envoy": config.gateway([], [config.cluster("local-mock", mock.port)]),
            "wasm chain (aimesh_chain.wasm)": demo.build_config("chain", profile.KEY, mock.port),
            "native chain (libaimesh.so)": demo.build_config("native", profile.KEY, mock.port),
        }
        envoys: dict[str, procs.Envoy] = {}
        got: dict[str, dict[str, list[float]]] = {}
        try:
            for name, cfg in cfgs.items():
                envoys[name] = procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn")
            for r in range(rounds):
                for name, envoy in envoys.items():
                    url = f"{envoy.url}/v1/chat/completions"
                    g = got.setdefault(name, {"p50": [], "rps": [], "cpu": []})
                    g["cpu"].append(profile.measure(envoy, script, False)[0])
                    g["p50"].append(bench.wrk(url, script, 1, profile.SECONDS)[0])
                    g["rps"].append(bench.wrk(url, script, bench.SATURATION_CONNECTIONS, profile.SECONDS)[2])
                print(f"  round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            med = {n: {k: statistics.median(v) for k, v in g.items()} for n, g in got.items()}
            for name, envoy in envoys.items():
                med[name]["rss"] = peers.rss_mb([envoy.proc.pid])
        finally:
            for e in envoys.values():
                e.stop()
            mock.stop()
    return med


def report(med: dict[str, dict[str, float]]) -> str:
    base = med["plain envoy"]
    lines = [f"Same-run comparison (median of {profile.ROUNDS} interleaved rounds of {profile.SECONDS} s, "
             "Envoy on one worker):", "",
             "| system | p50 c=1 (µs) | added p50 (µs) | req/s c=32 | vs plain | CPU µs/request | RSS (MiB) | RSS vs plain |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, m in med.items():
        lines.append(f"| {n} | {m['p50']:.0f} | {m['p50'] - base['p50']:+.0f} | {m['rps']:.0f} | "
                     f"{m['rps'] / base['rps']:.2f} | {m['cpu']:.0f} | {m['rss']:.1f} | {m['rss'] / base['rss']:.2f} |")
    n = med["native chain (libaimesh.so)"]
    lines += ["", f"Floors (issue 22): req/s >= {RPS_FLOOR}x plain: {n['rps'] / base['rps']:.2f}x; "
              f"added p50 <= {ADDED_P50_CEILING_US} µs: {n['p50'] - base['p50']:+.0f} µs; "
              f"RSS <= {RSS_CEILING}x plain: {n['rss'] / base['rss']:.2f}x"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
