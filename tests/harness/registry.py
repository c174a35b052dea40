"""A real OCI registry (Debian's `docker-registry`, distribution 2.8) and the `skopeo` client, for
the tests of `make oci` images.

The registry cannot bind port 0 and report it, so it gets a port free a moment ago and is
retried on another one if that was taken in between. Its storage and config live in the
process's own temp dir; nothing touches /etc/docker/registry or a system service.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import paths, procs

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
# The image tool `make oci` runs.
OCI_TOOL = paths.REPO / "deploy" / "wasm_oci.py"


def build_images(out: Path, modules: list[Path], version: str | None = None) -> dict[str, dict]:
    """Runs the image tool as `make oci` does; its digests.json by image name (name, tag,
    manifest and module digests, layout directory)."""
    args = [sys.executable, str(OCI_TOOL), "--out", str(out), *map(str, modules)]
    if version:
        args += ["--version", version]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    return {d["name"]: d for d in json.loads((out / "digests.json").read_text())}


class Registry(procs._Proc):
    """`docker-registry serve` on 127.0.0.1; `host` is `127.0.0.1:PORT` for image references."""

    name = "registry"

    def __init__(self, timeout: float = 20.0) -> None:
        super().__init__()
        for _ in range(3):
            self.port = procs.free_port()
            if self._start(timeout):
                break
            self.stop()
        else:
            raise RuntimeError(f"docker-registry did not start:\n{self.log()[-4000:]}")
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"

    def _start(self, timeout: float) -> bool:
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.dir / 'data'}}}}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}'}}\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log,
                                     start_new_session=True)
        procs._LIVE.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def blob_url(self, repo: str, digest: str) -> str:
        """The registry's own URL of one blob (a plain GET, no auth on this test registry)."""
        return f"{self.url}/v2/{repo}/blobs/{digest}"


def skopeo(*args: str, timeout: float = 120.0) -> str:
    """Runs skopeo; its stderr is in the error when it fails."""
    out = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out.stdout


def push(layout: Path, tag: str, registry: Registry, repo: str) -> None:
    """Copies an OCI layout's image to the registry unchanged (same manifest bytes, same digest)."""
    skopeo("copy", "--dest-tls-verify=false", "--preserve-digests",
           f"oci:{layout}:{tag}", f"docker://{registry.host}/{repo}:{tag}")


def pull_by_digest(registry: Registry, repo: str, digest: str, dest: Path) -> None:
    """Copies `repo@digest` from the registry into a fresh OCI layout at `dest`, tagged `pulled`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests",
           f"docker://{registry.host}/{repo}@{digest}", f"oci:{dest}:pulled")
