"""`make run`: the demo gateway in the foreground until Ctrl-C.

Envoy boots from `envoy/ads-bootstrap.yaml` and gets everything else from `aimesh-xds serve`,
which watches `.aimesh/gateway.yaml` (written from the demo on first run): edit the file while
the gateway runs and valid changes apply live.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from . import demo, procs, xds
from .mcp_demo import McpServer


BUILDS = {
    "separate": "separate (five Wasm filters, one VM each)",
    "chain": "chain (one Wasm filter, aimesh_chain.wasm)",
    "native": "native (Envoy dynamic module target/native/libaimesh.so, no VM)",
}


def supervise(started: list, name: str) -> int:
    """Until Ctrl-C, SIGTERM or one of `started` exiting (its log tail is printed); then stops
    them all, last started first. Shared by `make run` and `make run-fleet`."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.is_set():
            dead = [p for p in started if not p.alive()]
            if dead:
                print(f"{name}: {dead[0].name} exited; stopping", file=sys.stderr)
                print(dead[0].log()[-4000:], file=sys.stderr)
                break
            stop.wait(0.5)
    finally:
        for p in reversed(started):
            p.stop()
        print(f"{name} stopped", flush=True)
    return 0


def main() -> int:
    port = demo.env_port("AIMESH_PORT", 10000)
    admin_port = demo.env_port("AIMESH_ADMIN_PORT", 9901)
    xds_port = demo.env_port("AIMESH_XDS_PORT", 0)
    key = demo.demo_key()
    openai_key = os.environ.get("OPENAI_API_KEY") or None
    gw_path = demo.STATE_DIR / "gateway.yaml"
    audit = demo.STATE_DIR / "access.log"
    started: list[procs._Proc] = []
    try:
        mock = procs.MockLLM("local-mock", record=False)
        started.append(mock)
        private = procs.MockLLM(xds.PRIVATE_PROVIDER, record=False)
        started.append(private)
        mcp = McpServer()
        started.append(mcp)
        gw = xds.demo_state(gw_path.resolve(), key, mock.url, port=port, openai=bool(openai_key),
                            access_log=str(audit.resolve()), private_url=private.url,
                            mcp_url=mcp.url)
        server = xds.XdsServer(config_path=gw_path.resolve(), port=xds_port, poll_ms=200)
        started.append(server)
        # Envoy gets OPENAI_API_KEY by inheritance; header-auth reads it (host_env_keys).
        envoy = procs.Envoy(xds.shipped_bootstrap(server.port, admin_port=admin_port), concurrency=2)
        started.append(envoy)
    except Exception as e:  # noqa: BLE001 - report and clean up whatever failed to start
        for p in reversed(started):
            p.stop()
        print(f"aimesh failed to start: {e}", file=sys.stderr)
        return 1
    base = f"http://127.0.0.1:{envoy.port}/v1"
    build = (gw.get("listener") or {}).get("filter_build", "separate")
    demo.write_demo_env(key, base)
    vms = [v.get("name") for v in gw.get("virtual_models") or []]
    has_openai = any(p.get("kind") == "openai" for p in gw.get("providers") or [])
    openai_note = ""
    if has_openai:
        openai_note = ("; openai/<model> go to OpenAI (key injected by the gateway from OPENAI_API_KEY"
                       + ("" if openai_key else ", which is NOT set: those requests will fail") + ")")
    print(f"""
aimesh is running: gateway {base}  admin {envoy.admin}  xDS {server.admin}/healthz
ADS (gRPC) for more Envoys: 127.0.0.1:{server.port} (envoy/ads-bootstrap.yaml with its aimesh-xds
cluster on this port, or AIMESH_XDS_PORT to pin it)
Demo key: {key}
Models: {", ".join(vms) or "none"} (virtual) and any other name go to a local fake OpenAI provider{openai_note};
{xds.PRIVATE_MODEL} goes only to a second one, {xds.PRIVATE_PROVIDER} (`providers[].models`).
GET {base}/models lists what your key may use.
Config: {gw_path} - edit it while the gateway runs: valid changes apply live (invalid ones are
refused and logged in {server.log_path}; `aimesh-xds validate` checks a file first).
Audit log: {audit}
Filter build: {BUILDS.get(build, build)} (listener.filter_build; AIMESH_BUILD=separate|chain|native make run)

  source {demo.DEMO_ENV}   # exports AIMESH_DEMO_KEY and AIMESH_BASE_URL
  curl -s $AIMESH_BASE_URL/chat/completions -H "Authorization: Bearer $AIMESH_DEMO_KEY" \\
       -H 'content-type: application/json' \\
       -d '{{"model":"vm-demo","messages":[{{"role":"user","content":"hello"}}]}}'

  python3 -c 'import os; from openai import OpenAI; \\
c = OpenAI(base_url=os.environ["AIMESH_BASE_URL"], api_key=os.environ["AIMESH_DEMO_KEY"]); \\
print(c.chat.completions.create(model="vm-demo", messages=[{{"role":"user","content":"hi"}}]).choices[0].message.content)'

Anthropic Messages: claude-sonnet-4-5 and claude-haiku go to the fake provider as kind: anthropic
(`/v1/messages`, x-api-key injected by the gateway). Claude Code or the anthropic SDK:

  export ANTHROPIC_BASE_URL={base.removesuffix("/v1")} ANTHROPIC_API_KEY={key}
  python3 -c 'import anthropic; \\
print(anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=64, \\
messages=[{{"role":"user","content":"hi"}}]).content[0].text)'

MCP: /mcp/demo is a demo FastMCP server (tools add, echo, search_docs, delete_all); the demo key
may not call delete_all and does not see it listed. With the official mcp SDK:

  .venv/bin/python - <<'EOF'
import asyncio, os, httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
async def main():
    h = httpx.AsyncClient(headers={{"authorization": "Bearer " + os.environ["AIMESH_DEMO_KEY"]}})
    url = os.environ["AIMESH_BASE_URL"].removesuffix("/v1") + "/mcp/demo"
    async with h, streamable_http_client(url, http_client=h) as (r, w, _), ClientSession(r, w) as s:
        await s.initialize()
        print([t.name for t in (await s.list_tools()).tools])
        print((await s.call_tool("add", {{"a": 2, "b": 3}})).content[0].text)
asyncio.run(main())
EOF

Envoy log: {envoy.log_path}   Envoy pid: {envoy.proc.pid}   xDS server pid: {server.proc.pid}
Press Ctrl-C to stop.
""", flush=True)
    return supervise(started, "aimesh")


if __name__ == "__main__":
    sys.exit(main())
