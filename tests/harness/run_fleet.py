"""`make run-fleet`: the demo gateway as a fleet of two Envoys sharing one count on Redis.

Redis (a local `redis-server` of its own, no persistence), the `aimesh-limits` service in front
of it, `aimesh-xds` watching `.aimesh/fleet/gateway.yaml` (the demo's, with `limits.store:
redis`; edit it live as with `make run`) and two Envoys on `${AIMESH_PORT:-10000}` and the port
after it, both fed by that one file. A key's limits and budgets hold across both Envoys.
"""
from __future__ import annotations

import sys

import yaml

from . import demo, fleet, procs, xds
from .run import supervise


def fleet_state(path, key: str, mock_url: str, private_url: str, limits: fleet.Limits,
                port: int, access_log: str) -> None:
    """The demo's gateway.yaml at `path` with its limits on Redis through `limits`; a later run
    keeps the file and points it at this run's service."""
    gw = xds.demo_state(path, key, mock_url, port=port, openai=False, access_log=access_log,
                        private_url=private_url)
    current = gw.get("limits")
    rules = current.get("rules", []) if isinstance(current, dict) else (current or [])
    if isinstance(current, dict) and current.get("service") == limits.url:
        return
    base = current if isinstance(current, dict) else {}
    gw["limits"] = {**base, **fleet.fleet_limits(limits, rules, timeout=base.get("timeout", "200ms"))}
    xds.write_gateway(path, yaml.safe_dump(gw, sort_keys=False))


def main() -> int:
    port = demo.env_port("AIMESH_PORT", 10000)
    key = demo.demo_key()
    gw_path = (demo.STATE_DIR / "fleet" / "gateway.yaml").resolve()
    audit = (demo.STATE_DIR / "fleet" / "access.log").resolve()
    started: list[procs._Proc] = []
    try:
        redis = fleet.Redis()
        started.append(redis)
        limits = fleet.Limits(redis)
        started.append(limits)
        mock = procs.MockLLM("local-mock", record=False)
        started.append(mock)
        private = procs.MockLLM(xds.PRIVATE_PROVIDER, record=False)
        started.append(private)
        fleet_state(gw_path, key, mock.url, private.url, limits, port=port, access_log=str(audit))
        # One file, one aimesh-xds per Envoy: each serves the listener on its Envoy's port.
        envoys, servers = [], []
        for i in range(2):
            server = xds.XdsServer(config_path=gw_path, poll_ms=200, listener_port=port + i)
            started.append(server)
            servers.append(server)
            boot = xds.shipped_bootstrap(server.port, admin_port=0)
            boot["node"]["id"] = f"aimesh-fleet-{i}"
            envoys.append(procs.Envoy(boot, concurrency=1))
            started.append(envoys[-1])
        server = servers[0]
    except Exception as e:  # noqa: BLE001 - report and clean up whatever failed to start
        for p in reversed(started):
            p.stop()
        print(f"aimesh fleet failed to start: {e}", file=sys.stderr)
        return 1
    urls = [f"http://127.0.0.1:{e.port}/v1" for e in envoys]
    demo.write_demo_env(key, urls[0])
    print(f"""
aimesh fleet is running: two Envoys sharing one count on Redis
  gateways: {urls[0]}  {urls[1]}
  Redis {redis.url}  limits service {limits.url}  xDS {server.admin}/healthz
Demo key: {key}   Config: {gw_path} (limits.store: redis; edit it live)
Try the same key on both: its requests/minute, tokens/minute and budget are fleet-wide.
Press Ctrl-C to stop.
""", flush=True)
    return supervise(started, "aimesh fleet")


if __name__ == "__main__":
    sys.exit(main())
