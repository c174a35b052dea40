"""The labels in an aimesh stat's flat name, whichever build wrote it.

The Wasm builds spell a label the short way (`...requests.model.gpt-4o.key_id.alice`) and the
gateway's `stats_tags` turn each pair into a tag; the native build defines the same families
with real labels named as those tags, so its flat names carry the tag names
(`...requests.gen_ai_response_model.gpt-4o.aimesh_key_id.alice`). Tests that read flat names
go through `labels`, which reads both. The label-tag pairs come from the shipped `stats_tags`
(envoy/token-accounting.yaml), which a Rust test holds to `aimesh_host::family::TAGS`.
"""
from __future__ import annotations

import re
from functools import cache

from . import demo


@cache
def tag_labels() -> dict[str, str]:
    """Tag name -> the short label its regex captures (`gen_ai_response_model` -> `model`)."""
    out = {}
    for t in demo.shipped_accounting()["stats_config"]["stats_tags"]:
        m = re.search(r"\(\\\.(\w+)\\\.", t["regex"])
        if m:
            out[t["tag_name"]] = m.group(1)
    return out


def labels(name: str, wanted: set[str] | None = None) -> dict[str, str]:
    """Short label -> value of every known label pair in `name` (a `meta_<key>` label keeps
    its name in both builds); `wanted` limits which labels are looked for."""
    short = tag_labels()
    known = set(short.values()) if wanted is None else wanted
    parts = name.split(".")
    out = {}
    for i in range(len(parts) - 1):
        label = short.get(parts[i], parts[i])
        if label in known or (wanted is None and label.startswith("meta_")):
            out.setdefault(label, parts[i + 1])
    return out
