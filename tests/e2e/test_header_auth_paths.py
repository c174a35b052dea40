"""Path traversal and smuggling against /proxy-api/: every attempt is a 4xx and reaches nothing.

Requests go out as raw bytes on a socket, so no client library normalises or refuses them first.
Envoy's codec rejects a few itself (raw CR/LF/NUL in the request line); the rest must be refused by
the header-auth filter with its own 400, which the `rejected_path` counter proves. The listener
here passes paths as sent (`config.PATHS_AS_SENT`, like a mesh HCM without the edge options), so
the filter's own checks are what is tested; on the shipped listener Envoy normalizes first
(`test_on_the_edge_listener_nothing_unsafe_reaches_an_upstream`).
"""
from __future__ import annotations

import json
import socket
import time

import pytest

from harness import procs

from header_auth_setup import APP1, Secrets, raw_request, start

# (request target as sent, refused by Envoy's HTTP/1 codec before any filter runs)
ATTACKS: list[tuple[bytes, bool]] = [
    (b"/proxy-api/speech/tts/../admin", False),
    (b"/proxy-api/speech/tts/a/../../admin", False),
    (b"/proxy-api/speech/tts/..", False),
    (b"/proxy-api/speech/tts/./admin", False),
    (b"/proxy-api/speech/tts/%2e%2e/admin", False),
    (b"/proxy-api/speech/tts/%2E%2e/admin", False),
    (b"/proxy-api/speech/tts/.%2E/admin", False),
    (b"/proxy-api/speech/tts/%252e%252e/admin", False),
    (b"/proxy-api/speech/tts/a%2fb", False),
    (b"/proxy-api/speech/tts/a%2F..%2Fadmin", False),
    (b"/proxy-api/speech/tts/a%5cb", False),
    (b"/proxy-api/speech/tts/a%5C..%5Cadmin", False),
    (b"/proxy-api/speech/tts/a\\..\\admin", False),
    (b"/proxy-api/speech/tts/a%0d%0aX-Injected:%201", False),
    (b"/proxy-api/speech/tts/a%0aX", False),
    (b"/proxy-api/speech/tts/a%00b", False),
    (b"/proxy-api/speech/tts/a%252fb", False),
    (b"/proxy-api/speech/tts/%c0%ae%c0%ae/admin", False),
    (b"/proxy-api/speech/tts/..;/admin", False),
    (b"/proxy-api/speech/tts/...", False),
    (b"/proxy-api/speech/tts//etc/passwd", False),
    (b"/proxy-api/speech/tts/%ef%bc%8e%ef%bc%8e/admin", False),
    (b"/proxy-api/speech/tts/a%zz", False),
    (b"/proxy-api/speech/tts/a%u002e", False),
    (b"/proxy-api/speech/tts/x?q=%0d%0aX:%201", False),
    (b"/proxy-api/speech/tts/x?q=%00", False),
    (b"/proxy-api/speech/../speech/tts/x", False),
    (b"/proxy-api/speech/%2e%2e/tts/x", False),
    (b"/proxy-api/Speech/tts/x", False),
    (b"/proxy-api/speech/tts/a\xc3\xa9", None),  # raw UTF-8: Envoy or the filter
    (b"/proxy-api/speech/tts/a\x00b", None),
    (b"/proxy-api/speech/tts/a\r\nX-Injected: 1\r\nY:", True),
    (b"/proxy-api/speech/tts/a\nb", True),
    (b"/proxy-api/speech/tts/a b", True),
]


@pytest.fixture(scope="module")
def env():
    provider, speech = procs.MockLLM("provider"), procs.MockLLM("speech")
    envoy = start(Secrets(), provider, speech, normalize=False)
    yield envoy, provider, speech
    envoy.stop()
    provider.stop()
    speech.stop()


def rejected(envoy) -> int:
    return sum(v for k, v in envoy.stats("header_auth").items() if k.endswith("header_auth.rejected_path"))


def test_at_least_fifteen_attempts_and_a_control_request_that_passes(env):
    envoy, provider, speech = env
    assert len(ATTACKS) >= 15
    # The same gateway forwards a clean path, so the refusals below are not a broken setup.
    assert raw_request(envoy.port, b"/proxy-api/speech/tts/v1/ok?x=1",
                       [b"Authorization: Bearer " + APP1.encode()]) == 200
    assert [r["path"] for r in speech.records()] == ["/cognitiveservices/v1/v1/ok"]
    speech.clear()


