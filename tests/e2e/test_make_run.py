"""`make run`'s entry point: starts the gateway, prints a working key, stops cleanly on Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import openai
import yaml

from harness import demo, paths, procs, xds


def readme_block(lang: str, containing: str) -> str:
    text = (paths.REPO / "README.md").read_text()
    return next(b for b in re.findall(rf"```{lang}\n(.*?)```", text, re.S) if containing in b)


def run_readme_examples(demo_env) -> None:
    """The README's shell and Python examples, verbatim, in a shell that only sourced demo.env."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIMESH_")}
    sh = readme_block("sh", "demo.env").replace(".aimesh/demo.env", str(demo_env))
    out = subprocess.run(["bash", "-euc", sh], env=clean, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '"choices"' in out.stdout, out
    py = f"source {demo_env}\n{sys.executable} - <<'EOF'\n{readme_block('python', 'OpenAI(')}EOF\n"
    out = subprocess.run(["bash", "-euc", py], env=clean, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip(), out


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
        key = demo.demo_key(tmp_path / "demo.env")
        assert key.startswith("sk-aimesh-") and key in banner
        assert f"127.0.0.1:{env['AIMESH_PORT']}" in banner
        run_readme_examples(tmp_path / "demo.env")
        # The banner's MCP snippet, verbatim: the demo key sees and calls what it may.
        snippet = banner[banner.index("  .venv/bin/python - <<'EOF'"):]
        snippet = snippet[:snippet.index("\nEOF\n") + 5].strip().replace(".venv/bin/python", sys.executable)
        out = subprocess.run(["bash", "-euc", f"source {tmp_path / 'demo.env'}\n{snippet}\n"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.split("\n")[:2] == ["['add', 'echo', 'search_docs']", "5"], out
        # The banner's Anthropic snippet, verbatim: the two variables Claude Code reads, and the
        # anthropic SDK reading them, answered by the fake provider as `kind: anthropic`.
        snippet = banner[banner.index("  export ANTHROPIC_BASE_URL"):]
        snippet = snippet[:snippet.index(".content[0].text)'") + 19].replace("python3", sys.executable)
        out = subprocess.run(["bash", "-euc", snippet], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out
        assert out.stdout.strip() == " ".join(f"mock{i}" for i in range(8)), out
        ads_port = int(re.search(r"ADS \(gRPC\) for more Envoys: 127\.0\.0\.1:(\d+)", banner).group(1))
        socket.create_connection(("127.0.0.1", ads_port), timeout=5).close()
        pids = [int(re.search(rf"{name} pid: (\d+)", banner).group(1)) for name in ("Envoy", "xDS server")]

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{env['AIMESH_PORT']}/v1", api_key=key, max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        # The gateway's own catalogue, and a provider model routed to its provider only.
        ids = [m.id for m in client.models.list().data]
        assert sorted(ids) == sorted([xds.PRIVATE_MODEL, "vm-demo", *demo.CLAUDE_MODELS]), ids
        assert xds.PRIVATE_MODEL in banner and "/v1/models" in banner
        r = client.chat.completions.with_raw_response.create(
            model=xds.PRIVATE_MODEL, messages=[{"role": "user", "content": "hi"}])
        assert r.headers["x-upstream-id"] == xds.PRIVATE_PROVIDER
        r = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.headers["x-upstream-id"] == "local-mock"

        # The gateway runs from the state dir's gateway.yaml over xDS: a model added to the file
        # is served without a restart.
        gw_path = tmp_path / "gateway.yaml"
        assert "apply live" in banner and str(gw_path) in banner
        gw = yaml.safe_load(gw_path.read_text())
        assert [v["name"] for v in gw["virtual_models"]] == ["vm-demo", *demo.CLAUDE_MODELS]
        gw["virtual_models"].append({"name": "vm-added", "targets": [
            {"provider": "local-mock", "model": "gpt-4o"}]})
        xds.write_gateway(gw_path, gw)

        def served() -> bool:
            try:
                return client.chat.completions.create(
                    model="vm-added", messages=[{"role": "user", "content": "hi"}]).model == "gpt-4o"
            except openai.APIError:
                return False
        deadline = time.time() + 20
        while not served():
            assert time.time() < deadline, "the model added to gateway.yaml was never served"
            time.sleep(0.1)
        r = client.chat.completions.with_raw_response.create(
            model="vm-demo", messages=[{"role": "user", "content": "hi"}])
        assert r.headers["x-aimesh-virtual-model"] == "vm-demo"

        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0, out
        assert "aimesh stopped" in out
        audit = [json.loads(l) for l in (tmp_path / "access.log").read_text().splitlines()]
        assert {"gpt-4o-mini", "gpt-4o"} <= {a["model_served"] for a in audit}
        # Catalogue answers (auth replies itself) carry no key id yet: token-accounting, which
        # never saw that request, overwrites auth's filter state (issue 16, item 3).
        assert all(a["key_id"] == "demo" for a in audit if a["path"] != "/v1/models")
        assert any(int(a["cost_micro_usd"]) > 0 for a in audit if a["model_served"] == "gpt-4o"), \
            "the demo's prices reach token-accounting"
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
