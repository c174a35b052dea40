"""Per-key request limits across Envoy workers: requests per minute and requests in flight."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import openai
import pytest

from auth_support import CHAT, bearer, chat_body, entry, error_code, gateway, new_key, request

LIMITED, OTHER, SERIAL = new_key(), new_key(), new_key()
RPM = 5


@pytest.fixture
def envoy(mock):
    auth = {"keys": [
        entry("limited", LIMITED, requests_per_minute=RPM),
        entry("other", OTHER, requests_per_minute=100),
        entry("serial", SERIAL, max_concurrent=1),
    ]}
    routes = [
        # A later stage that refuses locally: the in-flight slot must still be given back.
        {"match": {"prefix": "/v1/refused"}, "direct_response": {"status": 403}},
        {"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "30s"}},
    ]
    e = gateway(mock, auth, routes=routes, concurrency=2)
    yield e
    e.stop()


def test_burst_over_many_connections_admits_exactly_the_limit(envoy, mock):
    # 24 requests at once, each on its own connection, spread over Envoy's 2 workers.
    barrier = threading.Barrier(24)

    def one(_):
        barrier.wait()
        return request(envoy, "POST", CHAT, chat_body(), bearer(LIMITED))

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(24)))
    # Both workers took connections, so the limit held across VMs, not within one.
    per_worker = [v for k, v in envoy.stats("downstream_cx_total").items()
                  if k.startswith("listener.") and ".worker_" in k]
    assert len(per_worker) == 2 and all(v > 0 for v in per_worker), per_worker
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) == RPM
    assert len(limited) == 24 - RPM
    assert len(mock.records()) == RPM
    for _, hs, body in limited:
        assert error_code(body) == "rate_limit_exceeded"
        assert int(hs["retry-after"]) >= 1
        assert hs["x-ratelimit-limit-requests"] == str(RPM)
        assert hs["x-ratelimit-remaining-requests"] == "0"
        assert hs["x-ratelimit-reset-requests"]
    remaining = sorted(int(hs["x-ratelimit-remaining-requests"]) for _, hs, _ in ok)
    assert remaining == list(range(RPM))
    # Another key's budget is its own.
    assert request(envoy, "POST", CHAT, chat_body(), bearer(OTHER))[0] == 200


def test_sdk_sees_rate_limit_error(envoy):
    c = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=LIMITED, max_retries=0)
    for _ in range(RPM):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "rate_limit_exceeded"
    assert e.value.response.headers["x-ratelimit-limit-requests"] == str(RPM)


def wait_for(pred, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_concurrency_cap_and_release(envoy, mock):
    slow = {**bearer(SERIAL), "x-mock-latency-ms": "1500"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(request, envoy, "POST", CHAT, chat_body(), slow)
        assert wait_for(lambda: len(mock.records()) == 1)
        status, hs, body = request(envoy, "POST", CHAT, chat_body(), bearer(SERIAL))
        assert (status, error_code(body)) == (429, "rate_limit_exceeded")
        assert hs["retry-after"] == "1"
        assert first.result()[0] == 200
    assert request(envoy, "POST", CHAT, chat_body(), bearer(SERIAL))[0] == 200


def test_slot_released_when_a_later_stage_refuses_or_upstream_fails(envoy, mock):
    for _ in range(3):
        assert request(envoy, "POST", "/v1/refused", chat_body(), bearer(SERIAL))[0] == 403
        assert request(envoy, "GET", "/v1/refused", None, bearer(SERIAL))[0] == 403
        status, _, _ = request(envoy, "POST", CHAT, chat_body(),
                               {**bearer(SERIAL), "x-mock-status": "500"})
        assert status == 500
    assert request(envoy, "POST", CHAT, chat_body(), bearer(SERIAL))[0] == 200


def test_slot_released_when_client_resets(envoy, mock):
    u = urlparse(envoy.url)
    body = chat_body()
    raw = (f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           f"authorization: Bearer {SERIAL}\r\nx-mock-latency-ms: 5000\r\n"
           f"content-length: {len(body)}\r\n\r\n").encode() + body
    s = socket.create_connection((u.hostname, u.port))
    s.sendall(raw)
    assert wait_for(lambda: len(mock.records()) == 1)
    # While the slow request holds the only slot, others are refused.
    assert request(envoy, "POST", CHAT, chat_body(), bearer(SERIAL))[0] == 429
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST
    assert wait_for(lambda: request(envoy, "POST", CHAT, chat_body(), bearer(SERIAL))[0] == 200)
