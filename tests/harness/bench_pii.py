"""PII redaction cost: `python -m harness.bench_pii` (from tests/).

Measures, in one run: the added p50 latency of the pii-redaction filter over plain Envoy for a
1 KB and a 100 KB chat request whose text carries PII (so the body is scanned, rewritten and
re-serialized), the scan throughput inside Envoy that implies (body bytes / added p50), and the
native scanner throughput (`cargo run --release --example pii_scan`). Timings only; no asserts.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from . import bench, config, paths, procs

SENTENCES = [
    "Please summarise the quarterly report: revenue grew 12% to $4.2M in Q3 2024, build 6.7.68 "
    "shipped on 2024-05-01 at 12:00, ticket 935-54-5879 is closed.",
    "Contact jane.doe@example.com or +44 20 7946 0958, card 4111 1111 1111 1111, server "
    "10.20.30.40, key AKIA4KHVDGAJGXBENYJQ.",
    "The meeting moved to Thursday; bring the design notes and the list of open questions.",
    "Wire it to GB82 WEST 1234 5698 7654 32 and call (415) 555-0123 when done.",
]


def pii_body(size: int) -> str:
    text, i = "", 0
    while len(text) < size - 80:
        text += SENTENCES[i % len(SENTENCES)] + " "
        i += 1
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def script(tmp: Path, body: str) -> Path:
    p = tmp / f"post-{len(body)}.lua"
    p.write_text(f'wrk.method = "POST"\nwrk.body = [[{body}]]\nwrk.headers["Content-Type"] = "application/json"\n')
    return p


def main() -> int:
    native = subprocess.run(["cargo", "run", "--quiet", "--release", "-p", "aimesh-core", "--example", "pii_scan"],
                            cwd=paths.REPO, capture_output=True, text=True)
    print("native scanner (aimesh-core example pii_scan):")
    print(native.stdout or native.stderr)
    mock = procs.MockLLM("bench-pii", record=False, cpus=bench.LOAD_CPU)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for size in (1024, 100 * 1024):
                body = pii_body(size)
                s = script(Path(tmp), body)
                p50 = {}
                for name, filters in (("plain", []), ("pii", [config.wasm_filter("pii-redaction", {})])):
                    cfg = config.gateway(filters, [config.cluster("m", mock.port)])
                    with procs.Envoy(cfg, concurrency=1, cpus=bench.ENVOY_CPU, log_level="warn") as envoy:
                        url = f"{envoy.url}/v1/chat/completions"
                        bench.wrk(url, s, 1)  # warm-up
                        p50[name], _, _, errors = bench.wrk(url, s, 1)
                        if errors:
                            print(f"{name} {size}: {errors} errors", file=sys.stderr)
                added = p50["pii"] - p50["plain"]
                mbps = len(body) / added if added > 0 else float("inf")  # bytes/µs == MB/s
                rows.append((len(body), p50["plain"], p50["pii"], added, mbps))
    finally:
        mock.stop()
    print("| body bytes | plain p50 (µs) | + pii-redaction p50 (µs) | added p50 (µs) | in-Envoy MB/s |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.0f} | {r[3]:+.0f} | {r[4]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
