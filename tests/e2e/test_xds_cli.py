"""`aimesh-xds validate` and `diff`: what an operator sees before applying a gateway.yaml."""
from __future__ import annotations

import os
import re
import subprocess

from harness import paths, xds


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(paths.XDS), *args], capture_output=True, text=True, timeout=30)


def test_shipped_example_validates(tmp_path):
    """Given its secrets: the files it names (moved under tmp_path) and the variables it reads."""
    text = (paths.REPO / "examples" / "gateway.yaml").read_text()
    for path in set(re.findall(r"\$\{file:(/[^}]+)\}", text)):
        copy = tmp_path / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text("sk-example\n")
        text = text.replace(path, str(copy))
    f = tmp_path / "gateway.yaml"
    f.write_text(text)
    env = {**os.environ, **{n: "sk-example" for n in re.findall(r"\$\{env:(\w+)\}", text)}}
    r = subprocess.run([str(paths.XDS), "validate", str(f)], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 0, r.stderr


def test_validate_names_field_and_line(tmp_path):
    f = tmp_path / "gateway.yaml"
    f.write_text("providers:\n  - name: a\n    kind: openai\n    api_key: sk-live-secret\n"
                 "virtual_models:\n  - name: v\n    targets:\n      - {provider: ghost, model: m}\n")
    r = run("validate", str(f))
    assert r.returncode != 0
    assert "line 4: providers[0].api_key" in r.stderr
    assert "line 8: virtual_models[0].targets[0].provider: no provider named 'ghost'" in r.stderr
    assert "sk-live-secret" not in r.stderr, "an inlined secret is never echoed"


def test_validate_refuses_what_serve_or_envoy_would(tmp_path):
    """A secret file serve cannot read, an env secret Envoy does not have: refused up front."""
    f = tmp_path / "gateway.yaml"
    f.write_text("providers:\n  - name: pa1\n    kind: openai\n    api_key: '${file:/nonexistent/key}'\n")
    r = run("validate", str(f))
    assert r.returncode != 0
    assert "line 4: providers[0].api_key: cannot read /nonexistent/key" in r.stderr
    f.write_text("providers:\n  - name: pa1\n    kind: openai\n    api_key: '${env:AIMESH_TEST_UNSET_VARIABLE}'\n")
    r = run("validate", str(f))
    assert r.returncode != 0
    assert "line 4: providers[0].api_key: ${env:AIMESH_TEST_UNSET_VARIABLE} is not set here" in r.stderr
    assert run("validate", "--skip-env", str(f)).returncode == 0
    ok = subprocess.run([str(paths.XDS), "validate", str(f)], capture_output=True, text=True, timeout=30,
                        env={**os.environ, "AIMESH_TEST_UNSET_VARIABLE": "sk-set"})
    assert ok.returncode == 0, ok.stderr
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    f.write_text(f"providers:\n  - name: pa1\n    kind: openai\n    api_key: '${{file:{key}}}'\n")
    r = run("validate", str(f))
    assert r.returncode == 0, r.stderr
    assert "sk-from-file" not in r.stdout + r.stderr


def test_validate_checks_pii_with_the_filters_rules(tmp_path):
    f = tmp_path / "gateway.yaml"
    f.write_text("pii:\n  mode: redact\n  patterns:\n    - name: EMPLOYEE_ID\n      regex: 'E(\\d{6}'\n")
    r = run("validate", str(f))
    assert r.returncode != 0
    assert "line 5: pii.patterns[0].regex: regex parse error" in r.stderr, r.stderr
    f.write_text("pii:\n  mode: hash\n")
    r = run("validate", str(f))
    assert "pii.hash_key: required" in r.stderr, r.stderr
    f.write_text("pii:\n  actions: {nosuch: hash}\n")
    r = run("validate", str(f))
    assert "pii.actions.NOSUCH: unknown type" in r.stderr, r.stderr
    f.write_text("pii:\n  rules:\n    - {path_prefix: /v1/embeddings, policy: ghost}\n")
    r = run("validate", str(f))
    assert "pii.rules[0].policy: unknown policy" in r.stderr, r.stderr


def test_validate_unknown_field_has_line(tmp_path):
    f = tmp_path / "gateway.yaml"
    f.write_text("listener:\n  port: 10000\n  prot: 1\n")
    r = run("validate", str(f))
    assert r.returncode != 0
    assert "line 3" in r.stderr and "prot" in r.stderr


def test_diff_shows_added_changed_removed(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    base = {"providers": [{"name": "pa1", "kind": "openai_compatible", "base_url": "http://10.0.0.1"},
                          {"name": "pb1", "kind": "openai_compatible", "base_url": "http://10.0.0.2"}],
            "keys": [{"id": "k1", "hash": "sha256:" + "a" * 64}]}
    xds.write_gateway(old, base)
    changed = {"providers": [{"name": "pa1", "kind": "openai_compatible", "base_url": "http://10.0.0.9"},
                             {"name": "pc1", "kind": "openai_compatible", "base_url": "http://10.0.0.3"}],
               "keys": [{"id": "k1", "hash": "sha256:" + "a" * 64}]}
    xds.write_gateway(new, changed)
    r = run("diff", str(old), str(new))
    assert r.returncode == 0, r.stderr
    lines = set(r.stdout.splitlines())
    assert {"~ provider pa1", "- provider pb1", "+ provider pc1"} <= lines
    assert {"~ envoy Cluster provider.pa1", "- envoy Cluster provider.pb1", "+ envoy Cluster provider.pc1"} <= lines
    assert not any("key" in l or "aimesh.auth" in l for l in lines), "keys did not change"
    assert run("diff", str(old), str(old)).stdout.strip() == "no changes"
