"""`make run`: the demo gateway in the foreground until Ctrl-C."""
from __future__ import annotations

import os
import signal
import sys
import threading

from . import demo, procs


def main() -> int:
    port = demo.env_port("AIMESH_PORT", 10000)
    admin_port = demo.env_port("AIMESH_ADMIN_PORT", 9901)
    key = demo.demo_key()
    openai_key = os.environ.get("OPENAI_API_KEY") or None
    mock = procs.MockLLM("local-mock", record=False)
    try:
        cfg = demo.demo_config(key, mock.port, port=port, admin_port=admin_port, openai_key=openai_key,
                               access_log=str(demo.STATE_DIR / "access.log"))
        envoy = procs.Envoy(cfg, concurrency=2)
    except Exception as e:  # noqa: BLE001 - report and clean up whatever failed to start
        mock.stop()
        print(f"aimesh failed to start: {e}", file=sys.stderr)
        return 1
    base = f"http://127.0.0.1:{envoy.port}/v1"
    print(f"""
aimesh is running: gateway http://127.0.0.1:{envoy.port}  admin {envoy.admin}
Demo key (also in .aimesh/demo.env): {key}
Models: vm-demo (a virtual model) and any other name go to a local fake OpenAI provider{"; " + ", ".join("openai/" + m for m in demo.OPENAI_MODELS) + " go to OpenAI (key injected by the gateway)" if openai_key else ""}.
Audit log: {demo.STATE_DIR / "access.log"}

  curl -s {base}/chat/completions -H "Authorization: Bearer {key}" \\
       -H 'content-type: application/json' \\
       -d '{{"model":"vm-demo","messages":[{{"role":"user","content":"hello"}}]}}'

  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="{base}", api_key="{key}"); \\
print(c.chat.completions.create(model="vm-demo", messages=[{{"role":"user","content":"hi"}}]).choices[0].message.content)'

Envoy log: {envoy.log_path}   Envoy pid: {envoy.proc.pid}   Press Ctrl-C to stop.
""", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.is_set():
            if not envoy.alive() or not mock.alive():
                print("a gateway process exited; stopping", file=sys.stderr)
                print(envoy.log()[-4000:], file=sys.stderr)
                break
            stop.wait(0.5)
    finally:
        envoy.stop()
        mock.stop()
        print("aimesh stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
