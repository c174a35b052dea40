"""Tokens-per-minute and daily budgets, enforced exactly across two Envoy workers."""
from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import openai
import pytest

from token_accounting_env import KEYS, audit_lines, auth, gateway, post

MESSAGES = [{"role": "user", "content": "one two three"}]
MAX_TOKENS = 100
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}


def est(body_bytes: int) -> int:
    """What admission reserves: a quarter of the body's bytes, rounded up, plus max_tokens."""
    return -(-body_bytes // 4) + MAX_TOKENS


# `post` sends json.dumps(BODY); the SDK serializes its own way (measured in the test).
EST = est(len(json.dumps(BODY).encode()))
# What the fake upstream reports: one token per word, 8 completion words by default.
ACTUAL = 3 + 8
FIT = 4
BURST = 16
# One micro-USD per token, so the budget arithmetic is in tokens.
PRICES = {"gpt-4o-mini": {"input": 1.0, "output": 1.0}}


def sdk_body_bytes(mock) -> int:
    """Bytes of BODY as the OpenAI SDK sends it (asked of the fake upstream directly)."""
    openai.OpenAI(base_url=f"{mock.url}/v1", api_key="sk-direct", max_retries=0) \
        .chat.completions.create(**BODY)
    [rec] = mock.records()
    mock.clear()
    return int(rec["headers"]["content-length"])


def burst(envoy, kid: str) -> list[tuple[int, dict, bytes]]:
    """BURST concurrent requests, one connection each, spread over both workers."""
    with ThreadPoolExecutor(BURST) as pool:
        results = list(pool.map(lambda _: post(envoy.url, "/v1/chat/completions", BODY,
                                               {**auth(kid), "x-mock-latency-ms": "700"}),
                                range(BURST)))
    per_worker = [v for k, v in envoy.stats("worker_").items() if k.endswith("downstream_cx_total")]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
    return results


@pytest.fixture
def envoy(mock, tmp_path):
    limits = {"keys": {
        "alpha": {"tpm": FIT * EST + EST // 2},
        "beta": {"daily_usd": (FIT * EST + EST // 2) / 1e6},
    }}
    e = gateway(mock, {"prices": PRICES, "limits": limits}, tmp_path / "audit.jsonl", concurrency=2)
    yield e
    e.stop()


def test_tpm_admits_exactly_what_fits_under_concurrency(envoy, mock, tmp_path):
    results = burst(envoy, "alpha")
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(ok) == FIT, [r[0] for r in results]
    assert len(mock.records()) == FIT
    for status, headers, body in refused:
        assert status == 429
        err = json.loads(body)["error"]
        assert err["code"] == "rate_limit_exceeded" and err["type"] == "tokens"
        assert int(headers["retry-after"]) >= 1
        assert 0 <= int(headers["x-ratelimit-remaining-tokens"]) < EST
    for _, headers, _ in ok:
        assert int(headers["x-ratelimit-remaining-tokens"]) >= 0
    assert envoy.stats("token_accounting.rejected")[
        "wasmcustom.aimesh.token_accounting.rejected.reason.tpm.key_id.alpha"] == BURST - FIT
    envoy.stop()
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert sorted(l["status"] for l in lines) == [200] * FIT + [429] * (BURST - FIT)
    for l in lines:
        assert l["key_id"] == "alpha" and l["team"] == "team-alpha" and l["model"] == "gpt-4o-mini"
        assert (l["input_tokens"] is None) == (l["status"] == 429)


def test_daily_budget_is_exact_under_concurrency_then_settles_exactly(envoy, mock):
    budget = FIT * EST + EST // 2
    sdk_est = est(sdk_body_bytes(mock))
    results = burst(envoy, "beta")
    assert sorted(r[0] for r in results) == [200] * FIT + [429] * (BURST - FIT)
    for status, headers, body in results:
        if status == 429:
            assert json.loads(body)["error"]["code"] == "insufficient_quota"
            assert 1 <= int(headers["retry-after"]) <= 86_400
    settle_then_refuse(envoy, sdk_est, budget, lambda e: e.code == "insufficient_quota")


def settle_then_refuse(envoy, sdk_est: int, budget: int, refusal_ok) -> int:
    """After a burst admitted FIT requests: each was settled at its exact cost, refunding the rest
    of its reservation, so sequential SDK requests fit while spent + estimate <= budget; the next
    one gets a RateLimitError that `refusal_ok` accepts. `sdk_est`: the estimate of one SDK
    request (measured before the burst). Returns how many more got through."""
    spent, expected_more = FIT * ACTUAL, 0
    while spent + sdk_est <= budget:
        spent += ACTUAL
        expected_more += 1
    more = 0
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEYS["beta"], max_retries=0)
    while more <= expected_more:
        try:
            client.chat.completions.create(**BODY)
        except openai.RateLimitError as e:
            assert refusal_ok(e), e
            break
        more += 1
    assert more == expected_more > 0
    costs = envoy.stats("gen_ai.client.cost_micro_usd")
    assert sum(v for k, v in costs.items() if ".key_id.beta" in k) == (FIT + more) * ACTUAL
    return more


MONTHLY_MESSAGE = "You exceeded your current monthly budget on this key."


def seconds_to_next_month(now: datetime) -> float:
    first = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
    return (first - now).total_seconds()


@pytest.fixture
def monthly_envoy(mock, tmp_path):
    """`beta` with a monthly budget the size of the daily one above and a daily budget 100 times
    larger: only the monthly budget can refuse."""
    budget = FIT * EST + EST // 2
    limits = {"keys": {"beta": {"daily_usd": 100 * budget / 1e6, "monthly_usd": budget / 1e6}}}
    e = gateway(mock, {"prices": PRICES, "limits": limits}, tmp_path / "audit.jsonl", concurrency=2)
    yield e
    e.stop()


def test_monthly_budget_is_exact_under_concurrency_then_settles_exactly(monthly_envoy, mock,
                                                                         tmp_path):
    envoy = monthly_envoy
    budget = FIT * EST + EST // 2
    sdk_est = est(sdk_body_bytes(mock))
    results = burst(envoy, "beta")
    to_month = seconds_to_next_month(datetime.now(timezone.utc))
    assert sorted(r[0] for r in results) == [200] * FIT + [429] * (BURST - FIT)
    for status, headers, body in results:
        if status == 429:
            err = json.loads(body)["error"]
            assert err["code"] == "insufficient_quota" and err["type"] == "insufficient_quota"
            assert err["message"] == MONTHLY_MESSAGE
            # Retry-After runs to the 1st of next month (UTC), not to midnight.
            assert abs(int(headers["retry-after"]) - to_month) <= 30, (headers, to_month)
            assert "x-ratelimit-remaining-tokens" not in headers
    more = settle_then_refuse(envoy, sdk_est, budget, lambda e: e.status_code == 429
                              and e.code == "insufficient_quota" and e.body["message"] == MONTHLY_MESSAGE)
    # Every refusal was the monthly budget's; the daily budget refused nothing.
    rejected = envoy.stats("token_accounting.rejected")
    assert rejected == {
        "wasmcustom.aimesh.token_accounting.rejected.reason.monthly_budget.key_id.beta":
            BURST - FIT + 1}, rejected
    envoy.stop()
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert sorted(l["status"] for l in lines) == [200] * (FIT + more) + [429] * (BURST - FIT + 1)


def test_a_chunked_request_is_admitted_on_its_body_size(envoy, mock):
    """Without content-length the filter reads the body to size it; the reservation is the same
    quarter of the bytes plus max_tokens, reported as the bucket's level."""
    body = json.dumps(BODY).encode()
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=iter([body[:10], body[10:]]),
                 headers={"content-type": "application/json", **auth("alpha")}, encode_chunked=True)
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    assert "content-length" not in mock.records()[-1]["headers"]
    assert int(r.getheader("x-ratelimit-remaining-tokens")) == FIT * EST + EST // 2 - EST
