"""Virtual-model selection through real Envoy: weighted split, latency strategy, sticky sessions,
unknown models, and the byte-exact model rewrite. Upstream ids prove which backend answered."""
from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from harness import procs, virtual_model
from harness.virtual_model import KeepAlive

MSG = [{"role": "user", "content": "one two three"}]


def targets(*specs):
    """`("a", 80)` -> a target `acct-a/model-a` on cluster `t-a` with weight 80."""
    return [{"target": f"acct-{i}/model-{i}", "cluster": f"t-{i}", "weight": w} for i, w in specs]


@pytest.fixture
def mocks():
    ms = {i: procs.MockLLM(i) for i in ("a", "b")}
    yield ms
    for m in ms.values():
        m.stop()


def ports(mocks):
    return {f"t-{i}": m.port for i, m in mocks.items()}


def post(client, model="vm-chat", headers=None, body=None):
    data = body if body is not None else json.dumps({"model": model, "messages": MSG})
    return client.post("/v1/chat/completions", data,
                       {"content-type": "application/json", **(headers or {})})


@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "aggregate"])
def test_weighted_split_80_20(mocks, fallback):
    vm = {"name": "vm-chat", "strategy": "weighted", "targets": targets(("a", 80), ("b", 20))}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks), fallback=fallback))
    n = 1000 if not fallback else 400
    seen = Counter()
    with KeepAlive(envoy.url) as c:
        for _ in range(n):
            r = post(c)
            assert r.status_code == 200, r.text
            up = r.headers["x-upstream-id"]
            seen[up] += 1
            assert r.headers["x-aimesh-target"] == f"acct-{up}/model-{up}"
            assert r.headers["x-aimesh-virtual-model"] == "vm-chat"
            assert r.headers["x-aimesh-backend"] == f"acct-{up}"
            assert r.json()["model"] == f"model-{up}"
    share = seen["a"] / n
    tolerance = 0.04 if n == 1000 else 0.07
    assert abs(share - 0.8) <= tolerance, seen
    for i, m in mocks.items():
        recs = m.records()
        assert len(recs) == seen[i]
        assert {json.loads(r["body"])["model"] for r in recs} == {f"model-{i}"}


def test_rewrite_keeps_every_other_byte(mocks):
    vm = {"name": "vm-chat", "targets": targets(("a", 1))}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks), fallback=False))
    body = ('{ "messages" :[{"role":"user","content":"say \\"model\\": x"}],\n'
            '  "temperature": 0.50, "model" : "vm-chat" , "metadata":{"model":"keep"} }')
    with KeepAlive(envoy.url) as c:
        r = post(c, body=body)
    assert r.status_code == 200, r.text
    [rec] = mocks["a"].records()
    assert rec["body"] == body.replace('"vm-chat"', '"model-a"')


def test_unknown_model_passes_through_or_404(mocks):
    vm = {"name": "vm-chat", "targets": targets(("b", 1))}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks), default_cluster="t-a"))
    body = '{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"hi"}]}'
    with KeepAlive(envoy.url) as c:
        r = post(c, body=body)
    assert r.status_code == 200 and r.headers["x-upstream-id"] == "a"
    assert "x-aimesh-virtual-model" not in r.headers
    assert mocks["a"].records()[0]["body"] == body
    envoy.stop()

    strict = procs.Envoy(virtual_model.gateway([vm], ports(mocks), pass_through=False))
    client = openai.OpenAI(base_url=f"{strict.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert e.value.status_code == 404 and e.value.code == "model_not_found"
    r = client.chat.completions.create(model="vm-chat", messages=MSG)
    assert r.model == "model-b"
    assert len(mocks["a"].records()) == 1


def test_bad_body_is_400(mocks):
    vm = {"name": "vm-chat", "targets": targets(("a", 1))}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks)))
    with KeepAlive(envoy.url) as c:
        r = post(c, body='{"model": ')
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        r = post(c, body='{"messages": []}')
        assert r.status_code == 400 and r.json()["error"]["code"] == "missing_model"
    assert mocks["a"].records() == []


