"""Nothing secret leaves in logs, stats, access logs, config dumps or error bodies.

The full chain runs at debug level. Envoy's own `http`, `http2`, `router` and `config` components
print every request header (the router: the upstream request, provider credential included) and
the whole config at debug, so production runs keep those four at info (docs/operations.md);
everything else, the filters included, is at debug.
Scanned for: the client's API key and its hash, the provider credential header-auth injects, and
PII values the client sent.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from harness import config, demo, procs

# Envoy components that print request headers (router: the upstream request, with the injected
# credential) or the config at debug level.
QUIET_COMPONENTS = "http:info,http2:info,config:info,router:info"
PROVIDER_SECRET = "sk-provider-secret-4f1c9a77e2"
PII = {"EMAIL": "jane.roe@example.org", "US_SSN": "536-90-4399", "CREDIT_CARD": "4539 1488 0343 6467",
       "PHONE": "+44 20 7946 0958"}


@pytest.fixture
def chain(tmp_path, mock):
    key = demo.demo_key(tmp_path / "demo.env")
    provider = procs.MockLLM("provider")
    log = tmp_path / "audit.log"
    cfg = demo.demo_config(key, mock.port, openai_key="unused", access_log=str(log))
    clusters = cfg["static_resources"]["clusters"]
    clusters[:] = [c for c in clusters if c["name"] != "openai"] + [config.cluster("openai", provider.port)]
    demo.set_stage_config(cfg, "pii-redaction",
                          {"policies": {"default": {"actions": {"US_SSN": "block"}, "restore": True}}})
    envoy = procs.Envoy(cfg, log_level="debug", env={"OPENAI_API_KEY": PROVIDER_SECRET},
                        extra_args=["--component-log-level", QUIET_COMPONENTS])
    yield envoy, key, provider, log
    envoy.stop()


def test_no_secret_or_pii_value_leaks_anywhere(chain, mock):
    envoy, key, provider, log = chain
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key, max_retries=0)
    bodies: list[str] = []
    prompt = f"mail {PII['EMAIL']}, call {PII['PHONE']}, card {PII['CREDIT_CARD']}"
    for model in ["vm-demo", "openai/gpt-4o-mini"]:
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        bodies.append(r.model_dump_json())
        bodies.append("".join(c.model_dump_json() for c in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], stream=True)))
    errors = []
    for c, kwargs in [(openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key + "x", max_retries=0), {}),
                      (client, {"messages": [{"role": "user", "content": f"ssn {PII['US_SSN']}"}]})]:
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="vm-demo", **({"messages": [{"role": "user", "content": "hi"}]} | kwargs))
        errors.append(e.value.response.text)
    assert json.loads(errors[1])["error"]["code"] == "pii_detected"
    # The provider got its credential, the client's key never, and no PII verbatim.
    [*_, rec] = provider.records()
    assert rec["headers"]["authorization"] == f"Bearer {PROVIDER_SECRET}"
    upstream = json.dumps(provider.records() + mock.records())
    assert key not in upstream
    assert not [v for v in PII.values() if v in upstream]

    def get(path: str) -> str:
        try:
            return urllib.request.urlopen(f"{envoy.admin}{path}", timeout=10).read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.read().decode(errors="replace")

    admin = {p: get(p) for p in ["/stats", "/stats?format=json", "/stats?format=prometheus", "/config_dump",
                                 "/clusters", "/listeners"]}
    envoy.stop()
    places = {"envoy log": envoy.log(), "audit log": log.read_text(), "error bodies": "\n".join(errors), **admin}
    secrets = {"api key": key, "key hash": demo.key_hash(key), "key hash hex": demo.key_hash(key)[7:],
               "provider credential": PROVIDER_SECRET, **{f"PII {t}": v for t, v in PII.items()}}
    leaks = [(what, where) for where, text in places.items() for what, value in secrets.items() if value in text]
    # The config dump holds the key hash by design (it is the filter's config): everything else
    # must be clean, and the hash must not show anywhere else.
    assert [l for l in leaks if l != ("key hash", "/config_dump") and l != ("key hash hex", "/config_dump")] == []
    assert "][debug][" in envoy.log(), "the scan must have read a debug log"
