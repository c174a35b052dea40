"""Installs the peer gateways for `make bench-peers` into `.peers/` (idempotent).

LiteLLM is pinned to 1.106.10: later releases pin exact versions of their own helper packages
(`litellm-enterprise`, `litellm-proxy-extras`) that the package index reachable here does not
serve. LiteLLM's recent releases also require `certifi>=2026.10.19`, newer than the package index reachable
here serves; the certifi pin is about its CA bundle date and means nothing for a loopback
benchmark. So LiteLLM is installed without dependencies, then its declared dependencies (base
and `proxy` extra) are installed with only that pin relaxed.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import peers

RELAX = {"certifi"}


def litellm() -> None:
    venv = peers.PEERS / "litellm"
    stamp = venv / f".installed-{peers.LITELLM_VERSION}"
    if stamp.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(venv / "bin" / "pip"), "download", "--quiet", "--no-deps", "-d", tmp,
                        f"litellm=={peers.LITELLM_VERSION}"], check=True)
        wheel = next(Path(tmp).glob("litellm-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            meta = z.read(f"litellm-{peers.LITELLM_VERSION}.dist-info/METADATA").decode()
        reqs = []
        for line in meta.splitlines():
            if not line.startswith("Requires-Dist: "):
                continue
            spec = line.removeprefix("Requires-Dist: ")
            req, _, marker = spec.partition(";")
            if marker and "extra ==" in marker and "'proxy'" not in marker:
                continue
            marker = re.sub(r"\s*(and\s+)?extra\s*==\s*'proxy'", "", marker).strip()
            name = re.split(r"[\s<>=!~\[(]", req.strip(), maxsplit=1)[0]
            if name.lower() in RELAX:
                req = name
            reqs.append(f"{req.strip()} ; {marker}" if marker else req.strip())
        req_file = Path(tmp) / "req.txt"
        req_file.write_text("\n".join(reqs) + "\n")
        subprocess.run(pip + ["--no-deps", str(wheel)], check=True)
        subprocess.run(pip + ["-r", str(req_file)], check=True)
    stamp.touch()


def portkey() -> None:
    root = peers.PEERS / "portkey"
    stamp = root / f".installed-{peers.PORTKEY_VERSION}"
    if stamp.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund",
                    f"@portkey-ai/gateway@{peers.PORTKEY_VERSION}"], cwd=root, check=True)
    stamp.touch()


if __name__ == "__main__":
    portkey()
    litellm()
