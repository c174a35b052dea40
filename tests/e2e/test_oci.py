"""`make oci`: the filters as OCI images in the Wasm image format Istio and Envoy Gateway pull,
round-tripped through a real registry (Debian's docker-registry 2.8) with an independent client
(skopeo), and reproducible.

Images are built with the same command `make oci` runs (deploy/wasm_oci.py), from the .wasm files
of `make build`.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import paths, registry

WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
# What `make oci` packs: the five filters and the one-filter chain.
MODULES = [paths.wasm(f) for f in paths.FILTERS] + [paths.CHAIN_WASM]


def build(out: Path, modules: list[Path] = MODULES, version: str | None = None) -> dict[str, dict]:
    return registry.build_images(out, modules, version)


def blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    # The layout's blobs are content-addressed: a blob that does not hash to its name is corrupt.
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def manifest_of(layout: Path) -> tuple[str, dict]:
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    return entry["digest"], json.loads(blob(layout, entry["digest"]))


def wasm_layer(layout: Path) -> bytes:
    """The module as an image fetcher reads it: Istio's needs exactly two layers (module and
    runtime config) when the module layer is not a tar+gzip, and takes the one of WASM_LAYER."""
    _, manifest = manifest_of(layout)
    assert len(manifest["layers"]) == 2, manifest
    (layer,) = [l for l in manifest["layers"] if l["mediaType"] == WASM_LAYER]
    (config,) = [l for l in manifest["layers"] if l["mediaType"] == WASM_CONFIG]
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert json.loads(blob(layout, config["digest"]))["type"] == "envoy_proxy"
    data = blob(layout, layer["digest"])
    assert len(data) == layer["size"]
    return data


def test_images_round_trip_through_a_real_registry_by_digest(tmp_path):
    built = build(tmp_path / "oci")
    assert sorted(built) == sorted(m.stem.replace("_", "-") for m in MODULES)
    reg = registry.Registry()
    for module in MODULES:
        image = built[module.stem.replace("_", "-")]
        repo = f"aimesh/{image['name']}"
        registry.push(Path(image["layout"]), image["tag"], reg, repo)
        # The registry serves the manifest under the digest the build printed...
        raw = registry.skopeo("inspect", "--raw", "--tls-verify=false",
                              f"docker://{reg.host}/{repo}:{image['tag']}")
        assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == image["manifest"]
        # ...and a client pulling by that digest into an empty directory gets the built module.
        pulled = tmp_path / "pulled" / image["name"]
        registry.pull_by_digest(reg, repo, image["manifest"], pulled)
        digest, _ = manifest_of(pulled)
        assert digest == image["manifest"]
        module_bytes = module.read_bytes()
        assert wasm_layer(pulled) == module_bytes
        # The layer digest is the module's sha256: what a `remote` code source checks.
        assert image["module"] == "sha256:" + hashlib.sha256(module_bytes).hexdigest()


def test_building_twice_gives_the_same_digest(tmp_path):
    # Copies with other names, other directories and other mtimes: none of it may reach the image.
    copies = []
    for module in MODULES[:2]:
        copy = tmp_path / "copy" / module.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(module.read_bytes())
        os.utime(copy, (1_000_000, 1_000_000))
        copies.append(copy)
    first = build(tmp_path / "a", MODULES[:2])
    second = build(tmp_path / "b", copies)
    for name, image in first.items():
        assert second[name]["manifest"] == image["manifest"]
        a, b = Path(image["layout"]), Path(second[name]["layout"])
        assert sorted(p.relative_to(a) for p in a.rglob("*")) == sorted(p.relative_to(b) for p in b.rglob("*"))
        for p in a.rglob("*"):
            if p.is_file():
                assert p.read_bytes() == (b / p.relative_to(a)).read_bytes(), p
        _, manifest = manifest_of(a)
        assert "created" not in json.dumps(manifest)
    # Content-addressed: one byte more in the module (a custom section) is another image.
    changed = tmp_path / "changed" / MODULES[0].name
    changed.parent.mkdir()
    changed.write_bytes(MODULES[0].read_bytes() + b"\x00\x02\x01x")
    other = build(tmp_path / "c", [changed])
    name = MODULES[0].stem.replace("_", "-")
    assert other[name]["manifest"] != first[name]["manifest"]
    # The version is an annotation of the manifest: a new release is a new digest, even for the
    # same module.
    assert build(tmp_path / "d", MODULES[:1], version="9.9.9")[name]["manifest"] != first[name]["manifest"]


@pytest.mark.parametrize("content,message", [
    (b"not wasm", "not a Wasm module"),
    (b"", "not a Wasm module"),
], ids=["not wasm", "empty"])
def test_a_file_that_is_not_a_module_is_refused(tmp_path, content, message):
    bad = tmp_path / "aimesh_bad.wasm"
    bad.write_bytes(content)
    out = subprocess.run([sys.executable, str(registry.OCI_TOOL), "--out", str(tmp_path / "oci"), str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and message in out.stderr and not (tmp_path / "oci" / "aimesh-bad").exists()
