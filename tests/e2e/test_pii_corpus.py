"""The PII floors, measured on what the upstream receives through the real Envoy: every record of
`<repo>/../shared/pii/dev.jsonl` is sent as a chat message with the official SDK, the fake
upstream records what arrived, and leak and over-redaction rates are computed per type.

Goals: leak 0 for every type but PHONE, PHONE < 2%, decoys altered < 1%.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import openai

from harness import config, paths, procs

CORPUS = Path(os.environ.get("AIMESH_PII_CORPUS", paths.REPO.parent / "shared" / "pii" / "dev.jsonl"))


def test_corpus_floors_through_envoy(mock):
    records = [json.loads(l) for l in CORPUS.read_text().splitlines() if l.strip()]
    envoy = procs.Envoy(config.gateway([config.wasm_filter("pii-redaction", {})],
                                       [config.cluster("m", mock.port)]))
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="unused", max_retries=0)
    for i, rec in enumerate(records):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": rec["text"]}],
                                       extra_headers={"x-record": str(i)})
    arrived = {int(r["headers"]["x-record"]): json.loads(r["body"])["messages"][0]["content"]
               for r in mock.records()}
    assert len(arrived) == len(records)
    total, leaked = defaultdict(int), defaultdict(int)
    decoys = altered = 0
    for i, rec in enumerate(records):
        got = arrived[i]
        for p in rec["pii"]:
            total[p["type"]] += 1
            if p["value"] in got:
                leaked[p["type"]] += 1
                print(f"LEAK {p['type']}: {got!r}")
        for d in rec["decoys"]:
            decoys += 1
            if d not in got:
                altered += 1
                print(f"DECOY ALTERED {d!r}: {got!r}")
    print()
    for t in sorted(total):
        print(f"{t:<12} values {total[t]:>4} leaked {leaked[t]:>3} leak rate {100 * leaked[t] / total[t]:.2f}%")
    print(f"{'DECOYS':<12} {decoys:>11} altered {altered:>3} over-redaction {100 * altered / decoys:.2f}%")
    for t in total:
        if t == "PHONE":
            assert leaked[t] < 0.02 * total[t], "PHONE leak rate must stay under 2%"
        else:
            assert leaked[t] == 0, f"{t} leaked"
    assert altered < 0.01 * decoys, "decoy over-redaction must stay under 1%"
