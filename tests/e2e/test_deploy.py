"""The Kustomize base of the standalone mode (deploy/kustomize): every document parses and the
pieces fit (selectors, ports, references, mount paths), no secret sits in a ConfigMap, `kubectl
kustomize` renders it, and its own files and commands run a working gateway here: the Envoy pod's
init script pulls the `make oci` images from a real registry, the aimesh-xds pod's init command
merges the keys Secret into gateway.yaml, aimesh-xds and Envoy run with the Deployments' paths,
certificates and environment, and a request goes through.

Not run here: a cluster. `kubectl apply --dry-run=client` needs an API server to map kinds to
resources even with --validate=false, and there is none on this machine.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from harness import certs, demo, paths, procs, registry, xds

# Every module aimesh-xds may name (translate runs in each provider cluster, mcp for MCP servers).
MODULES = [paths.wasm(f) for f in paths.FILTERS + ["mcp", "translate"]] + [paths.CHAIN_WASM]

BASE = paths.REPO / "deploy" / "kustomize"
# Created by the operator (cert-manager or openssl), referenced by the base, never in it.
EXTERNAL_SECRETS = {"aimesh-xds-tls", "aimesh-gateway-tls"}
KEY = "sk-aimesh-deploy-test-" + "d" * 32
PROVIDER_KEY = "sk-provider-deploy-" + "p" * 24


def documents() -> list[dict]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict, name: str, init: bool = False) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    (c,) = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    return c


def flag(c: dict, name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in c["args"] if a.startswith(f"--{name}=")]
    return value


def test_every_document_parses_and_the_pieces_fit():
    docs = documents()
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted([
        ("ConfigMap", "aimesh-gateway"), ("ConfigMap", "aimesh-envoy-bootstrap"), ("ConfigMap", "aimesh-wasm"),
        ("Secret", "aimesh-keys"), ("Secret", "aimesh-provider-keys"),
        ("Deployment", "aimesh-xds"), ("Service", "aimesh-xds"),
        ("Deployment", "aimesh-gateway"), ("Service", "aimesh-gateway")])
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    config_maps, secrets = by_kind(docs, "ConfigMap"), by_kind(docs, "Secret")
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    for name, svc in services.items():
        # Each Service selects exactly one Deployment's pods, by name, and its target ports exist.
        selected = [d for d in deployments.values()
                    if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert [d["metadata"]["name"] for d in selected] == [name]
        ports = {p["name"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    for dep in deployments.values():
        spec = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes.keys()
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"]
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in config_maps
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets.keys() | EXTERNAL_SECRETS


def test_no_secret_in_a_config_map():
    docs = documents()
    text = json.dumps(list(by_kind(docs, "ConfigMap").values()))
    assert not re.search(r"sha256:[0-9a-f]{64}", text), "a key hash in a ConfigMap"
    gateway = yaml.safe_load(by_kind(docs, "ConfigMap")["aimesh-gateway"]["data"]["gateway.yaml"])
    assert "keys" not in gateway
    refs = [p["api_key"] for p in gateway["providers"] if "api_key" in p]
    assert refs and all(re.fullmatch(r"\$\{(env|file):[^}]+\}", r) for r in refs)
    # Each `${env:NAME}` reaches Envoy from the provider-keys Secret, never as a literal value.
    envoy = container(by_kind(docs, "Deployment")["aimesh-gateway"], "envoy")
    env = {e["name"]: e for e in envoy["env"]}
    for name in re.findall(r"\$\{env:([^}]+)\}", json.dumps(gateway)):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "aimesh-provider-keys"
        assert "value" not in env[name]
    keys = yaml.safe_load(by_kind(docs, "Secret")["aimesh-keys"]["stringData"]["keys.yaml"])
    assert keys["keys"] and all(k["hash"].startswith("sha256:") for k in keys["keys"])


def test_the_bootstrap_is_the_shipped_one_with_mtls_to_the_service():
    docs = documents()
    boot = yaml.safe_load(by_kind(docs, "ConfigMap")["aimesh-envoy-bootstrap"]["data"]["ads-bootstrap.yaml"])
    expected = xds.shipped_bootstrap(18000, admin_port=9901, mtls={})
    expected["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["socket_address"]["address"] = "aimesh-xds"
    assert boot == expected
    svc = by_kind(docs, "Service")["aimesh-xds"]
    assert [p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc-ads"] == [18000]
    deployments = by_kind(docs, "Deployment")
    server = container(deployments["aimesh-xds"], "aimesh-xds")
    assert flag(server, "listen") == "0.0.0.0:18000"
    # aimesh-xds names module paths as the Envoy pods see them: where their init container puts them.
    wasm_dir = flag(server, "wasm-dir")
    envoy = container(deployments["aimesh-gateway"], "envoy")
    assert [m["mountPath"] for m in envoy["volumeMounts"] if m["name"] == "wasm"] == [wasm_dir]
    pull = container(deployments["aimesh-gateway"], "wasm", init=True)
    assert {"name": "WASM_DIR", "value": wasm_dir} in pull["env"]
    images = by_kind(docs, "ConfigMap")["aimesh-wasm"]["data"]["images.txt"].split()[::2]
    assert sorted(images) == sorted(p.name for p in MODULES)


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed (make deploy-tools)")
def test_kubectl_renders_the_base():
    out = subprocess.run(["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted(documents(), key=key)


class Pod:
    """One Deployment's pod laid out on this machine: each volume a directory filled from its
    ConfigMap or Secret (or given), mount paths in commands replaced by those directories."""

    def __init__(self, root: Path, deployment: dict, docs: list[dict], given: dict[str, Path]) -> None:
        spec = deployment["spec"]["template"]["spec"]
        self.dirs: dict[str, Path] = {}
        for v in spec["volumes"]:
            d = given.get(v["name"]) or root / v["name"]
            d.mkdir(parents=True, exist_ok=True)
            if "configMap" in v:
                for k, text in by_kind(docs, "ConfigMap")[v["configMap"]["name"]]["data"].items():
                    (d / k).write_text(text)
            elif "secret" in v and v["name"] not in given:
                data = by_kind(docs, "Secret")[v["secret"]["secretName"]]["stringData"]
                for k, text in data.items():
                    (d / k).write_text(text)
            self.dirs[v["name"]] = d
        self.spec = spec

    def paths(self, c: dict) -> dict[str, str]:
        return {m["mountPath"]: str(self.dirs[m["name"]]) for m in c.get("volumeMounts", [])}

    def local(self, c: dict, text: str) -> str:
        """`text` with each of the container's mount paths (a whole path component, in one pass:
        `/wasm` is not the end of `/etc/aimesh/wasm`) replaced by its directory here."""
        dirs = self.paths(c)
        pattern = "|".join(re.escape(m) for m in sorted(dirs, key=len, reverse=True))
        return re.sub(rf"(?<![\w/.-])({pattern})(?![\w.-])", lambda m: dirs[m.group(1)], text)


def test_the_manifests_run_a_gateway(tmp_path, mock):
    docs = documents()
    deployments = by_kind(docs, "Deployment")
    # The operator's parts: the registry with the images, the certificates, the keys' values.
    reg = registry.Registry()
    modules = MODULES
    for image in registry.build_images(tmp_path / "oci", modules).values():
        registry.push(Path(image["layout"]), image["tag"], reg, f"aimesh/{image['name']}")
    images = by_kind(docs, "ConfigMap")["aimesh-wasm"]["data"]
    images["images.txt"] = images["images.txt"].replace("registry.example.com", reg.host)
    pki = certs.Pki(tmp_path / "pki")
    tls = {"aimesh-xds-tls": {"tls.crt": pki.server.cert, "tls.key": pki.server.key, "ca.crt": pki.ca.cert},
           "aimesh-gateway-tls": {"gateway.crt": pki.envoy.cert, "gateway.key": pki.envoy.key,
                                  "xds-ca.crt": pki.ca.cert}}
    secrets = by_kind(docs, "Secret")
    secrets["aimesh-keys"]["stringData"]["keys.yaml"] = yaml.safe_dump(
        {"keys": [{"id": "alice", "team": "research", "hash": demo.key_hash(KEY)}]})
    secrets["aimesh-provider-keys"]["stringData"]["OPENAI_API_KEY"] = PROVIDER_KEY
    # The one change to gateway.yaml: its provider is the fake one here (same name, same key ref).
    cm = by_kind(docs, "ConfigMap")["aimesh-gateway"]["data"]
    gw = yaml.safe_load(cm["gateway.yaml"])
    gw["listener"].update(address="127.0.0.1", port=0)
    for p in gw["providers"]:
        p.update(kind="openai_compatible", base_url=mock.url)
    cm["gateway.yaml"] = yaml.safe_dump(gw)

    def certs_dir(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for file, src in tls[name].items():
            (d / file).write_bytes(src.read_bytes())
        return d

    # The gateway pod's init container: the Wasm modules out of the registry.
    gw_pod = Pod(tmp_path / "gateway-pod", deployments["aimesh-gateway"], docs,
                 {"certs": certs_dir("aimesh-gateway-tls")})
    pull = container(deployments["aimesh-gateway"], "wasm", init=True)
    env = {e["name"]: gw_pod.local(pull, e["value"]) for e in pull["env"]}
    out = subprocess.run([gw_pod.local(pull, a) for a in pull["command"]], capture_output=True, text=True,
                         timeout=300, env={**env, "PATH": "/usr/bin:/bin", "SKOPEO_FLAGS": "--src-tls-verify=false",
                                           "IMAGES": gw_pod.local(pull, "/etc/aimesh/wasm/images.txt")})
    assert out.returncode == 0, out.stderr
    wasm_dir = Path(env["WASM_DIR"])
    assert sorted(p.name for p in wasm_dir.iterdir()) == sorted(m.name for m in modules)
    for m in modules:
        assert (wasm_dir / m.name).read_bytes() == m.read_bytes()

    # The aimesh-xds pod: its init command merges the keys Secret into gateway.yaml.
    xds_pod = Pod(tmp_path / "xds-pod", deployments["aimesh-xds"], docs, {"certs": certs_dir("aimesh-xds-tls")})
    merge = container(deployments["aimesh-xds"], "gateway-yaml", init=True)
    subprocess.run([xds_pod.local(merge, a) for a in merge["command"]], check=True, timeout=30)
    server_c = container(deployments["aimesh-xds"], "aimesh-xds")
    config_path = Path(xds_pod.local(server_c, flag(server_c, "config")))
    merged = yaml.safe_load(config_path.read_text())
    assert merged["keys"][0]["id"] == "alice" and merged["providers"] == gw["providers"]
    tls_args = [xds_pod.local(server_c, a) for a in server_c["args"] if a.startswith(("--tls-", "--client-ca"))]
    # Listen addresses are the harness's free loopback ports (the manifest's are checked above);
    # --wasm-dir is the Envoy pod's directory, as in the cluster.
    server = xds.XdsServer(config_path=config_path, tls_args=[a for t in tls_args for a in t.split("=", 1)],
                           wasm_dir=wasm_dir)

    # The gateway pod's Envoy: the ConfigMap's bootstrap, its mounts, the Secret in its environment.
    envoy_c = container(deployments["aimesh-gateway"], "envoy")
    boot = yaml.safe_load(gw_pod.local(envoy_c, Path(gw_pod.dirs["bootstrap"] / "ads-bootstrap.yaml").read_text()))
    addr = boot["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["socket_address"]
    addr.update(address="127.0.0.1", port_value=server.port)
    boot["admin"]["address"]["socket_address"]["port_value"] = 0
    envoy_env = {e["name"]: secrets[e["valueFrom"]["secretKeyRef"]["name"]]["stringData"][e["valueFrom"]["secretKeyRef"]["key"]]
                 for e in envoy_c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    envoy = procs.Envoy(boot, env=envoy_env, extra_args=["--service-node", "aimesh-gateway-test"], timeout=180)

    r = requests.post(f"{envoy.url}/v1/chat/completions", timeout=10, headers={"authorization": f"Bearer {KEY}"},
                      json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    (rec,) = mock.records()
    assert rec["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert json.loads(rec["body"])["model"] == "gpt-4o"
    r = requests.post(f"{envoy.url}/v1/chat/completions", timeout=10, headers={"authorization": "Bearer sk-nope"},
                      json={"model": "smart", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"]
