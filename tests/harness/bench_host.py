"""What Envoy charges for each kind of proxy-wasm host call (`python -m harness.bench_host`).

Envoy's release binary has no symbols, so a CPU profile of the chain splits only into "Wasm
code" and "Envoy"; this prices the Envoy side call by call. The probe filter performs N calls
of one kind on every request; the row's Envoy CPU time per request, minus that of the probe
doing nothing, divided by N, is the price of one call. CPU time per request (Envoy's utime +
stime over the requests it served) is steadier than latency on a shared machine.

PROFILE_ROUNDS / PROFILE_SECONDS as in `harness.profile`.
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from . import bench, config, paths, procs, profile

# (row, probe work, calls per request)
ROWS = [
    ("no-op", {}, 1),
    ("get_http_request_header", {"get_header": 20}, 20),
    ("get_http_request_headers (whole map)", {"get_header_map": 10}, 10),
    ("set request header", {"set_header": 10}, 10),
    ("remove absent request header", {"remove_header": 10}, 10),
    ("increment_metric", {"count": 20}, 20),
    ("set_property (filter state)", {"set_property": 10}, 10),
    ("record histogram sample", {"histogram": 20}, 20),
    ("shared data get + CAS set", {"shared": 10}, 10),
    ("get_property (xds.route_name)", {"get_property": 10}, 10),
    ("read response body", {"read_response_body": True}, 1),
    ("pause headers + read 1 KB body", {"read_body": True}, 1),
    ("pause + read + set 1 KB body", {"read_body": True, "set_body": True}, 1),
]


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), profile.KEY)
        mock = procs.MockLLM("bench-host", record=False, cpus=bench.LOAD_CPU)
        cluster = config.cluster("local-mock", mock.port)
        cfgs = {"plain": config.gateway([], [cluster])}
        for name, work, _ in ROWS:
            cfgs[name] = config.gateway([config.wasm_filter(
                "probe", {"work": work}, wasm_path=str(paths.PROBE_WASM))], [cluster])
        try:
            # Interleaved rounds, median per row: a noisy neighbour shifts every row alike.
            samples, _ = profile.interleaved(cfgs, script)
        finally:
            mock.stop()
    results = {n: statistics.median(v) for n, v in samples.items()}
    noop = results["no-op"]
    lines = ["Price of proxy-wasm host calls in Envoy (probe filter, Envoy CPU per request; same run):", "",
             f"plain Envoy {results['plain']:.1f} µs/request; one no-op Wasm filter "
             f"{noop:.1f} µs/request ({noop - results['plain']:+.1f}).", "",
             "| host call | calls/request | Envoy CPU µs/request | µs per call |", "|---|---:|---:|---:|"]
    for name, _, n in ROWS[1:]:
        lines.append(f"| {name} | {n} | {results[name]:.1f} | {(results[name] - noop) / n:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
