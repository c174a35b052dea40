"""`make bench`: load through plain Envoy and through the aimesh filters, same upstream, same run.

Envoy runs one worker pinned to core 0; wrk and the fake upstream share core 1, so Envoy never
competes with the load generator. Reported: p50/p99 at concurrency 1, requests/s at saturation
(with its p99) and ratios to plain Envoy measured in the same run. Timings live here, never in
pass/fail tests.

Environment: BENCH_SECONDS (per measurement, default 5), BENCH_ROWS (comma list of row names).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import config, demo, paths, procs, virtual_model

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
SATURATION_CONNECTIONS = 32
ENVOY_CPU, LOAD_CPU = ("0", "1") if (os.cpu_count() or 1) >= 2 else (None, None)


@dataclass
class Result:
    p50_us: float
    p99_us: float
    rps: float
    sat_p99_us: float
    errors: int


# The demo's virtual model: every gateway in the benchmarks routes it to the fake upstream's
# gpt-4o-mini (aimesh's virtual-model filter rewrites the body; LiteLLM maps a model alias).
MODEL = "vm-demo"


def chat_body(size: int = 1024) -> str:
    """An OpenAI chat request of about `size` bytes."""
    words, text = [], ""
    i = 0
    while len(json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}]})) < size:
        words.append(f"word{i}")
        text = " ".join(words)
        i += 1
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}]})


def _us(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def wrk(url: str, script: Path, connections: int, seconds: int | None = None) -> tuple[float, float, float, int]:
    """(p50 µs, p99 µs, req/s, non-2xx+socket errors) from one wrk run."""
    cmd = (["taskset", "-c", LOAD_CPU] if LOAD_CPU else []) + [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds or SECONDS}s", "--latency", "-s", str(script), url]
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def parse_wrk(out: str) -> tuple[float, float, float, int]:
    """(p50 µs, p99 µs, req/s, errors) from wrk's --latency output."""
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(n) for n in sock.groups())
    return _us(pct["50"]), _us(pct["99"]), rps, errors


def measure(url: str, script: Path) -> Result:
    wrk(url, script, 1)  # warm-up: VM start, connection pools, JIT
    p50, p99, _, e1 = wrk(url, script, 1)
    _, sat_p99, rps, e2 = wrk(url, script, SATURATION_CONNECTIONS)
    return Result(p50, p99, rps, sat_p99, e1 + e2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows(key: str, mock_port: int, failing_port: int | None = None) -> dict[str, dict | None]:
    """Row name -> Envoy config (None: the upstream called directly)."""
    cfgs = demo.filter_configs(key, unlimited=True)
    mock = config.cluster("local-mock", mock_port)
    out: dict[str, dict | None] = {"upstream direct": None, "envoy (no filters)": config.gateway([], [mock])}
    for name in paths.FILTERS:
        out[f"envoy + {name}"] = config.gateway([config.wasm_filter(name, cfgs[name])], [mock])
    if failing_port:
        out.update(virtual_model.bench_rows(mock_port, failing_port))
    out["envoy + full chain (make run)"] = demo.demo_config(key, mock_port, unlimited=True, chain=False)
    return out


def script_file(tmp: Path, key: str) -> Path:
    p = tmp / "post.lua"
    body = chat_body().replace("]]", "] ]")
    p.write_text(f"""wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
""")
    return p


def main() -> int:
    key = "sk-aimesh-bench-" + "0" * 48
    wanted = [r.strip() for r in os.environ.get("BENCH_ROWS", "").split(",") if r.strip()]
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = script_file(Path(tmp), key)
        mock = procs.MockLLM("bench", record=False, cpus=LOAD_CPU)
        failing = procs.MockLLM("bench-503", record=False, cpus=LOAD_CPU)
        failing.set_defaults(status=503)
        try:
            for name, cfg in rows(key, mock.port, failing.port).items():
                if wanted and name not in wanted:
                    continue
                if cfg is None:
                    results[name] = measure(f"{mock.url}/v1/chat/completions", script)
                else:
                    with procs.Envoy(cfg, concurrency=1, cpus=ENVOY_CPU, log_level="warn") as envoy:
                        results[name] = measure(f"{envoy.url}/v1/chat/completions", script)
                print(f"  measured {name}", file=sys.stderr, flush=True)
        finally:
            mock.stop()
            failing.stop()
    report = table(results)
    # Streaming and worst-case timings of the token-accounting filter (issue 4).
    if not wanted:
        from . import bench_token_accounting
        report += "\n" + bench_token_accounting.run()
        from . import bench_xds  # issue 8: config propagation through the xDS server
        report += "\n" + bench_xds.run()
        from . import bench_chain  # where the full chain's time goes (ablation)
        report += "\n" + bench_chain.run()
        from . import bench_host, profile  # ... and by CPU time, Wasm vs Envoy, per host call
        report += "\n" + profile.run() + "\n" + bench_host.run()
        from . import bench_fleet  # issue 18: limits on Redis vs local shared data
        report += "\n" + bench_fleet.run()
    print(report)
    out = paths.REPO / "target" / "bench" / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    return 1 if any(r.errors for r in results.values()) else 0


def table(results: dict[str, Result]) -> str:
    base = results.get("envoy (no filters)")
    lines = [
        f"1 KB chat request, {SECONDS}s per measurement; Envoy 1 worker on core {ENVOY_CPU}, "
        f"wrk + fake upstream on core {LOAD_CPU}.",
        "",
        "| system | p50 c=1 (µs) | p99 c=1 (µs) | added p50 vs plain (µs) | req/s (c=32) | p99 c=32 (µs) "
        "| req/s vs plain | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        added = f"{r.p50_us - base.p50_us:+.0f}" if base and name != "upstream direct" else "–"
        ratio = f"{r.rps / base.rps:.2f}" if base else "–"
        lines.append(f"| {name} | {r.p50_us:.0f} | {r.p99_us:.0f} | {added} | {r.rps:.0f} | "
                     f"{r.sat_p99_us:.0f} | {ratio} | {r.errors} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
