"""MCP stage cost: `python -m harness.bench_mcp` (from tests/, part of `make bench`).

One `tools/call` POST to `/mcp/demo` (the fake upstream answers any path with a small JSON
document, which the stage reads as a reply), through plain Envoy and through Envoy with the mcp
filter (`aimesh_mcp.wasm`: body buffered and parsed as JSON-RPC, the call checked against the
allow-list, the JSON reply parsed), same run, same pinning as `harness.bench`. Reported: p50 at
concurrency 1, the added p50, requests/s at saturation and its ratio to plain Envoy. Timings
only; no asserts.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from . import bench, config, procs

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "search_docs", "arguments": {"query": "envoy wasm filters " * 8, "limit": 3}}}
STAGE = {"servers": {"demo": {"tools": ["add", "echo", "search_*"]}}}


def script(tmp: Path) -> Path:
    p = tmp / "mcp.lua"
    p.write_text(f'wrk.method = "POST"\nwrk.body = [[{json.dumps(CALL)}]]\n'
                 'wrk.headers["Content-Type"] = "application/json"\n'
                 'wrk.headers["Accept"] = "application/json, text/event-stream"\n')
    return p


def run() -> str:
    mock = procs.MockLLM("bench-mcp", record=False, cpus=bench.LOAD_CPU)
    results: dict[str, bench.Result] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s = script(Path(tmp))
            for name, filters in (("envoy (no filters)", []),
                                  ("envoy + mcp", [config.wasm_filter("mcp", STAGE)])):
                cfg = config.gateway(filters, [config.cluster("mcp-upstream", mock.port)])
                with procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn") as envoy:
                    results[name] = bench.measure(f"{envoy.url}/mcp/demo", s)
    finally:
        mock.stop()
    base = results["envoy (no filters)"]
    lines = [f"MCP tools/call ({len(json.dumps(CALL))} B), {bench.SECONDS}s per measurement, same run:", "",
             "| system | p50 c=1 (µs) | added p50 (µs) | req/s (c=32) | req/s vs plain | errors |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r.p50_us:.0f} | {r.p50_us - base.p50_us:+.0f} | {r.rps:.0f} | "
                     f"{r.rps / base.rps:.2f} | {r.errors} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
    sys.exit(0)
