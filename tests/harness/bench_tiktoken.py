"""Python `tiktoken` on the text `make bench-core` counts in Rust (`target/bench/tokens.txt`),
so the token-counting figure has its reference measured on the same machine, same run.

`python -m harness.bench_tiktoken`; prints MiB/s per encoding (best of 5 runs, one thread).
"""
from __future__ import annotations

import time

from . import paths, tokens


def run() -> str:
    text = (paths.REPO / "target" / "bench" / "tokens.txt").read_text()
    lines = [f"Python tiktoken on the same {len(text.encode()) // 1024} KiB text (best of 5, one thread):", ""]
    for name in tokens.ENCODINGS:
        enc = tokens.encoding(name)
        enc.encode_ordinary(text)  # warm-up: builds the regex and caches
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            n = len(enc.encode_ordinary(text))
            best = min(best, time.perf_counter() - t)
        mib = len(text.encode()) / best / (1 << 20)
        lines.append(f"- {name}: {n} tokens, {best * 1e3:.2f} ms, {mib:.1f} MiB/s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
