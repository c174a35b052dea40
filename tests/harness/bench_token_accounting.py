"""Token-accounting timings (part of `make bench`; also `python -m harness.bench_token_accounting`).

- Streaming: time to first token and the gap between content chunks as the client sees them,
  through plain Envoy and through Envoy + token-accounting (client asks for usage: pass-through
  scan; client does not: include_usage injected and the usage chunk removed). Same fake upstream,
  same run; the difference is what the filter adds.
- A 1 MiB non-streaming response through the filter (must be accounted without error).
- Worst-case estimate: a 100,000-character run of one letter, prompt and completion both
  counted by the filter's tokenizer in the Wasm VM (provider reports no usage).
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import time

from . import config, procs

REQUESTS = int(os.environ.get("BENCH_STREAM_REQUESTS", "200"))
CHUNKS = 20
GAP_MS = 2


def _raw(port: int, path: str, body: dict, headers: dict) -> tuple[bytes, list[tuple[float, bytes]]]:
    """One HTTP/1.1 request on a fresh socket; every recv with its time since the send."""
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        "host": "bench", "content-type": "application/json", "content-length": len(data),
        "connection": "close", **headers}.items())
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + data)
    recvs = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        recvs.append((time.perf_counter() - t0, b))
    s.close()
    return b"".join(b for _, b in recvs), recvs


def _stream_timings(port: int, include_usage: bool) -> tuple[list[float], list[float]]:
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    hdrs = {"x-mock-completion-tokens": str(CHUNKS), "x-mock-chunk-gap-ms": str(GAP_MS)}
    ttft, gaps = [], []
    for _ in range(REQUESTS):
        _, recvs = _raw(port, "/v1/chat/completions", body, hdrs)
        seen, times, buf = 0, [], b""
        for t, b in recvs:
            buf += b
            n = buf.count(b'"content":"mock') + buf.count(b'"content":" mock')
            times.extend([t] * (n - seen))
            seen = n
        if times:
            ttft.append(times[0] * 1e3)
            gaps.extend((b - a) * 1e3 for a, b in zip(times, times[1:]))
    return ttft, gaps


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def run() -> str:
    mock = procs.MockLLM("bench-ta", record=False)
    rows = []
    try:
        cluster = [config.cluster("llm", mock.port)]
        plain = config.gateway([], cluster)
        ta = config.gateway([config.wasm_filter("token-accounting", {
            "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}, "estimate_prompt": True})], cluster)
        for name, cfg, usage in [("envoy (no filters)", plain, True),
                                 ("envoy + token-accounting, client asks usage", ta, True),
                                 ("envoy + token-accounting, usage injected+removed", ta, False)]:
            with procs.Envoy(cfg, concurrency=1, log_level="warn") as envoy:
                _stream_timings(envoy.port, usage)  # warm-up (VM, JIT, connections)
                ttft, gaps = _stream_timings(envoy.port, usage)
            rows.append((name, ttft, gaps))
        with procs.Envoy(ta, concurrency=1, log_level="warn") as envoy:
            t = time.perf_counter()
            full, _ = _raw(envoy.port, "/v1/chat/completions",
                           {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                           {"x-mock-response-bytes": str(1 << 20)})
            big_ms = (time.perf_counter() - t) * 1e3
            big_ok = full.startswith(b"HTTP/1.1 200") and len(full) > 1 << 20
            long_run = "a" * 100_000
            est = {}
            for omit in ("false", "true"):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": long_run}]}
                _raw(envoy.port, "/v1/chat/completions", body, {"x-mock-echo": "true", "x-mock-omit-usage": omit})
                t = time.perf_counter()
                resp, _ = _raw(envoy.port, "/v1/chat/completions", body,
                               {"x-mock-echo": "true", "x-mock-omit-usage": omit})
                est[omit] = ((time.perf_counter() - t) * 1e3, resp.startswith(b"HTTP/1.1 200"))
            stats = envoy.stats("gen_ai.client.token.usage")
            estimated = sum(v for k, v in stats.items() if k.endswith("source.estimated"))
    finally:
        mock.stop()
    base = rows[0]
    lines = [f"Streaming: {REQUESTS} requests x {CHUNKS} content chunks, upstream gap {GAP_MS} ms, "
             "Envoy 1 worker (ms, client-side).", "",
             "| system | TTFT p50 | TTFT p99 | added TTFT p99 | gap p50 | gap p99 | added gap p99 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, ttft, gaps in rows:
        lines.append(f"| {name} | {_pct(ttft, 50):.3f} | {_pct(ttft, 99):.3f} | "
                     f"{_pct(ttft, 99) - _pct(base[1], 99):+.3f} | {_pct(gaps, 50):.3f} | "
                     f"{_pct(gaps, 99):.3f} | {_pct(gaps, 99) - _pct(base[2], 99):+.3f} |")
    lines += ["", f"1 MiB non-streaming response through token-accounting: "
              f"{'ok' if big_ok else 'FAILED'}, {big_ms:.1f} ms.",
              f"100,000 x 'a' prompt echoed as completion: {est['false'][0]:.1f} ms with provider usage, "
              f"{est['true'][0]:.1f} ms when both are estimated by the filter "
              f"({'ok' if est['true'][1] else 'FAILED'}; {estimated} estimated tokens recorded "
              "over warm-up + measured request)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
    sys.exit(0)
