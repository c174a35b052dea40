"""The PII floors, measured on what the upstream receives through the real Envoy: every record of
the labelled corpus (`filters/core/tests/data/pii_dev.jsonl`) is sent as a chat message, again
with its values and decoys hidden by zero-width characters and written in fullwidth forms, and
again placed in the other fields a person or tool writes (`user`, `messages[].name`,
`prediction.content`, a tool description, a `metadata` value). The fake upstream records what
arrived; leak and over-redaction rates are computed per type and per run.

Goals, for every run: leak 0 for every type but PHONE, PHONE < 2%, decoys altered < 1%.
"""
from __future__ import annotations

import json
import os
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from harness import config, paths, procs

CORPUS = Path(os.environ.get("AIMESH_PII_CORPUS",
                             paths.REPO / "filters" / "core" / "tests" / "data" / "pii_dev.jsonl"))
ZW = "\u200b"


def zero_width(s: str) -> str:
    return "".join(c + (ZW if i % 2 else "") for i, c in enumerate(s))


def fullwidth(s: str) -> str:
    return "".join("\u3000" if c == " " else chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c
                   for c in s)


def as_read(s: str) -> str:
    """What a model reads in text written in the forms above (independent of the gateway's own
    normalisation, which is what is under test)."""
    out = s.replace(ZW, "").replace("\u3000", " ")
    return "".join(chr(ord(c) - 0xFF01 + 0x21) if "\uff01" <= c <= "\uff5e" else c for c in out)


# Where a record's text goes: (name, body builder, reader of the field back from what arrived).
FIELDS = {
    "content": (lambda t: {"messages": [{"role": "user", "content": t}]},
                lambda b: b["messages"][0]["content"]),
    "user": (lambda t: {"messages": [{"role": "user", "content": "hi"}], "user": t},
             lambda b: b["user"]),
    "name": (lambda t: {"messages": [{"role": "user", "name": t, "content": "hi"}]},
             lambda b: b["messages"][0]["name"]),
    "prediction": (lambda t: {"messages": [{"role": "user", "content": "hi"}],
                              "prediction": {"type": "content", "content": t}},
                   lambda b: b["prediction"]["content"]),
    "tool": (lambda t: {"messages": [{"role": "user", "content": "hi"}],
                        "tools": [{"type": "function", "function": {"name": "f", "description": t}}]},
             lambda b: b["tools"][0]["function"]["description"]),
    "metadata": (lambda t: {"messages": [{"role": "user", "content": "hi"}], "metadata": {"note": t}},
                 lambda b: b["metadata"]["note"]),
}
RUNS = [("plain", "content", lambda s: s), ("zero-width", "content", zero_width),
        ("fullwidth", "content", fullwidth)] + \
       [("plain", f, lambda s: s) for f in FIELDS if f != "content"]


@pytest.fixture(scope="module")
def gateway():
    mock = procs.MockLLM("pii-corpus")
    envoy = procs.Envoy(config.gateway([config.wasm_filter("pii-redaction", {})],
                                       [config.cluster("m", mock.port)]))
    yield envoy, mock
    envoy.stop()
    mock.stop()


@pytest.mark.parametrize("form,field,write", RUNS, ids=[f"{r[0]}-{r[1]}" for r in RUNS])
def test_corpus_floors_through_envoy(gateway, form, field, write):
    envoy, mock = gateway
    mock.clear()
    build, read = FIELDS[field]
    records = [json.loads(l) for l in CORPUS.read_text().splitlines() if l.strip()]
    for i, rec in enumerate(records):
        text = rec["text"]
        for v in [p["value"] for p in rec["pii"]] + rec["decoys"]:
            text = text.replace(v, write(v))
        body = json.dumps({"model": "gpt-4o-mini", **build(text)}, ensure_ascii=False).encode()
        req = urllib.request.Request(f"{envoy.url}/v1/chat/completions", data=body, headers={
            "content-type": "application/json", "x-record": str(i)})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
    arrived = {int(r["headers"]["x-record"]): read(json.loads(r["body"])) for r in mock.records()}
    assert len(arrived) == len(records)
    total, leaked = defaultdict(int), defaultdict(int)
    decoys = altered = 0
    for i, rec in enumerate(records):
        got = arrived[i]
        for p in rec["pii"]:
            total[p["type"]] += 1
            if p["value"] in as_read(got):
                leaked[p["type"]] += 1
                print(f"LEAK {p['type']}: {got!r}")
        for d in rec["decoys"]:
            decoys += 1
            if write(d) not in got:
                altered += 1
                print(f"DECOY ALTERED {d!r}: {got!r}")
    print(f"\n-- {form} in {field}")
    for t in sorted(total):
        print(f"{t:<12} values {total[t]:>4} leaked {leaked[t]:>3} leak rate {100 * leaked[t] / total[t]:.2f}%")
    print(f"{'DECOYS':<12} {decoys:>11} altered {altered:>3} over-redaction {100 * altered / decoys:.2f}%")
    for t in total:
        if t == "PHONE":
            assert leaked[t] < 0.02 * total[t], "PHONE leak rate must stay under 2%"
        else:
            assert leaked[t] == 0, f"{t} leaked"
    assert altered < 0.01 * decoys, "decoy over-redaction must stay under 1%"