def test_latency_strategy_moves_to_the_faster_target(mocks):
    vm = {"name": "vm-chat", "strategy": "latency", "targets": targets(("a", 1), ("b", 1)),
          "latency": {"window_s": 600}}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks)))
    mocks["a"].set_defaults(latency_ms=20)
    mocks["b"].set_defaults(latency_ms=60)

    def run(n):
        seen = []
        with KeepAlive(envoy.url) as c:
            for _ in range(n):
                r = post(c)
                assert r.status_code == 200, r.text
                seen.append(r.headers["x-upstream-id"])
        return seen

    # The first reply from a is an outlier (a cold worker, a new connection): one slow sample
    # must not rank the fast target slowest for the whole window.
    mocks["a"].set_defaults(latency_ms=1500)
    with KeepAlive(envoy.url) as c:
        while post(c).headers["x-upstream-id"] != "a":
            pass
    mocks["a"].set_defaults(latency_ms=20)
    first = run(80)
    assert "b" in first, "the slower target must be measured too"
    assert Counter(first[-30:])["a"] >= 27, Counter(first)
    # Samples leaving the window (the strategy then follows a speed swap) is clock arithmetic,
    # tested on the fake clock: virtual-model's strategy_tests, no sleep here.


def test_sticky_sessions_hold_and_follow_a_failover(mocks):
    """Pins live in shared data, so both workers keep a session on its target; a session whose
    target fails follows the fallback that answered. The TTL running out is clock arithmetic,
    tested on the fake clock (virtual-model's downstream_tests), so no sleep here."""
    vm = {"name": "vm-chat", "targets": targets(("a", 1), ("b", 1)),
          "sticky": {"header": "x-session-id", "ttl_s": 600}}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks)))
    sessions = [f"s{i}" for i in range(20)]
    pinned = {}
    with KeepAlive(envoy.url) as c:
        for _ in range(4):
            for s in sessions:
                up = post(c, headers={"x-session-id": s}).headers["x-upstream-id"]
                assert pinned.setdefault(s, up) == up, f"session {s} moved within its TTL"
        assert set(pinned.values()) == {"a", "b"}, "sessions must spread over both targets"
        s = next(s for s in sessions if pinned[s] == "a")
        r = post(c, headers={"x-session-id": s, "x-mock-status": "503", "x-mock-target": "a"})
        assert r.status_code == 200 and r.headers["x-upstream-id"] == "b"
        assert post(c, headers={"x-session-id": s}).headers["x-upstream-id"] == "b"


def test_sticky_pins_survive_thousands_of_sessions(mocks):
    """Pins live in a fixed set of shared-data buckets (256 per virtual model), not in one key per
    session, so memory does not grow with session ids (Envoy's admin has no view of shared data:
    the bound itself is unit-tested in `core::routing::sticky`). Here 2,000 distinct sessions,
    pinned concurrently over several connections (both workers write the same buckets), all stay
    on their target, and the earliest sessions are still pinned after the 2,000 others."""
    vm = {"name": "vm-chat", "targets": targets(("a", 1), ("b", 1)),
          "sticky": {"header": "x-session-id", "ttl_s": 600}}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks)))
    early = [f"early-{i}" for i in range(20)]
    users = [f"user-{i}" for i in range(2000)]
    conns = 8

    def route(sessions):
        with KeepAlive(envoy.url) as c:
            out = {}
            for s in sessions:
                r = post(c, headers={"x-session-id": s})
                assert r.status_code == 200, r.text
                out[s] = r.headers["x-upstream-id"]
            return out

    def route_all(sessions):
        with ThreadPoolExecutor(conns) as pool:
            parts = pool.map(route, [sessions[i::conns] for i in range(conns)])
        return {s: up for part in parts for s, up in part.items()}

    pinned = route(early)
    assert set(pinned.values()) == {"a", "b"}, pinned
    users_pinned = route_all(users)
    assert set(users_pinned.values()) == {"a", "b"}
    # A lost pin (evicted, or overwritten by another worker's write) would be re-picked 50/50.
    assert route_all(early) == pinned
    again = route_all(users)
    moved = [s for s in users if again[s] != users_pinned[s]]
    assert moved == [], f"{len(moved)} sessions lost their pin, e.g. {moved[:5]}"


@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "aggregate"])
def test_model_header_from_auth_is_trusted_over_parsing(mocks, fallback):
    """With `x-aimesh-model` published (auth does it, and strips client copies), the filter does
    not parse the body: a body auth would have refused reaches the target unparsed here."""
    vm = {"name": "vm-chat", "targets": targets(("a", 1))}
    envoy = procs.Envoy(virtual_model.gateway([vm], ports(mocks), fallback=fallback))
    body = '{"model":"vm-chat","stream":"not-a-bool","messages":[]}'
    with KeepAlive(envoy.url) as c:
        assert post(c, body=body).status_code == 400
        r = post(c, body=body, headers={"x-aimesh-model": "vm-chat"})
    assert r.status_code == 200 and r.headers["x-upstream-id"] == "a"
    [rec] = mocks["a"].records()
    assert rec["body"] == body.replace('"vm-chat"', '"model-a"')
