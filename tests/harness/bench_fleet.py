"""Fleet-wide limits (issue 18): the same request through one Envoy with `limits.store: local`
and `limits.store: redis` (aimesh-limits + Redis on this host), measured in the same run.

Both gateways give the key a requests/minute limit, a tokens/minute limit and a daily budget
that never bind, so every request pays the full admission (and, with Redis, the settlement).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests

from . import bench, demo, fleet, procs, xds

KEY = "sk-aimesh-bench-" + "0" * 48


def gateway(mock: procs.MockLLM, limits: fleet.Limits | None) -> dict:
    rules = [{"key": "bench", "requests_per_minute": 10**9, "tokens_per_minute": 10**12}]
    return {
        "listener": {"address": "127.0.0.1", "port": 0, "access_log": ""},
        "providers": [xds.mock_provider("local-mock", mock)],
        "default_provider": "local-mock",
        "virtual_models": [{"name": bench.MODEL, "targets": [{"provider": "local-mock", "model": "gpt-4o-mini"}]}],
        "keys": [{"id": "bench", "hash": demo.key_hash(KEY)}],
        "limits": fleet.fleet_limits(limits, rules) if limits else rules,
        "budgets": [{"key": "bench", "usd": 10**6, "period": "day"}],
        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    }


def measure(mock: procs.MockLLM, limits: fleet.Limits | None, script: Path) -> bench.Result:
    with xds.XdsServer(gateway(mock, limits)) as server, \
            procs.Envoy(xds.ads_bootstrap(server.port), concurrency=1, cpus=bench.ENVOY_CPU,
                        log_level="warn") as envoy:
        deadline = time.time() + 20
        while requests.get(f"{envoy.url}/v1/models", headers={"authorization": f"Bearer {KEY}"},
                           timeout=5).status_code != 200:
            assert time.time() < deadline, "gateway never answered"
            time.sleep(0.05)
        return bench.measure(f"{envoy.url}/v1/chat/completions", script)


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), KEY)
        mock = procs.MockLLM("bench-fleet", record=False, cpus=bench.LOAD_CPU)
        redis = fleet.Redis()
        limits = fleet.Limits(redis)
        try:
            local = measure(mock, None, script)
            print("  measured limits local", file=sys.stderr, flush=True)
            shared = measure(mock, limits, script)
            print("  measured limits redis", file=sys.stderr, flush=True)
        finally:
            for p in (limits, redis, mock):
                p.stop()
    lines = [
        "",
        "### Fleet-wide limits: local shared data vs Redis (same run, one Envoy worker)",
        "",
        "| limits.store | p50 µs (c=1) | added p50 µs | req/s (c=32) | req/s vs local | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("local", local), ("redis", shared)):
        lines.append(f"| {name} | {r.p50_us:.0f} | {r.p50_us - local.p50_us:+.0f} | {r.rps:.0f} | "
                     f"{r.rps / local.rps:.2f} | {r.errors} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
