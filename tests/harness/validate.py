"""`make validate`: `envoy --mode validate` on every Envoy config in envoy/ and on the demo.

Run from the repo root so configs can name the built filters as
`target/wasm32-wasip1/release/*.wasm`. Files ending in `.snippet.yaml` are fragments, not
bootstraps, and are skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import demo, paths


def configs() -> list[Path]:
    return sorted(p for p in paths.ENVOY_DIR.rglob("*.yaml") if not p.name.endswith(".snippet.yaml"))


def validate(path: Path) -> tuple[bool, str]:
    """Runs Envoy's validation mode (which also runs every filter's on_configure)."""
    # The generated demo reads OPENAI_API_KEY in header-auth's VM; give validation a stand-in.
    env = {**os.environ, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or "sk-validate-only"}
    r = subprocess.run([str(paths.ENVOY), "--mode", "validate", "-c", str(path), "-l", "warn",
                        "--disable-hot-restart"],
                       cwd=paths.REPO, capture_output=True, text=True, timeout=120, env=env)
    return r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def demo_file(tmp: Path) -> Path:
    """The config `make run` generates, written out for validation."""
    p = tmp / "demo-generated.json"
    p.write_text(json.dumps(demo.demo_config("sk-aimesh-validate", 18000, port=10000, admin_port=9901,
                                             openai_key="sk-validate-only")))
    return p


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in configs() + [demo_file(Path(tmp))]:
            ok, out = validate(path)
            name = path.relative_to(paths.REPO) if path.is_relative_to(paths.REPO) else "make run (generated)"
            print(f"{'ok  ' if ok else 'FAIL'} {name}")
            if not ok:
                failed += 1
                print(out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
