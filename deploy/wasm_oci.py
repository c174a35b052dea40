#!/usr/bin/env python3
"""Packs aimesh's .wasm filters as OCI images in the Wasm image format Istio and Envoy Gateway pull.

`make oci` runs it; each module becomes one OCI image layout directory (`target/oci/<name>/`) that
`skopeo copy oci:target/oci/<name>:<version> docker://REGISTRY/...` pushes.

Each layout holds both variants of the Wasm image spec (solo-io/wasm), which Istio's and Envoy
Gateway's image fetchers both read. Tag `<version>`: the *oci* variant (spec.md), exactly two
layers, the raw module (`application/vnd.module.wasm.content.layer.v1+wasm`) and the runtime
config (`application/vnd.module.wasm.config.v1+json`); a single raw-module layer is refused by
those fetchers ("number of layers must be 2"). Its module layer's digest is the module's own
sha256, which is also what a plain Envoy's `remote` code source checks. Tag `<version>-compat`:
the *compat* variant (spec-compat.md), one tar+gzip layer holding `plugin.wasm`, for tools and
registries that know only container images.

Reproducible: the only inputs are the module bytes, its name and the version. No timestamps, no
host, no user; JSON is written with sorted keys and no whitespace, so the same module always
gives the same manifest digest (the compat layer's gzip bytes also depend on zlib's version).

Stdlib only: it runs with any python3 (`make oci` uses the project venv).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
# The proxy-wasm ABI the filters export (proxy-wasm Rust SDK 0.2: `proxy_abi_version_0_2_1`).
ABI_VERSION = "proxy_abi_version_0_2_1"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
# The compat variant: one ordinary image layer holding `plugin.wasm`, for tools and registries
# that know only container images (docker, podman, crane); Istio and Envoy Gateway read it too.
COMPAT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
COMPAT_SUFFIX = "-compat"


def compat_layer(module: bytes) -> tuple[bytes, bytes]:
    """(tar, tar.gz) of `plugin.wasm` with every varying field fixed: mtime 0, root owner, no names;
    gzip without a timestamp. Byte-identical for the same module with the same zlib."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime = len(module), 0o644, 0
        tar.addfile(info, io.BytesIO(module))
    return raw.getvalue(), gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def canonical(obj: dict) -> bytes:
    """The one byte form of a JSON document: the digest depends on content, not on formatting."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_name(wasm: Path) -> str:
    """`aimesh_token_accounting.wasm` -> `aimesh-token-accounting` (registry names take no `_`)."""
    return wasm.stem.replace("_", "-")


class Image:
    """The blobs and manifest of one module's image; `manifest_digest` is what Istio's `sha256`
    and Envoy Gateway's `sha256` name."""

    def __init__(self, name: str, module: bytes, version: str, filename: str = "plugin.wasm") -> None:
        if not module.startswith(b"\0asm"):
            raise ValueError(f"{name}: not a Wasm module (no \\0asm magic)")
        self.name = name
        self.version = version
        self.module = module
        self.runtime_config = canonical({
            "type": "envoy_proxy",
            "abiVersions": [ABI_VERSION],
            # Every aimesh filter takes the root id its Envoy config names, so none is fixed here.
            "config": {"root_ids": []},
        })
        config_desc = self._desc(WASM_CONFIG, self.runtime_config, "runtime-config.json")
        self.manifest = canonical({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {k: v for k, v in config_desc.items() if k != "annotations"},
            # The title is the file name `oras pull` writes: the one `aimesh-xds --wasm-dir` expects.
            "layers": [self._desc(WASM_LAYER, module, filename), config_desc],
            "annotations": {
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.version": version,
                "module.wasm.image/variant": "oci",
            },
        })
        self.manifest_digest = digest(self.manifest)
        self.module_digest = digest(module)

        tar, self.compat_blob = compat_layer(module)
        # No `created`: a container image config without it is valid, and keeps the digest stable.
        self.compat_config = canonical({"architecture": "wasm", "os": "wasip1",
                                        "rootfs": {"type": "layers", "diff_ids": [digest(tar)]}})
        self.compat_manifest = canonical({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": IMAGE_CONFIG, "digest": digest(self.compat_config),
                       "size": len(self.compat_config)},
            "layers": [{"mediaType": COMPAT_LAYER, "digest": digest(self.compat_blob),
                        "size": len(self.compat_blob)}],
            "annotations": {
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.version": version,
                # Required by the spec for a compat image with the OCI layer media type.
                "module.wasm.image/variant": "compat",
            },
        })
        self.compat_digest = digest(self.compat_manifest)

    @staticmethod
    def _desc(media_type: str, data: bytes, title: str) -> dict:
        return {"mediaType": media_type, "digest": digest(data), "size": len(data),
                "annotations": {"org.opencontainers.image.title": title}}

    def write_layout(self, out: Path) -> None:
        """An OCI image layout with the oci variant tagged `version` and the compat variant
        `version`-compat (written anew each time)."""
        if out.exists():
            shutil.rmtree(out)
        blobs = out / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for data in (self.module, self.runtime_config, self.manifest, self.compat_blob,
                     self.compat_config, self.compat_manifest):
            (blobs / digest(data).removeprefix("sha256:")).write_bytes(data)
        (out / "oci-layout").write_bytes(canonical(LAYOUT_VERSION))
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [{"mediaType": MANIFEST, "digest": digest(m), "size": len(m),
                                "annotations": {"org.opencontainers.image.ref.name": tag}}
                               for m, tag in [(self.manifest, self.version),
                                              (self.compat_manifest, self.version + COMPAT_SUFFIX)]]}
        (out / "index.json").write_bytes(canonical(index))


def workspace_version(cargo_toml: Path) -> str:
    """`[workspace.package] version` of the repo's Cargo.toml: the images' tag."""
    m = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo_toml.read_text(),
                  re.M | re.S)
    if not m:
        raise ValueError(f"{cargo_toml}: no [workspace.package] version")
    return m.group(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("modules", nargs="+", type=Path, help=".wasm files")
    p.add_argument("--out", type=Path, required=True, help="directory for one layout per module")
    p.add_argument("--version", help="tag (default: the workspace version in Cargo.toml)")
    args = p.parse_args(argv)
    version = args.version or workspace_version(Path(__file__).resolve().parents[1] / "Cargo.toml")
    lines = []
    for wasm in args.modules:
        try:
            image = Image(image_name(wasm), wasm.read_bytes(), version, wasm.name)
        except (OSError, ValueError) as e:
            print(f"wasm_oci: {e}", file=sys.stderr)
            return 1
        image.write_layout(args.out / image.name)
        lines.append({"name": image.name, "tag": version, "manifest": image.manifest_digest,
                      "module": image.module_digest, "compat_tag": version + COMPAT_SUFFIX,
                      "compat_manifest": image.compat_digest, "layout": str(args.out / image.name)})
    # One line per image, also kept next to the layouts: what to put in `sha256` fields.
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digests.json").write_bytes(json.dumps(lines, indent=1).encode() + b"\n")
    for line in lines:
        print(f"{line['name']}:{line['tag']} manifest {line['manifest']} module {line['module']}"
              f" ({line['compat_tag']}: {line['compat_manifest']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
