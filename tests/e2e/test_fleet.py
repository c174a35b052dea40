"""Fleet-wide limits (issue 18): three real Envoys share one count on a real Redis through the
`aimesh-limits` service. Requests per minute per key, per team and per JWT-free caller the
config names; tokens per minute within one request's reservation; a hard USD budget at
concurrency 32 with streams and disconnects, refusals never reaching the provider; Redis
stopped and back; an Envoy replica killed and restarted. One fleet for the module (the build
AIMESH_BUILD selects)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import requests

from harness import demo, fleet, paths, procs, xds

BUILD = paths.build()
KEYS = {name: f"sk-fleet-{name}-0123456789abcdef" for name in
        ("rpm", "red1", "red2", "tpm", "budget", "resume", "restart", "open", "spender")}
TEAMS = {"red1": "red", "red2": "red"}
TPM = 2000
# Output at $10 per million tokens: a request reserving 50 completion tokens reserves ~500
# micro-USD plus its prompt; the budget admits a few dozen of the 96 sent.
BUDGET_USD = 0.02
PRICES = {"gpt-4o-mini": {"input": 1.0, "output": 10.0}}


def gateway(limits: fleet.Limits, mock: procs.MockLLM) -> dict:
    rules = [
        {"key": "rpm", "requests_per_minute": 30},
        {"team": "red", "requests_per_minute": 30},
        {"key": "tpm", "tokens_per_minute": TPM},
        {"key": "resume", "requests_per_minute": 3},
        {"key": "restart", "requests_per_minute": 10},
        {"key": "open", "requests_per_minute": 1000},
    ]
    return {
        "listener": {"address": "127.0.0.1", "port": 0, "access_log": "", "filter_build": BUILD},
        "providers": [xds.mock_provider("mock", mock)],
        "default_provider": "mock",
        "keys": [{"id": k, "hash": demo.key_hash(v), **({"team": TEAMS[k]} if k in TEAMS else {})}
                 for k, v in KEYS.items()],
        # Generous timeouts: on a loaded 2-core machine a slow answer must not pass for an outage
        # (a stopped Redis refuses connections at once, so the outage test does not wait them).
        "limits": fleet.fleet_limits(limits, rules, timeout="3s"),
        "budgets": [{"key": "budget", "usd": BUDGET_USD, "period": "day"},
                    {"key": "spender", "usd": 100, "period": "day"}],
        "prices": PRICES,
    }


class Fleet:
    def __init__(self) -> None:
        self.mock = procs.MockLLM("fleet")
        self.redis = fleet.Redis()
        self.limits = fleet.Limits(self.redis, redis_timeout_ms=1500)
        self.server = xds.XdsServer(gateway(self.limits, self.mock))
        self.envoys = [self.start_envoy(i) for i in range(3)]

    def start_envoy(self, i: int) -> procs.Envoy:
        e = procs.Envoy(xds.ads_bootstrap(self.server.port, node_id=f"gw-{i}"), concurrency=1)
        # The filters' configs (ECDS) may land a moment after the listener.
        deadline = time.time() + 20
        while requests.get(f"{e.url}/v1/models", timeout=10,
                           headers={"authorization": f"Bearer {KEYS['open']}"}).status_code != 200:
            assert time.time() < deadline, "the gateway never answered"
            time.sleep(0.05)
        return e

    def stop(self) -> None:
        for p in self.envoys + [self.server, self.limits, self.redis, self.mock]:
            p.stop()


@pytest.fixture(scope="module")
def f():
    g = Fleet()
    yield g
    g.stop()


def ask(envoy: procs.Envoy, key: str, case: str, *, stream: bool = False, **headers) -> tuple[int, str]:
    """One chat completion through the SDK: (status, error code or "")."""
    c = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEYS[key], max_retries=0, timeout=30)
    hs = {"x-test-case": case, **{k.replace("_", "-"): str(v) for k, v in headers.items()}}
    try:
        if stream:
            with c.chat.completions.create(model="gpt-4o-mini", max_tokens=50, stream=True,
                                           messages=[{"role": "user", "content": "hi"}],
                                           extra_headers=hs) as s:
                for _ in s:
                    pass
        else:
            c.chat.completions.create(model="gpt-4o-mini", max_tokens=50, extra_headers=hs,
                                      messages=[{"role": "user", "content": "hi"}])
        return 200, ""
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return e.status_code, str(body.get("code") or (body.get("error") or {}).get("code") or "")


def spread(f: Fleet, n: int, concurrency: int, one) -> list:
    """`one(envoy, i)` for i in 0..n, round-robin over the fleet's Envoys, `concurrency` at once."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda i: one(f.envoys[i % len(f.envoys)], i), range(n)))


