"""Same-run A/B of the full chain: this tree's filters (five, the one-filter build and, when both trees
have it, the native module) against another build's
(`python -m harness.bench_ab /path/to/other/target/wasm32-wasip1/release`; the other tree's
`target/native/libaimesh.so` is found next to it).

A shared machine drifts by ±30% between runs, so a change is judged only against a baseline
measured in the same interleaved rounds. Build the other side with, for example,
`git worktree add /tmp/base <commit> && cd /tmp/base && cargo build --release --target wasm32-wasip1`.

Per system: p50 at concurrency 1, requests/s at concurrency 32 and Envoy CPU per request at
concurrency 8, each the median over PROFILE_ROUNDS rounds (default 5) of PROFILE_SECONDS.
"""
from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
from pathlib import Path

from . import bench, config, demo, paths, procs, profile


def with_wasm_dir(cfg: dict, wasm_dir: Path) -> dict:
    out = copy.deepcopy(cfg)
    hcm = out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        code = f.get("typed_config", {}).get("config", {}).get("vm_config", {}).get("code")
        if code:
            name = Path(code["local"]["filename"]).name
            code["local"]["filename"] = str(wasm_dir / name)
    return out


def run(other: Path) -> str:
    rounds = profile.ROUNDS
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), profile.KEY)
        mock = procs.MockLLM("bench-ab", record=False, cpus=bench.LOAD_CPU)
        full = demo.demo_config(profile.KEY, mock.port, unlimited=True, chain=False)
        chain = demo.demo_config(profile.KEY, mock.port, unlimited=True, chain=True)
        cfgs = {"plain envoy": config.gateway([], [config.cluster("local-mock", mock.port)]),
                "full chain, this tree": full,
                "one-filter chain, this tree": chain,
                f"full chain, {other}": with_wasm_dir(full, other),
                f"one-filter chain, {other}": with_wasm_dir(chain, other)}
        # The native module is found by directory (Envoy's search path), one per Envoy.
        envs: dict[str, dict[str, str]] = {}
        other_native = other.parent.parent / "native"
        if paths.NATIVE_MODULE.exists() and (other_native / paths.NATIVE_MODULE.name).exists():
            native = demo.build_config("native", profile.KEY, mock.port)
            cfgs["native chain, this tree"] = native
            cfgs[f"native chain, {other_native}"] = native
            envs[f"native chain, {other_native}"] = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(other_native)}
        envoys: dict[str, procs.Envoy] = {}
        got: dict[str, dict[str, list[float]]] = {}
        try:
            for name, cfg in cfgs.items():
                envoys[name] = procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn",
                                           env=envs.get(name))
            for r in range(rounds):
                for name, envoy in envoys.items():
                    url = f"{envoy.url}/v1/chat/completions"
                    g = got.setdefault(name, {"p50": [], "rps": [], "cpu": []})
                    g["cpu"].append(profile.measure(envoy, script, False)[0])
                    g["p50"].append(bench.wrk(url, script, 1, profile.SECONDS)[0])
                    g["rps"].append(bench.wrk(url, script, bench.SATURATION_CONNECTIONS, profile.SECONDS)[2])
                print(f"  round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        finally:
            for e in envoys.values():
                e.stop()
            mock.stop()
    med = {n: {k: statistics.median(v) for k, v in g.items()} for n, g in got.items()}
    base = med["plain envoy"]
    lines = [f"Same-run A/B (median of {rounds} interleaved rounds):", "",
             "| system | p50 c=1 (µs) | added p50 vs plain (µs) | req/s c=32 | vs plain | CPU µs/request |",
             "|---|---:|---:|---:|---:|---:|"]
    for n, m in med.items():
        lines.append(f"| {n} | {m['p50']:.0f} | {m['p50'] - base['p50']:+.0f} | {m['rps']:.0f} | "
                     f"{m['rps'] / base['rps']:.2f} | {m['cpu']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(Path(sys.argv[1])))
