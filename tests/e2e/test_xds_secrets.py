"""Provider keys stay secret end to end (issue 23, items 6 and 8): not in Envoy's
`/config_dump`, not on an ADS stream without a client certificate, not in a reply that echoes
them. Both builds: `listener.filter_build` separate (five filters) and chain (one filter)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from harness import certs, demo, paths, procs, rawhttp, xds

KEY = "sk-aimesh-test-alice"
FILE_KEY = "sk-file-provider-0123456789abcdef"
ENV_KEY = "sk-env-provider-0123456789abcdef"
MCP_KEY = "mcp-file-token-0123456789abcdef"
FALLBACK_KEY = "sk-file-fallback-0123456789abcdef"
SECRETS = [FILE_KEY, ENV_KEY, MCP_KEY, FALLBACK_KEY]
BUILDS = ["separate", "chain"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return certs.Pki(tmp_path_factory.mktemp("pki"))


def gateway(tmp_path, mock: procs.MockLLM, mcp: procs.MockLLM, build: str) -> dict:
    """Every way a key gets in: `${file:}` and `${env:}` providers, an MCP server's `${file:}`
    token, and (five filters only: the chain runs no upstream filters) a fallback, whose
    aggregate cluster carries header-auth's upstream instance."""
    def secret_file(name: str, value: str) -> str:
        p = tmp_path / name
        p.write_text(value + "\n")
        return f"${{file:{p}}}"
    smart = {"name": "smart", "targets": [{"provider": "local", "model": "m1"}]}
    if build == "separate":
        smart["fallbacks"] = [{"provider": "spare", "model": "m2"}]
    return {
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s", "filter_build": build},
        "providers": [
            {**xds.mock_provider("local", mock), "api_key": secret_file("local.key", FILE_KEY)},
            {**xds.mock_provider("envprov", mock), "api_key": "${env:AIMESH_TEST_ENV_KEY}"},
            {**xds.mock_provider("spare", mock), "api_key": secret_file("spare.key", FALLBACK_KEY)},
        ],
        "default_provider": "local",
        "virtual_models": [smart, {"name": "env-model", "targets": [{"provider": "envprov", "model": "env-model"}]}],
        "mcp_servers": [{"name": "docs", "url": f"{mcp.url}/mcp", "api_key": secret_file("mcp.key", MCP_KEY)}],
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY), "team": "a"}],
    }


def chat(envoy: procs.Envoy, model: str = "gpt-4o-mini", **headers) -> requests.Response:
    return requests.post(f"{envoy.url}/v1/chat/completions", timeout=10,
                         headers={"authorization": f"Bearer {KEY}", **headers},
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def mtls_gateway(tmp_path, pki: certs.Pki, build: str):
    mock, mcp = procs.MockLLM("mock"), procs.MockLLM("mcp-docs")
    server = xds.XdsServer(gateway(tmp_path, mock, mcp, build), tls_args=pki.server_args())
    envoy = procs.Envoy(xds.ads_bootstrap(server.port, tls=certs.upstream_tls(pki.ca.cert, pki.envoy)),
                        env={"AIMESH_TEST_ENV_KEY": ENV_KEY})
    return mock, mcp, server, envoy


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.parametrize("build", BUILDS)
def test_no_provider_key_in_config_dump(tmp_path, pki, build):
    mock, mcp, _server, envoy = mtls_gateway(tmp_path, pki, build)
    # The keys are delivered: each upstream gets its own.
    assert chat(envoy).status_code == 200
    assert chat(envoy, "env-model").status_code == 200
    assert [r["headers"]["authorization"] for r in mock.records()] == [
        f"Bearer {FILE_KEY}", f"Bearer {ENV_KEY}"]
    assert requests.get(f"{envoy.url}/mcp/docs", headers={"authorization": f"Bearer {KEY}"},
                        timeout=10).status_code == 200
    assert mcp.records()[-1]["headers"]["authorization"] == f"Bearer {MCP_KEY}"
    # ... and nowhere in what the admin port shows.
    dump = envoy.admin_get("/config_dump?include_eds")
    assert "aimesh.header-auth" in dump or "aimesh.chain" in dump
    assert "[redacted]" in dump, "the filter config holding the keys is redacted, not absent"
    assert leaked(dump) == []
    for path in ["/config_dump?resource=dynamic_active_clusters", "/server_info", "/stats",
                 "/clusters", "/listeners"]:
        assert leaked(envoy.admin_get(path)) == [], path
    assert leaked(envoy.log()) == []


def _refused(envoy: procs.Envoy, server: xds.XdsServer) -> None:
    """Envoy tried the control plane and got nothing from it."""
    envoy.wait_stat("cluster.aimesh-xds.upstream_cx_total", lambda v: v >= 2, timeout=15)
    assert envoy.port is None, "no listener came from the server"
    assert "dynamic_listeners" not in envoy.admin_get("/config_dump")
    assert leaked(envoy.admin_get("/config_dump?include_eds")) == []
    assert server.metrics()["aimesh_xds_responses_total"] == 0


def test_ads_serves_only_envoys_with_a_certificate_from_its_ca(tmp_path, pki):
    mock, mcp = procs.MockLLM("mock"), procs.MockLLM("mcp-docs")
    server = xds.XdsServer(gateway(tmp_path, mock, mcp, "separate"), tls_args=pki.server_args())
    for name, tls in [("plaintext", None),
                      ("tls without a client certificate", certs.upstream_tls(pki.ca.cert, None)),
                      ("a client certificate from another CA", certs.upstream_tls(pki.ca.cert, pki.stranger))]:
        e = procs.Envoy(xds.ads_bootstrap(server.port, tls=tls, initial_fetch_timeout="1s"))
        try:
            _refused(e, server)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from err
        e.stop()
    # A raw TLS client without a certificate gets no HTTP/2 frame out of the server either.
    assert _raw_tls_without_certificate(server.port, pki) == b""
    # The gateway's own Envoy, booted from the shipped bootstrap with its documented mTLS block
    # turned on, gets the config and serves.
    good = procs.Envoy(xds.shipped_bootstrap(server.port, mtls={
        "gateway.crt": str(pki.envoy.cert), "gateway.key": str(pki.envoy.key),
        "xds-ca.crt": str(pki.ca.cert)}), env={"AIMESH_TEST_ENV_KEY": ENV_KEY})
    assert chat(good).status_code == 200
    assert server.metrics()["aimesh_xds_responses_total"] > 0


def _raw_tls_without_certificate(port: int, pki: certs.Pki) -> bytes:
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.set_alpn_protocols(["h2"])
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=certs.SERVER_NAME) as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                deadline = time.time() + 5
                while time.time() < deadline:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    got += chunk
        except (ssl.SSLError, ConnectionError, OSError):
            pass
    return got