def reached(f: Fleet, case: str) -> int:
    return sum(1 for r in f.mock.records() if r.get("headers", {}).get("x-test-case") == case)


def test_one_key_at_30_rpm_gets_exactly_30_of_90_over_three_envoys(f):
    got = spread(f, 90, 16, lambda e, i: ask(e, "rpm", "rpm"))
    assert sum(1 for s, _ in got if s == 200) == 30, got
    assert {(s, c) for s, c in got if s != 200} == {(429, "rate_limit_exceeded")}
    assert reached(f, "rpm") == 30


def test_a_team_limit_counts_the_whole_team_over_three_envoys(f):
    got = spread(f, 90, 16, lambda e, i: ask(e, "red1" if i % 2 else "red2", "team"))
    assert sum(1 for s, _ in got if s == 200) == 30, got
    assert reached(f, "team") == 30


def test_tokens_per_minute_exceed_the_limit_by_at_most_one_request(f):
    before = f.mock.served()
    got = spread(f, 120, 16, lambda e, i: ask(e, "tpm", "tpm", stream=i % 2 == 0,
                                               x_mock_completion_tokens=40))
    after = f.mock.served()
    assert {(s, c) for s, c in got if s != 200} == {(429, "rate_limit_exceeded")}
    admitted = sum(1 for s, _ in got if s == 200)
    assert after["requests"] - before["requests"] == admitted
    used = sum(after[k] - before[k] for k in ("prompt_tokens", "completion_tokens"))
    per_request = used / admitted
    # The documented bound: admission goes on while the minute's count (reservations of
    # requests in flight, real tokens of finished ones) is under the limit, so the tokens
    # admitted exceed it by less than one request's.
    assert used < TPM + per_request, (used, admitted)
    assert used > TPM / 2, "the limit admitted far too little"


def disconnect_after_first_chunk(envoy: procs.Envoy, case: str) -> tuple[int, str]:
    """A streamed request the client abandons after the first event."""
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    hs = {"authorization": f"Bearer {KEYS['budget']}", "x-test-case": case,
          "x-mock-completion-tokens": "40", "x-mock-chunk-gap-ms": "20"}
    with httpx.Client(timeout=30) as c, c.stream("POST", f"{envoy.url}/v1/chat/completions",
                                                 json=body, headers=hs) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, r.json().get("error", {}).get("code", "")
        next(r.iter_raw())
        return 200, "disconnected"


def test_usd_budget_holds_across_three_envoys_with_streams_and_disconnects(f):
    def one(e, i):
        if i % 3 == 0:
            return disconnect_after_first_chunk(e, "budget")
        return ask(f.envoys[i % 3], "budget", "budget", stream=i % 3 == 1, x_mock_completion_tokens=40)

    got = spread(f, 96, 32, one)
    refused = [(s, c) for s, c in got if s != 200]
    admitted = len(got) - len(refused)
    assert refused and admitted, got
    assert set(refused) == {(429, "insufficient_quota")}
    # Refused requests never reached the provider: it saw exactly the admitted ones.
    assert reached(f, "budget") == admitted
    # Settlements are sent as each request ends (disconnects included); wait for them to land.
    key = f"{{aimesh}}:usd_day:key:budget:d{int(time.time()) // 86400}"
    worst = admitted * 1000
    deadline = time.time() + 10
    while f.redis.get_int(key) >= worst and time.time() < deadline:
        time.sleep(0.05)
    spent = f.redis.get_int(key)
    assert 0 < spent <= BUDGET_USD * 1_000_000, spent
    assert spent < worst, "reservations were settled to the real cost"


