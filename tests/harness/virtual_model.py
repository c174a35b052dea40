"""Envoy config for the virtual-model filter: target clusters, aggregate fallback clusters,
the upstream instance of the filter and the retry policy that moves between targets.

Used by the virtual-model tests and the bench; the filter README shows the same layout.
"""
from __future__ import annotations

import copy

from . import config

PREVIOUS_PRIORITIES = "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig"
AGGREGATE = "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig"


def target_cluster(name: str, port: int) -> dict:
    """A target's cluster; its endpoint metadata tells the upstream filter which target it is."""
    c = config.cluster(name, port)
    c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["metadata"] = {
        "filter_metadata": {"aimesh": {"cluster": name}}}
    return c


def aggregate_cluster(name: str, children: list[str], upstream_filters: list[dict]) -> dict:
    """Tries `children` in order (one priority level each), running `upstream_filters` per attempt."""
    c = {
        "name": name,
        "connect_timeout": "1s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {"name": "envoy.clusters.aggregate",
                         "typed_config": {"@type": AGGREGATE, "clusters": children}},
        # Retries are fallbacks here: Envoy's default of 3 concurrent retries per cluster would
        # turn a primary outage under load into 503s (upstream_rq_retry_overflow).
        "circuit_breakers": {"thresholds": [{"max_retries": 10000}]},
    }
    # Upstream filters of the aggregate (the route's cluster) run; those of the children do not.
    c["typed_extension_protocol_options"] = config.cluster(
        name, 1, upstream_filters=upstream_filters)["typed_extension_protocol_options"]
    return c


def retry_policy(attempts_per_target: int = 1, num_retries: int = 1, delay: str = "0.001s") -> dict:
    """Route retry policy: after `attempts_per_target` attempts move to the next priority (target).

    The filter sets `x-envoy-max-retries` and the status list per request; this supplies the
    `previous_priorities` plugin, which only route config can. `delay` is the back-off base
    (Envoy's default, 25 ms with jitter, would be added to every fallback hop)."""
    return {
        "retry_on": "retriable-status-codes,connect-failure,reset",
        "retriable_status_codes": [429, 500, 502, 503],
        "num_retries": num_retries,
        "retry_back_off": {"base_interval": delay},
        "retry_priority": {"name": "envoy.retry_priorities.previous_priorities", "typed_config": {
            "@type": PREVIOUS_PRIORITIES, "update_frequency": attempts_per_target}},
    }


def fallback_order(vm: dict, first: int) -> list[int]:
    """Target indexes tried when `first` is the primary: it, then the others by priority."""
    rest = sorted((i for i in range(len(vm["targets"])) if i != first),
                  key=lambda i: (vm["targets"][i].get("priority", 0), i))
    return [first] + rest


def gateway(virtual_models: list[dict], ports: dict[str, int], *, fallback: bool = True,
            pass_through: bool = True, filters_before: list[dict] | None = None,
            default_cluster: str | None = None, route_timeout: str = "30s",
            per_try_timeout: str | None = None, filters_after: list[dict] | None = None,
            upstream_after: list[dict] | None = None) -> dict:
    """Gateway whose targets' `cluster` names are keys of `ports` (cluster -> mock port).

    With `fallback`, every target gets an aggregate cluster `<vm>.<i>` listing it first and the
    others after it, and the upstream instance rewrites the body per attempt."""
    vms = copy.deepcopy(virtual_models)
    clusters = [target_cluster(name, port) for name, port in ports.items()]
    attempts = 1
    if fallback:
        for vm in vms:
            for i, t in enumerate(vm["targets"]):
                t["fallback_cluster"] = f"{vm['name']}.{i}"
            attempts = max(attempts, vm.get("retry", {}).get("attempts_per_target", 1))
        upstream = [config.wasm_filter("virtual-model", {"role": "upstream", "virtual_models": vms})]
        upstream += upstream_after or []
        for vm in vms:
            for i, t in enumerate(vm["targets"]):
                order = [vm["targets"][j]["cluster"] for j in fallback_order(vm, i)]
                clusters.append(aggregate_cluster(t["fallback_cluster"], order, upstream))
    down = config.wasm_filter("virtual-model", {"virtual_models": vms, "pass_through": pass_through})
    policy = retry_policy(attempts) if fallback else None
    if policy and per_try_timeout:
        # A per-try timeout is retried under `reset`: a slow target falls back too.
        policy["per_try_timeout"] = per_try_timeout
    return config.gateway((filters_before or []) + [down] + (filters_after or []), clusters,
                          default_cluster=default_cluster or next(iter(ports)),
                          retry_policy=policy, route_timeout=route_timeout)


class Reply:
    """Status, lower-cased headers and body of one HTTP reply."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, body
        self.text = body.decode(errors="replace")

    def json(self):
        import json
        return json.loads(self.content)


class KeepAlive:
    """A tiny HTTP/1.1 client over one kept-alive connection (thousands of requests, no deps)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        import http.client
        import urllib.parse
        u = urllib.parse.urlsplit(url)
        self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

    def post(self, path: str, body: str | bytes, headers: dict[str, str]) -> Reply:
        self._conn.request("POST", path, body=body, headers=headers)
        r = self._conn.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bench_rows(mock_port: int, failing_port: int) -> dict[str, dict]:
    """`make bench` rows: the filter routing the bench body's model (`gpt-4o-mini`) as a virtual
    model, rewriting in the downstream instance, through an aggregate cluster, and with one
    fallback hop (the primary answers 503)."""
    def vm(*clusters):
        return {"name": "gpt-4o-mini", "strategy": "priority", "targets": [
            {"target": f"acct/{c}-model", "cluster": c, "priority": p} for p, c in enumerate(clusters)]}
    ports = {"main": mock_port, "failing": failing_port}
    return {
        "envoy + virtual-model (body rewrite)": gateway([vm("main")], ports, fallback=False),
        "envoy + virtual-model (aggregate; per-attempt rewrite)": gateway([vm("main", "failing")], ports),
        "envoy + virtual-model (aggregate; 1 fallback hop after 503)": gateway([vm("failing", "main")], ports),
    }
