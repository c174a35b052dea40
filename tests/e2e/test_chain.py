"""The one-filter build (`aimesh_chain.wasm`): its own config rules, stage timings, and the same
answers as the five separate filters for the same traffic.

The demo-chain suites (test_demo, test_bad_input, test_faults, test_conservation,
test_failure_policy, test_secrets) also run against this build: `make test` runs them a second
time with AIMESH_CHAIN=1.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import openai
import pytest

from harness import config, demo, procs

KEY = "sk-aimesh-chain-test-" + "c" * 32


def chain_gateway(mock_port: int, chain_cfg: dict) -> dict:
    return config.gateway([config.wasm_filter("chain", chain_cfg)], [config.cluster("local-mock", mock_port)])


@pytest.mark.parametrize("cfg,message", [
    ({"auht": {}}, "chain: invalid configuration: unknown field `auht`"),
    ({}, "chain: invalid configuration: no stage configured"),
    ({"virtual-model": {"role": "upstream", "virtual_models": []}},
     "chain: invalid configuration: virtual-model.role: the chain runs downstream"),
    # A stage's section is checked by that filter's own rules (aimesh-config), the field named
    # from the chain's root.
    ({"auth": {"keys": [{"id": "a", "hash": "sha256:zz"}]}}, "chain: invalid configuration: auth.keys[0].hash"),
], ids=["unknown section", "no stage", "upstream role", "stage field"])
def test_bad_config_is_rejected_with_one_line(mock, cfg, message):
    with pytest.raises(RuntimeError) as e:
        procs.Envoy(chain_gateway(mock.port, cfg), timeout=20)
    lines = [l for l in str(e.value).splitlines() if "invalid configuration" in l]
    assert len(lines) == 1 and message in lines[0], lines


def test_stages_answer_like_the_five_filters(tmp_path, mock):
    """Same requests through both builds: same statuses, error codes, upstream bodies."""
    seen = {}
    for chained in (False, True):
        mock.clear()
        envoy = procs.Envoy(demo.demo_config(KEY, mock.port, chain=chained))
        client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEY, max_retries=0)
        out = []
        r = client.chat.completions.create(model="vm-demo", messages=[{"role": "user", "content": "mail a@b.example"}])
        out.append(("ok", r.model, r.usage.total_tokens))
        chunks = list(client.chat.completions.create(
            model="vm-demo", messages=[{"role": "user", "content": "hi"}], stream=True))
        out.append(("stream", len(chunks), chunks[-1].usage))
        for body, key in [(b'{"model": ', KEY), (b'{"model": "vm-demo", "messages": []}', KEY + "x")]:
            req = urllib.request.Request(f"{envoy.url}/v1/chat/completions", data=body, method="POST",
                                         headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            out.append((e.value.code, json.loads(e.value.read())["error"]["code"]))
        out.append(("upstream", [(rec["body"], sorted(h for h in rec["headers"] if h.startswith("x-")))
                                 for rec in mock.records()]))
        envoy.stop()
        seen[chained] = out
    assert seen[True] == seen[False]
    assert seen[True][2] == (400, "invalid_json") and seen[True][3][0] == 401
    # The PII stage ran: the provider never saw the address.
    assert "a@b.example" not in json.dumps(seen[True][-1])


def test_a_reply_in_frames_is_accounted_once_while_a_later_stage_buffers_it(mock):
    """Response stages run in reverse: token-accounting reads each frame as it passes, while
    pii-redaction (restoring masked values) buffers the whole reply. Each frame must reach
    token-accounting once, whichever build; a repeated frame would break the JSON and the
    usage would fall back to an estimate."""
    answers = {}
    for chained in (False, True):
        cfg = demo.demo_config(KEY, mock.port, chain=chained)
        demo.set_stage_config(cfg, "pii-redaction", {"policies": {"default": {"restore": True}}})
        envoy = procs.Envoy(cfg)
        client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEY, max_retries=0)
        r = client.chat.completions.create(
            model="vm-demo", messages=[{"role": "user", "content": "mail a@b.example please"}],
            extra_headers={"x-mock-split": "40", "x-mock-chunk-gap-ms": "5"})
        usage = {k: v for k, v in envoy.stats("gen_ai.client.token.usage").items() if v}
        assert usage and all(k.endswith("source.provider") for k in usage), usage
        answers[chained] = (r.choices[0].message.content, r.usage.total_tokens, sorted(usage.values()))
        envoy.stop()
    assert answers[True] == answers[False]


def test_stage_timings_count_each_stage_and_phase(mock):
    cfg = demo.demo_config(KEY, mock.port, chain=True)
    demo.set_chain_option(cfg, "stage_timings", True)
    envoy = procs.Envoy(cfg)
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEY, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="vm-demo", messages=[{"role": "user", "content": "hi"}])
    stats = envoy.stats("aimesh.chain")
    for stage in ["auth", "pii-redaction", "virtual-model", "token-accounting", "header-auth"]:
        calls = stats.get(f"wasmcustom.aimesh.chain.{stage}.request_headers.calls")
        assert calls == 3, (stage, stats)
        assert stats.get(f"wasmcustom.aimesh.chain.{stage}.request_headers.ns", 0) > 0
    assert stats.get("wasmcustom.aimesh.chain.auth.log.calls") == 3
    envoy.stop()
    # Off by default: no counters at all.
    envoy = procs.Envoy(demo.demo_config(KEY, mock.port, chain=True))
    openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEY, max_retries=0).chat.completions.create(
        model="vm-demo", messages=[{"role": "user", "content": "hi"}])
    assert not [k for k in envoy.stats("aimesh.chain") if k.startswith("wasmcustom.")]
    envoy.stop()


def test_gateway_yaml_loads_the_chain_over_xds(mock):
    """`listener.filter_build: chain`: aimesh-xds pushes one filter; the SDK gets the same answers."""
    from harness import xds
    gw = xds.demo_gateway(demo.key_hash(KEY), mock.url, port=0)
    gw["listener"]["filter_build"] = "chain"
    server = xds.XdsServer(gw)
    envoy = procs.Envoy(xds.ads_bootstrap(server.port))
    try:
        dump = envoy.admin_get("/config_dump")
        assert '"aimesh.chain"' in dump and '"aimesh.auth"' not in dump
        client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEY, max_retries=0)
        deadline = time.time() + 10
        while True:  # ECDS may land a moment after the listener
            try:
                r = client.chat.completions.create(
                    model="vm-demo", messages=[{"role": "user", "content": "mail a@b.example"}])
                break
            except openai.APIStatusError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        assert r.model == "gpt-4o-mini" and r.usage.total_tokens > 0
        assert "a@b.example" not in mock.records()[-1]["body"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEY + "x", max_retries=0).chat.completions.create(
                model="vm-demo", messages=[{"role": "user", "content": "hi"}])
    finally:
        envoy.stop()
        server.stop()
