"""A header-auth config that is unsafe or incomplete keeps Envoy from starting, with one log line
naming the field and never a secret value."""
from __future__ import annotations

import copy

import pytest

from harness import procs

from header_auth_setup import Secrets, gateway_config, header_auth_config


def broken(edit) -> dict:
    c = copy.deepcopy(header_auth_config())
    edit(c)
    return c


def set_tts(**kw):
    return lambda c: c["accounts"]["speech"]["endpoints"]["tts"].update(kw)


CASES = [
    ("egress host", set_tts(base_url="https://metadata.google.internal/computeMetadata"),
     "accounts.speech.endpoints.tts.base_url: host 'metadata.google.internal' is not in the egress allow-list"),
    ("egress cidr", set_tts(base_url="http://169.254.169.254/latest"),
     "accounts.speech.endpoints.tts.base_url: host '169.254.169.254' is not in the egress allow-list"),
    ("wildcard is not apex", set_tts(base_url="https://example.com"),
     "accounts.speech.endpoints.tts.base_url: host 'example.com' is not in the egress allow-list"),
    ("no egress list", lambda c: c.pop("egress"),
     "base_url: an egress allow-list is required"),
    ("trailing slash", set_tts(base_url="https://tts.speech.example.com/v1/"),
     "accounts.speech.endpoints.tts.base_url: must not end with '/'"),
    ("CR/LF header", lambda c: c["accounts"]["speech"]["headers"].update({"x-tenant": "a\r\nx-evil: 1"}),
     "accounts.speech.headers.x-tenant: header value contains CR, LF"),
    ("bad account name", lambda c: c["accounts"].update({"Speech_2": {}}),
     "accounts.Speech_2: account names are 3-32 characters"),
    ("bad endpoint name", lambda c: c["accounts"]["speech"]["endpoints"].update(
        {"9tts": {"base_url": "https://a.example.com", "cluster": "speech-tts"}}),
     "accounts.speech.endpoints.9tts: endpoint names are 2-62 characters"),
    ("unset variable", lambda c: c["accounts"]["claude"]["auth"].update({"api_key": "${env:AIMESH_T_UNSET}"}),
     "accounts.claude.auth.api_key: environment variable AIMESH_T_UNSET is not set"),
    ("unknown field", lambda c: c.update({"acounts": {}}), "unknown field `acounts`"),
]


@pytest.mark.parametrize("name,edit,message", CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_rejected_naming_the_field(mock, name, edit, message):
    s = Secrets()
    cfg = gateway_config(s, mock.port, mock.port, ha_config=broken(edit))
    with pytest.raises(RuntimeError) as e:
        procs.Envoy(cfg, env=s.host_env(), timeout=20)
    log = str(e.value)
    lines = [l for l in log.splitlines() if "header-auth: invalid configuration" in l]
    assert lines, log[-3000:]
    assert all(message in l for l in lines), lines
    # Envoy's main-thread VM configures the filter once and refuses the listener: one line.
    assert len(lines) == 1, lines
    for secret in s.all():
        assert secret not in log


def test_secret_with_crlf_from_environment_is_refused_without_printing_it(mock):
    s = Secrets()
    s.azure = "az-" + "9" * 20 + "\r\nx-injected: 1"
    cfg = gateway_config(s, mock.port, mock.port)
    with pytest.raises(RuntimeError) as e:
        procs.Envoy(cfg, env=s.host_env(), timeout=20)
    log = str(e.value)
    assert "accounts.azure-east.auth (api-key): header value contains CR, LF" in log
    assert "9" * 20 not in log


def test_only_listed_host_variables_are_visible_in_the_vm(mock):
    """`${env:NAME}` sees Envoy's environment only through `host_env_keys`/`key_values`."""
    s = Secrets()
    cfg = broken(lambda c: c["accounts"]["claude"]["auth"].update({"api_key": "${env:AIMESH_T_HIDDEN}"}))
    with pytest.raises(RuntimeError) as e:
        procs.Envoy(gateway_config(s, mock.port, mock.port, ha_config=cfg),
                    env={**s.host_env(), "AIMESH_T_HIDDEN": "hidden-" + "7" * 16}, timeout=20)
    log = str(e.value)
    assert "accounts.claude.auth.api_key: environment variable AIMESH_T_HIDDEN is not set" in log
    assert "7" * 16 not in log
