"""A provider that streams one SSE line without end, through the whole chain (both builds):
Envoy's memory stays bounded (token-accounting's line/data buffers, pii-redaction's event
buffer), the bytes reach the client when nothing needs to hold them, and the request is still
accounted, as an estimate flagged `truncated` in the audit log."""
from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from harness import audit, demo, procs

KEY = "sk-aimesh-" + "s" * 64
MAX_RESPONSE = 1 << 20
LINE = 96 << 20
STREAM = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def start(mock, tmp_path, pii: dict | None = None) -> tuple[procs.Envoy, object]:
    log = tmp_path / "audit.log"
    cfg = demo.demo_config(KEY, mock.port, access_log=str(log))
    ta = demo.stage_config(cfg, "token-accounting")
    demo.set_stage_config(cfg, "token-accounting", {**ta, "max_response_bytes": MAX_RESPONSE})
    if pii is not None:
        demo.set_stage_config(cfg, "pii-redaction", pii)
    return procs.Envoy(cfg), log


def open_stream(envoy: procs.Envoy, line_bytes: int) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(STREAM),
                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json",
                          "x-mock-endless-line": str(line_bytes)})
    r = conn.getresponse()
    assert r.status == 200
    return r


def rss(envoy: procs.Envoy) -> int:
    for line in open(f"/proc/{envoy.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def audit_line_soon(log, deadline_s: float = 10.0) -> dict:
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if log.exists() and log.read_text().strip():
            [line] = audit.check(log)
            return line
        time.sleep(0.05)
    raise AssertionError("no audit line")


def test_memory_stays_bounded_and_the_request_is_accounted_as_truncated(mock, tmp_path):
    envoy, log = start(mock, tmp_path)
    before = rss(envoy)
    r = open_stream(envoy, LINE)
    got: list[bytes] = []

    def read() -> None:
        try:
            got.extend(iter(lambda: r.read1(1 << 16), b""))
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the socket times out while nothing comes, or the test closed it

    threading.Thread(target=read, daemon=True).start()
    received = "cluster.local-mock.upstream_cx_rx_bytes_total"
    envoy.wait_stat(received, lambda v: v >= LINE, timeout=120)
    grown = rss(envoy) - before
    assert grown < LINE // 2, f"Envoy grew by {grown >> 20} MiB for a {LINE >> 20} MiB line"
    # The default PII policy redacts responses: the event it could not read is not sent.
    assert sum(map(len, got)) < 5 << 20
    r.close()
    line = audit_line_soon(log)
    assert line["truncated"] is True and line["usage_estimated"] is True
    assert line["output_tokens"] >= (LINE - MAX_RESPONSE) // 4
    assert line["status"] == 200 and line["key_id"] == "demo"


def test_a_line_without_end_reaches_the_client_when_no_filter_must_read_it(mock, tmp_path):
    # No placeholder sent and no response redaction: pii-redaction lets the stream pass, and
    # token-accounting (which holds an event only until it shows it is not the usage chunk)
    # lets go of it past max_response_bytes instead of holding it for ever.
    envoy, log = start(mock, tmp_path, pii={"policies": {"default": {"redact_responses": False}}})
    r = open_stream(envoy, 8 * MAX_RESPONSE)
    got = b""
    while len(got) < 4 * MAX_RESPONSE:
        part = r.read1(1 << 20)  # times out (test fails) when the gateway holds the line
        assert part, "stream ended early"
        got += part
    assert got.startswith(b'data: {"id":"chatcmpl-endless"')
    assert set(got[64:]) == {ord("a")}
    r.close()
    line = audit_line_soon(log)
    assert line["truncated"] is True and line["usage_estimated"] is True
    assert line["output_tokens"] >= len(got) // 4


@pytest.mark.parametrize("include_usage", [True, False])
def test_an_ordinary_stream_is_not_truncated(mock, tmp_path, include_usage):
    envoy, log = start(mock, tmp_path)
    body = dict(STREAM, stream_options={"include_usage": include_usage})
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json",
                          "x-mock-response-bytes": str(MAX_RESPONSE // 2)})
    assert conn.getresponse().read().endswith(b"data: [DONE]\n\n")
    line = audit_line_soon(log)
    assert line["truncated"] is False and line["usage_estimated"] is False
