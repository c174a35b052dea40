"""Claude Code, the real agent client, for the tests that drive it through the gateway.

`make claude-code` installs it with npm under `.aimesh/node`; the tests install it on first use
when npm is present, so a fresh clone runs them without a manual step.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from harness import paths

LOCAL = paths.REPO / ".aimesh" / "node" / "node_modules" / ".bin" / "claude"


def cli() -> str | None:
    """The `claude` CLI: `AIMESH_CLAUDE`, else the project's install (made now if npm is
    present), else `claude` on the PATH; `None` when there is none and npm is missing."""
    if os.environ.get("AIMESH_CLAUDE"):
        return os.environ["AIMESH_CLAUDE"]
    if not LOCAL.exists() and shutil.which("npm"):
        subprocess.run(["make", "-C", str(paths.REPO), "claude-code"], check=True, timeout=600,
                       capture_output=True)
    if LOCAL.exists():
        return str(LOCAL)
    return shutil.which("claude")
