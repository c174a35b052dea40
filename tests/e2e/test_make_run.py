"""`make run`'s entry point: starts the gateway, prints a working key, stops cleanly on Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import openai

from harness import paths, procs


def test_make_run_serves_the_openai_sdk_and_stops_on_ctrl_c(tmp_path):
    env = {**os.environ, "AIMESH_STATE_DIR": str(tmp_path), "AIMESH_PORT": str(procs.free_port()),
           "AIMESH_ADMIN_PORT": str(procs.free_port())}
    env.pop("OPENAI_API_KEY", None)
    p = subprocess.Popen([sys.executable, "-m", "harness.run"], cwd=paths.REPO / "tests", env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    banner = ""
    try:
        deadline = time.time() + 60
        while "Press Ctrl-C" not in banner:
            line = p.stdout.readline()
            assert line and time.time() < deadline, f"make run did not start:\n{banner}"
            banner += line
        key = (tmp_path / "demo.env").read_text().strip().split("=", 1)[1]
        assert key.startswith("sk-aimesh-") and key in banner
        assert f"127.0.0.1:{env['AIMESH_PORT']}" in banner
        envoy_pid = int(re.search(r"Envoy pid: (\d+)", banner).group(1))

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{env['AIMESH_PORT']}/v1", api_key=key, max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0, out
        assert "aimesh stopped" in out
        assert not os.path.exists(f"/proc/{envoy_pid}") or "zombie" in open(f"/proc/{envoy_pid}/status").read().lower()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