def test_plaintext_ads_is_refused_off_loopback(pki):
    cmd = [str(paths.XDS), "serve", "--config", "/nonexistent.yaml", "--listen", "0.0.0.0:0",
           "--admin", "127.0.0.1:0", "--wasm-dir", str(paths.WASM_DIR)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "refusing plaintext ADS on 0.0.0.0:0" in r.stderr and "--tls-cert" in r.stderr
    half = subprocess.run(cmd[:5] + ["127.0.0.1:0"] + cmd[6:] + ["--tls-cert", str(pki.server.cert)],
                          capture_output=True, text=True, timeout=20)
    assert half.returncode != 0 and "missing: --tls-key, --client-ca" in half.stderr


@pytest.mark.parametrize("build", BUILDS)
def test_a_reply_echoing_the_provider_key_is_scrubbed(tmp_path, pki, build):
    mock, mcp, _server, envoy = mtls_gateway(tmp_path, pki, build)
    echo = "x-mock-echo-credentials: 1\r\n"

    def raw(model: str, extra: str = "", path: str = "/v1/chat/completions") -> rawhttp.Reply:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        if path.startswith("/mcp/"):
            # The mcp stage passes JSON-RPC only.
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        return rawhttp.http1(envoy.port, (
            f"POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n{echo}{extra}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n{body}").encode())

    for model, secret in [("gpt-4o-mini", FILE_KEY), ("env-model", ENV_KEY)]:
        ok = raw(model)
        assert ok.status == 200
        # The provider did echo it (the upstream got the key), the client sees it scrubbed.
        assert mock.records()[-1]["headers"]["authorization"] == f"Bearer {secret}"
        assert ok.headers["x-echo-credential"] == "[REDACTED]"
        err = raw(model, "x-mock-status: 401\r\n")
        assert err.status == 401
        assert json.loads(err.body)["error"]["message"] == "Incorrect API key provided: [REDACTED]"
        for reply in (ok, err):
            text = json.dumps(reply.headers) + reply.body.decode(errors="replace")
            assert secret not in text and leaked(text) == []
    # The fallback's key (re-signed by the upstream instance) and the MCP server's token.
    fb = raw("smart", "x-mock-status: 500\r\n")
    assert leaked(json.dumps(fb.headers) + fb.body.decode(errors="replace")) == []
    mcp_reply = raw("x", "x-mock-status: 403\r\n", path="/mcp/docs")
    assert mcp.records()[-1]["headers"]["authorization"] == f"Bearer {MCP_KEY}"
    assert mcp_reply.status == 403
    assert leaked(json.dumps(mcp_reply.headers) + mcp_reply.body.decode(errors="replace")) == []
    assert "[REDACTED]" in mcp_reply.body.decode()
    # A reply with nothing to scrub is untouched.
    plain = chat(envoy)
    assert plain.status_code == 200 and "[REDACTED]" not in plain.text
    assert envoy.stats("wasmcustom.aimesh.header_auth.scrubbed").get(
        "wasmcustom.aimesh.header_auth.scrubbed", 0) >= 6
