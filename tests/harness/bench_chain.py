"""Where the full chain's time goes: the `make run` chain with one filter left out at a time
(and with token-accounting's limits off), measured in the same run as the whole chain.

`python -m harness.bench_chain`; BENCH_SECONDS per measurement as in bench.py.
"""
from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

from . import bench, demo, paths, procs


def without(cfg: dict, name: str) -> dict:
    out = copy.deepcopy(cfg)
    hcm = out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != f"aimesh.{name}"]
    return out


def accounting_without_limits(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    hcm = out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    ta = next(f for f in hcm["http_filters"] if f["name"] == "aimesh.token-accounting")
    conf = ta["typed_config"]["config"]["configuration"]
    value = json.loads(conf["value"])
    value.pop("limits", None)
    conf["value"] = json.dumps(value)
    return out


def run() -> str:
    key = "sk-aimesh-bench-" + "0" * 48
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), key)
        mock = procs.MockLLM("bench-chain", record=False, cpus=bench.LOAD_CPU)
        try:
            full = demo.demo_config(key, mock.port, unlimited=True, chain=False)
            rows = {"envoy (no filters)": bench.rows(key, mock.port)["envoy (no filters)"], "full chain": full}
            rows.update({f"full chain without {f}": without(full, f) for f in paths.FILTERS})
            rows["full chain, token-accounting without limits"] = accounting_without_limits(full)
            results = {}
            for name, cfg in rows.items():
                with procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn") as envoy:
                    results[name] = bench.measure(f"{envoy.url}/v1/chat/completions", script)
                print(f"  measured {name}", file=sys.stderr, flush=True)
        finally:
            mock.stop()
    base, whole = results["envoy (no filters)"], results["full chain"]
    lines = ["Where the full chain's time goes (one filter left out at a time; same run):", "",
             "| chain | p50 c=1 (µs) | added p50 vs plain (µs) | saved vs full chain (µs) | req/s (c=32) | req/s vs plain |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r.p50_us:.0f} | {r.p50_us - base.p50_us:+.0f} | {whole.p50_us - r.p50_us:+.0f} | "
                     f"{r.rps:.0f} | {r.rps / base.rps:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