@pytest.mark.parametrize("target,by_codec", ATTACKS, ids=lambda v: repr(v)[2:40] if isinstance(v, bytes) else None)
def test_attack_is_refused_and_reaches_no_upstream(env, target, by_codec):
    envoy, provider, speech = env
    before = rejected(envoy)
    status = raw_request(envoy.port, target, [b"Authorization: Bearer " + APP1.encode()])
    if by_codec:
        # A raw CR/LF/space ends the request line: Envoy answers 400, or 426 when what is left
        # looks like HTTP/0.9. Either way no filter or upstream ever sees it.
        assert 400 <= status < 500, f"{target!r} -> {status}"
    else:
        assert status == 400, f"{target!r} -> {status}"
    assert speech.records() == [] and provider.records() == [], f"{target!r} reached an upstream"
    if by_codec is False:
        deadline = time.time() + 5
        while rejected(envoy) != before + 1 and time.time() < deadline:
            time.sleep(0.05)
        assert rejected(envoy) == before + 1, f"{target!r} was not refused by header-auth"


def test_filter_reply_is_openai_json_without_echoing_the_path(env):
    envoy, _, _ = env
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=5) as s:
        s.sendall(b"GET /proxy-api/speech/tts/%2e%2e/secret-name HTTP/1.1\r\nHost: g\r\n"
                  b"Authorization: Bearer " + APP1.encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    err = json.loads(body)["error"]
    assert (err["code"], err["type"]) == ("invalid_upstream_path", "invalid_request_error")
    assert b"secret-name" not in body


H2_ATTACKS = [b"/proxy-api/speech/tts/a b", b"/proxy-api/speech/tts/a\\..\\b", b"/proxy-api/speech/tts/../x",
              b"/proxy-api/speech/tts/a\tb", b"/proxy-api/speech/tts/a\x7fb", b"/proxy-api/speech/tts/\xc3\xa9",
              b"/proxy-api/speech/tts/%2e%2e/x", b"/proxy-api/speech/tts/a\"b<c>"]


def h2_status(port: int, path: bytes) -> int:
    """One HTTP/2 (prior knowledge, cleartext) request: HTTP/2 has no request line to break, so
    characters HTTP/1's codec refuses reach Envoy's filters unless its h2 codec refuses them."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None,
                                                                validate_outbound_headers=False,
                                                                normalize_outbound_headers=False))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"gateway"),
                              (b":path", path), (b"authorization", b"Bearer " + APP1.encode())],
                          end_stream=True)
        s.sendall(conn.data_to_send())
        while True:
            data = s.recv(65536)
            if not data:
                return -1  # Envoy's codec closed the connection: nothing forwarded
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    return int(dict(ev.headers)[b":status"])
                if isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    return -1  # refused at the protocol level: nothing forwarded
            s.sendall(conn.data_to_send())


@pytest.mark.parametrize("path", H2_ATTACKS, ids=lambda v: repr(v)[2:40])
def test_http2_attack_is_refused_and_reaches_no_upstream(env, path):
    envoy, provider, speech = env
    status = h2_status(envoy.port, path)
    assert status == -1 or 400 <= status < 500, f"{path!r} -> {status}"
    assert speech.records() == [] and provider.records() == []


def test_http2_clean_path_is_forwarded(env):
    envoy, _, speech = env
    assert h2_status(envoy.port, b"/proxy-api/speech/tts/h2/ok") == 200
    assert [r["path"] for r in speech.records()] == ["/cognitiveservices/v1/h2/ok"]
    speech.clear()


def test_on_the_edge_listener_nothing_unsafe_reaches_an_upstream():
    """The shipped listener normalizes before header-auth sees the path: an attack is refused, or
    becomes a plain path the key could have asked for (`/speech/../speech/tts/x` is
    `/speech/tts/x`); no upstream ever gets a dot segment or an encoded separator."""
    provider, speech = procs.MockLLM("provider"), procs.MockLLM("speech")
    envoy = start(Secrets(), provider, speech)
    for target, _ in ATTACKS:
        status = raw_request(envoy.port, target, [b"Authorization: Bearer " + APP1.encode()])
        assert status != 0 and status < 500, f"{target!r} -> {status}"
    for rec in speech.records() + provider.records():
        lower = rec["path"].lower()
        assert "/../" not in lower + "/" and "/./" not in lower + "/", rec["path"]
        assert not any(bad in lower for bad in ("%2e", "%2f", "%5c", "\\", "%00")), rec["path"]
