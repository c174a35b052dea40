"""`make oci`: the filters as OCI images in the Wasm image format Istio and Envoy Gateway pull,
round-tripped through a real registry (Debian's docker-registry 2.8) with an independent client
(skopeo), and reproducible.

Images are built with the same command `make oci` runs (deploy/wasm_oci.py), from the .wasm files
of `make build`.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness import paths, registry

WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
COMPAT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# What `make oci` packs: the five filters and the one-filter chain.
MODULES = [paths.wasm(f) for f in paths.FILTERS + ["mcp", "translate"]] + [paths.CHAIN_WASM]


def build(out: Path, modules: list[Path] = MODULES, version: str | None = None) -> dict[str, dict]:
    return registry.build_images(out, modules, version)


def blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    # The layout's blobs are content-addressed: a blob that does not hash to its name is corrupt.
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def manifest_of(layout: Path, tag: str | None = None) -> tuple[str, dict]:
    """The digest and manifest tagged `tag` (None: the layout's only one)."""
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    if tag is None:
        (entry,) = entries
    else:
        (entry,) = [e for e in entries if e["annotations"]["org.opencontainers.image.ref.name"] == tag]
    return entry["digest"], json.loads(blob(layout, entry["digest"]))


def wasm_layer(layout: Path) -> bytes:
    """The module as an image fetcher reads the oci variant: Istio's needs exactly two layers
    (module and runtime config) when the module layer is not a tar+gzip, and takes WASM_LAYER's."""
    _, manifest = manifest_of(layout)
    assert len(manifest["layers"]) == 2, manifest
    (layer,) = [l for l in manifest["layers"] if l["mediaType"] == WASM_LAYER]
    (config,) = [l for l in manifest["layers"] if l["mediaType"] == WASM_CONFIG]
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert json.loads(blob(layout, config["digest"]))["type"] == "envoy_proxy"
    data = blob(layout, layer["digest"])
    assert len(data) == layer["size"]
    return data


def compat_plugin(layout: Path) -> bytes:
    """The module as an image fetcher reads the compat variant: the last layer, an OCI tar+gzip
    layer, its `plugin.wasm`; the manifest carries `module.wasm.image/variant: compat`."""
    _, manifest = manifest_of(layout)
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    layer = manifest["layers"][-1]
    assert layer["mediaType"] == COMPAT_LAYER
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layer["digest"])))) as tar:
        member = tar.extractfile("plugin.wasm")
        assert member is not None
        return member.read()


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
        # The compat variant, same way.
        registry.push(Path(image["layout"]), image["compat_tag"], reg, repo)
        pulled = tmp_path / "pulled-compat" / image["name"]
        registry.pull_by_digest(reg, repo, image["compat_manifest"], pulled)
        assert manifest_of(pulled)[0] == image["compat_manifest"] != image["manifest"]
        assert compat_plugin(pulled) == module_bytes


def test_make_oci_packs_every_filter_and_the_chain():
    """The module list of the Makefile's `oci` target (a dry run prints the command) is the one
    these tests build: a renamed crate variable once left it packing nothing."""
    out = subprocess.run(["make", "-n", "oci"], cwd=paths.REPO, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    [line] = [l for l in out.splitlines() if "wasm_oci.py" in l]
    packed = sorted(paths.REPO / a for a in line.split() if a.endswith(".wasm"))
    assert packed == sorted(MODULES), line


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
        assert second[name]["compat_manifest"] == image["compat_manifest"]
        a, b = Path(image["layout"]), Path(second[name]["layout"])
        assert sorted(p.relative_to(a) for p in a.rglob("*")) == sorted(p.relative_to(b) for p in b.rglob("*"))
        for p in a.rglob("*"):
            if p.is_file():
                assert p.read_bytes() == (b / p.relative_to(a)).read_bytes(), p
        for tag in (image["tag"], image["compat_tag"]):
            _, manifest = manifest_of(a, tag)
            assert "created" not in json.dumps(manifest) + blob(a, manifest["config"]["digest"]).decode()
    # Content-addressed: one byte more in the module (a custom section) is another image.
    changed = tmp_path / "changed" / MODULES[0].name
    changed.parent.mkdir()
    changed.write_bytes(MODULES[0].read_bytes() + b"\x00\x02\x01x")
    other = build(tmp_path / "c", [changed])
    name = MODULES[0].stem.replace("_", "-")
    assert other[name]["manifest"] != first[name]["manifest"]
    assert other[name]["compat_manifest"] != first[name]["compat_manifest"]
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