def test_redis_down_mid_load_follows_each_policy_and_counting_resumes_when_back(f):
    stopped = threading.Event()

    def one(e, i):
        if i == 20:
            f.redis.stop()
            stopped.set()
        key = "open" if i % 2 else "spender"
        return key, stopped.is_set(), ask(e, key, "down")

    got = spread(f, 60, 8, one)
    # Every request came back (the SDK's 30 s timeout would have raised), each by its policy:
    # requests per minute fail open, budgets fail closed with the one documented 5xx.
    assert all(r == (200, "") for k, _, r in got if k == "open"), got
    spender = {r for k, _, r in got if k == "spender"}
    assert spender <= {(200, ""), (503, "limits_unavailable")}, spender
    # Once Redis was down before a request started, its budget could not be reserved.
    late = [r for k, after, r in got if k == "spender" and after]
    assert late and all(r == (503, "limits_unavailable") for r in late), got
    assert ask(f.envoys[1], "budget", "down-budget") == (503, "limits_unavailable")
    assert reached(f, "down-budget") == 0
    f.redis.start()
    f.limits.wait_ready()
    got = spread(f, 6, 3, lambda e, i: ask(e, "resume", "resume"))
    assert sum(1 for s, _ in got if s == 200) == 3, got


def test_an_envoy_replica_killed_and_restarted_loses_no_count(f):
    got = [ask(f.envoys[2], "restart", "restart") for _ in range(5)]
    assert all(s == 200 for s, _ in got), got
    f.envoys[2].kill()
    f.envoys[2].stop()
    f.envoys[2] = f.start_envoy(2)
    got = spread(f, 12, 4, lambda e, i: ask(e, "restart", "restart"))
    assert sum(1 for s, _ in got if s == 200) == 5, got


def test_a_jwt_subject_the_config_never_listed_gets_its_own_30_rpm(f):
    """Per-subject counters are created on first use: three Envoys verifying JWTs
    (`jwt_authn`), one group rule in auth, one `subject` rule in token-accounting."""
    from auth_support import entry, new_key
    from harness import config
    from test_auth_jwt import jwt_authn, sign

    auth = {"keys": [entry("svc", new_key())],
            "jwt": {"payload_key": "jwt_payload",
                    "rules": [{"id": "jwt-staff", "group": "staff", "models": ["gpt-4o-mini"]}]}}
    accounting = {"prices": PRICES, "fleet": {
        "cluster": "aimesh_limits", "timeout_ms": 3000,
        "rules": [{"scope": "subject", "rpm": 30}]}}
    cfg = config.gateway(
        [jwt_authn(), config.wasm_filter("auth", auth),
         config.wasm_filter("token-accounting", accounting)],
        [config.cluster("mock", f.mock.port), config.cluster("aimesh_limits", f.limits.port)])
    envoys = [procs.Envoy(cfg, concurrency=1) for _ in range(3)]
    try:
        carol, dan = (sign({"sub": f"{n}-{time.time_ns()}", "groups": ["staff"]}) for n in ("carol", "dan"))

        def one(i: int, token: str, case: str) -> int:
            c = openai.OpenAI(base_url=f"{envoys[i % 3].url}/v1", api_key=token, max_retries=0)
            try:
                c.chat.completions.create(model="gpt-4o-mini", max_tokens=20, extra_headers={"x-test-case": case},
                                          messages=[{"role": "user", "content": "hi"}])
                return 200
            except openai.RateLimitError:
                return 429

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda i: one(i, carol, "subject"), range(90)))
        assert got.count(200) == 30 and got.count(429) == 60, got
        assert reached(f, "subject") == 30
        # Another subject of the same group has a counter of its own.
        assert [one(i, dan, "subject-2") for i in range(3)] == [200, 200, 200]
    finally:
        for e in envoys:
            e.stop()
