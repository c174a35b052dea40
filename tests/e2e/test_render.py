"""`aimesh-xds render`: the manifests for Istio and Envoy Gateway pass the projects' published
CRD schemas (tests/data/crds, source and version in its README), and the filters they insert
carry the body-reading pause setting the mesh's own Wasm resources cannot."""
from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import paths

DATA = paths.REPO / "tests" / "data"
CONFIGS = sorted((DATA / "render").glob("*.gateway.yaml"))
TARGETS = ["istio", "envoy-gateway"]
# RFC 1123 names, as Kubernetes requires of metadata.name.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def closed(schema):
    """The schema with unknown fields refused where the API server would prune them (objects
    with `properties` that do not preserve unknown fields): a misspelt field would otherwise
    pass here and be silently dropped by Kubernetes."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for f in (DATA / "crds").glob("*.json"):
        crd = json.loads(f.read_text())
        schema = closed(crd["openAPIV3Schema"])
        # Kubernetes itself defines these on every object (some CRDs leave them out).
        schema["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                     "metadata": {"type": "object"}})
        out[(f'{crd["group"]}/{crd["version"]}', crd["kind"])] = schema
    return out


def render(target: str, config: Path) -> list[dict]:
    r = subprocess.run([str(paths.XDS), "render", "--target", target, "--namespace", "ai", str(config)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def check(doc: dict, known: dict) -> None:
    assert NAME.match(doc["metadata"]["name"]), doc["metadata"]
    if (doc["apiVersion"], doc["kind"]) == ("v1", "Secret"):
        assert set(doc) == {"apiVersion", "kind", "metadata", "type", "stringData"}
        if doc["metadata"]["name"] == "aimesh-virtual-keys":
            # The key hashes, ids and teams, as auth's `keys` list: in a Secret, not in a CR.
            keys = json.loads(doc["stringData"]["AIMESH_VIRTUAL_KEYS"])
            assert all(k["hash"].startswith("sha256:") for k in keys)
        else:
            assert all(v == "" for v in doc["stringData"].values())
        return
    assert "sha256:" not in json.dumps(doc), "a key hash in a custom resource"
    schema = known[(doc["apiVersion"], doc["kind"])]
    jsonschema.Draft7Validator(schema).validate(doc)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_manifests_pass_the_published_crd_schemas(target, config):
    known = schemas()
    docs = render(target, config)
    kinds = {d["kind"] for d in docs}
    want = {"istio": {"Secret", "EnvoyFilter", "ServiceEntry", "VirtualService"},
            "envoy-gateway": {"Secret", "EnvoyPatchPolicy", "Backend", "HTTPRoute"}}[target]
    assert want <= kinds, kinds
    for d in docs:
        check(d, known)


def test_the_schemas_catch_a_wrong_manifest():
    """The validation is not vacuous: a patch operation Istio does not know, a resolution outside
    the enum, a misspelt field and a JSONPatch op outside the enum are refused."""
    known = schemas()
    istio = render("istio", DATA / "render" / "minimal.gateway.yaml")
    ef = copy.deepcopy(next(d for d in istio if d["kind"] == "EnvoyFilter"))
    ef["spec"]["configPatches"][0]["patch"]["operation"] = "INSERT_SOMEWHERE"
    with pytest.raises(jsonschema.ValidationError):
        check(ef, known)
    se = copy.deepcopy(next(d for d in istio if d["kind"] == "ServiceEntry"))
    se["spec"]["resolution"] = "SOMETIMES"
    with pytest.raises(jsonschema.ValidationError):
        check(se, known)
    vs = copy.deepcopy(next(d for d in istio if d["kind"] == "VirtualService"))
    vs["spec"]["http"][0]["timout"] = "1s"
    with pytest.raises(jsonschema.ValidationError):
        check(vs, known)
    eg = render("envoy-gateway", DATA / "render" / "minimal.gateway.yaml")
    epp = copy.deepcopy(next(d for d in eg if d["kind"] == "EnvoyPatchPolicy"))
    epp["spec"]["jsonPatches"][0]["operation"]["op"] = "insert"
    with pytest.raises(jsonschema.ValidationError):
        check(epp, known)


@pytest.mark.parametrize("target", TARGETS)
def test_every_filter_pauses_for_the_body_and_fails_closed(target):
    docs = render(target, DATA / "render" / "minimal.gateway.yaml")
    if target == "istio":
        [ef] = [d for d in docs if d["kind"] == "EnvoyFilter"]
        values = [p["patch"]["value"] for p in ef["spec"]["configPatches"]]
    else:
        [epp] = [d for d in docs if d["kind"] == "EnvoyPatchPolicy"]
        values = [p["operation"]["value"] for p in epp["spec"]["jsonPatches"]]
    assert [v["name"] for v in values] == [f"aimesh.{f}" for f in paths.FILTERS]
    for v in values:
        cfg = v["typed_config"]["config"]
        assert cfg["allow_on_headers_stop_iteration"] is True
        assert cfg["failure_policy"] == "FAIL_RELOAD"


def test_key_values_never_reach_the_manifests(tmp_path):
    """Only references: `${env:...}` names and an empty Secret, whatever the environment holds."""
    text = (DATA / "render" / "example-targets-only.gateway.yaml").read_text()
    for target in TARGETS:
        r = subprocess.run([str(paths.XDS), "render", "--target", target,
                            str(DATA / "render" / "example-targets-only.gateway.yaml")],
                           capture_output=True, text=True, timeout=30,
                           env={"OPENAI_API_KEY": "sk-real-openai-value", "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr
        assert "sk-real-openai-value" not in r.stdout
        assert "${file:" not in r.stdout and "${env:OPENAI_API_KEY}" in r.stdout
    assert "${file:" in text


def test_what_a_mesh_cannot_carry_is_refused_with_the_field(tmp_path):
    f = tmp_path / "gateway.yaml"
    text = (paths.REPO / "examples" / "gateway.yaml").read_text()
    f.write_text(text.replace("  mode: redact\n", "  mode: hash\n  hash_key: ${env:AIMESH_PII_KEY}\n"))
    r = subprocess.run([str(paths.XDS), "render", "--target", "istio", str(f)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert "pii.hash_key:" in r.stderr


def added_clusters(docs: list[dict]) -> list[dict]:
    out = []
    for d in docs:
        if d["kind"] == "EnvoyFilter":
            out += [p["patch"]["value"] for p in d["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"]
        if d["kind"] == "EnvoyPatchPolicy":
            out += [p["operation"]["value"] for p in d["spec"]["jsonPatches"] if p["type"].endswith("Cluster")]
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_virtual_models_with_fallbacks_add_aimesh_clusters_and_route(target):
    """examples/gateway.yaml's `smart` (openai, azure-eu, then anthropic): one aggregate per
    entry, each running virtual-model's and header-auth's upstream instances per attempt."""
    docs = render(target, DATA / "render" / "example.gateway.yaml")
    clusters = {c["name"]: c for c in added_clusters(docs)}
    assert sorted(clusters) == ["fallback.smart.0", "fallback.smart.1", "fallback.smart.2",
                                "provider.anthropic", "provider.azure-eu", "provider.openai"]
    agg = clusters["fallback.smart.2"]
    assert agg["cluster_type"]["typed_config"]["clusters"] == [
        "provider.anthropic", "provider.openai", "provider.azure-eu"]
    opts = next(iter(agg["typed_extension_protocol_options"].values()))
    names = [f["name"] for f in opts["http_filters"]]
    assert names == ["aimesh.virtual-model", "aimesh.header-auth", "aimesh.translate",
                     "envoy.filters.http.upstream_codec"], names
    for f in opts["http_filters"][:2]:
        cfg = json.loads(f["typed_config"]["config"]["configuration"]["value"])
        assert cfg["role"] == "upstream"
    member = clusters["provider.anthropic"]
    [ep] = member["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert ep["metadata"]["filter_metadata"]["aimesh"]["cluster"] == "provider.anthropic"
    assert member["transport_socket"]["typed_config"]["sni"] == "api.anthropic.com"
