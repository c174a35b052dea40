"""`make bench` row for the xDS server: how long a change of 1,000 clusters and 200 virtual
models takes to reach 50 simulated ADS clients, and the server's memory at that size.

The clients are `aimesh-xds sim` (tonic SotW clients that ACK like Envoy); it swaps the file
once every client holds the first config and times until each has the changed clusters.
Run alone: `cd tests && ../.venv/bin/python -m harness.bench_xds`.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from . import paths, xds

CLUSTERS, VIRTUAL_MODELS, CLIENTS = 1000, 200, int(os.environ.get("BENCH_XDS_CLIENTS", "50"))


def gateway(port_base: int, weight_base: int = 1) -> dict:
    """1,000 provider clusters (each serving one model) and 200 virtual models over them."""
    providers = [{"name": f"prov-{i}", "kind": "openai_compatible",
                  "base_url": f"http://10.{i // 250}.{i % 250}.1:{port_base + i % 1000}",
                  "models": [f"m{i}"]} for i in range(CLUSTERS)]
    vms = [{"name": f"vm{j}", "targets": [{"provider": f"prov-{(j * 5 + k) % CLUSTERS}", "model": f"m{k}",
                                          "weight": k + weight_base} for k in range(3)]}
           for j in range(VIRTUAL_MODELS)]
    return {"listener": {"address": "127.0.0.1", "port": 0}, "providers": providers,
            "virtual_models": vms, "default_provider": "prov-0"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        new = Path(tmp) / "new.yaml"
        xds.write_gateway(new, gateway(9000, weight_base=2))
        server = xds.XdsServer(gateway(8000), poll_ms=200)
        try:
            idle = rss_kib(server.proc.pid)
            r = subprocess.run([str(paths.XDS), "sim", "--server", f"http://127.0.0.1:{server.port}",
                                "--clients", str(CLIENTS), "--apply", str(new),
                                "--to", str(server.config_path), "--expect-clusters", str(CLUSTERS)],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"sim failed: {r.stderr}\n{server.log()[-2000:]}")
            got = dict(line.split() for line in r.stdout.splitlines() if line.strip())
            after = rss_kib(server.proc.pid)
            resources = server.metrics().get("aimesh_xds_resources", 0)
        finally:
            server.stop()
    return (
        f"xDS: change of {CLUSTERS} clusters + {VIRTUAL_MODELS} virtual models to {CLIENTS} "
        f"SotW ADS clients (`aimesh-xds sim`; file poll 200 ms included)\n\n"
        "| measure | value |\n|---|---:|\n"
        f"| all clients in sync at start (s) | {float(got['synced_s']):.3f} |\n"
        f"| file write -> change at p50 client (s) | {float(got['propagation_p50_s']):.3f} |\n"
        f"| file write -> change at last client (s) | {float(got['propagation_max_s']):.3f} |\n"
        f"| snapshot resources | {resources:.0f} |\n"
        f"| server RSS with 1 snapshot, no clients (MiB) | {idle / 1024:.1f} |\n"
        f"| server RSS after the change, {CLIENTS} clients (MiB) | {after / 1024:.1f} |\n"
    )


if __name__ == "__main__":
    print(run())
