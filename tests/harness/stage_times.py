"""Where the chain's time goes, stage by stage, measured inside the VM (`python -m harness.stage_times`).

Runs the one-filter chain (`aimesh_chain.wasm`) with `stage_timings: true` under wrk (1 KB chat
request, c=8) and divides each `aimesh.chain.<stage>.<phase>.ns` counter by the requests served.
What a stage costs here is its Wasm code plus the host calls it makes; the rest of Envoy's CPU
per request (the first column of `harness.profile`) is Envoy's own work, the VM shell included.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from . import bench, demo, procs, profile

SECONDS = 5
REQUESTS = "http.aimesh.downstream_rq_total"


def measure(envoy: procs.Envoy, script: Path) -> tuple[dict[str, dict[str, float]], float]:
    """µs per request by stage and phase, and Envoy's CPU µs per request, over one wrk run."""
    url = f"{envoy.url}/v1/chat/completions"
    bench.wrk(url, script, 8, 1)
    before, c0 = envoy.stats("aimesh"), bench.cpu_seconds(envoy.proc.pid)
    cmd = (["taskset", "-c", bench.LOAD_CPU] if bench.LOAD_CPU else []) + [
        "wrk", "-t1", "-c8", f"-d{SECONDS}s", "-s", str(script), url]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    after, c1 = envoy.stats("aimesh"), bench.cpu_seconds(envoy.proc.pid)
    n = max(after.get(REQUESTS, 0) - before.get(REQUESTS, 0), 1)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for name, value in after.items():
        m = re.fullmatch(r"wasmcustom\.aimesh\.chain\.([\w-]+)\.(\w+)\.ns", name)
        if m:
            out[m[1]][m[2]] = (value - before.get(name, 0)) / n / 1000
    return out, (c1 - c0) / n * 1e6


def table(times: dict[str, dict[str, float]], cpu: float) -> str:
    phases = sorted({p for t in times.values() for p in t})
    lines = ["| stage | " + " | ".join(p.replace("_", " ") for p in phases) + " | total µs/request |",
             "|---|" + "---:|" * (len(phases) + 1)]
    grand = 0.0
    for stage, t in times.items():
        total = sum(t.values())
        grand += total
        lines.append(f"| {stage} | " + " | ".join(f"{t.get(p, 0):.1f}" for p in phases) + f" | {total:.1f} |")
    lines.append(f"| **all stages** | " + " | ".join("" for _ in phases) + f" | **{grand:.1f}** |")
    lines += ["", f"Envoy CPU per request with stage timings on: {cpu:.0f} µs; in the stages: {grand:.0f} µs "
              f"({grand / cpu:.0%})."]
    return "\n".join(lines)


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        script = bench.script_file(Path(tmp), profile.KEY)
        mock = procs.MockLLM("stage-times", record=False, cpus=bench.LOAD_CPU)
        cfg = demo.demo_config(profile.KEY, mock.port, unlimited=True, chain=True)
        demo.set_chain_option(cfg, "stage_timings", True)
        envoy = procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn")
        try:
            times, cpu = measure(envoy, script)
        finally:
            envoy.stop()
            mock.stop()
    return (f"Time inside each stage of the one-filter chain (µs per 1 KB chat request; wrk c=8 for "
            f"{SECONDS}s; `stage_timings: true`):\n\n" + table(times, cpu))


def main() -> int:
    print(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
