"""Throw-away PKI for ADS mutual TLS, made with the `openssl` CLI at test time.

`Pki(dir)` writes a CA, the xDS server's certificate (SAN `DNS:aimesh-xds`, `IP:127.0.0.1`),
a client certificate for Envoy signed by the same CA, and a client certificate from another CA
(an attacker's). Nothing is committed: each test run makes its own.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "aimesh-xds"


@dataclass(frozen=True)
class Identity:
    """A PEM certificate and its key."""

    cert: Path
    key: Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(dir: Path, name: str) -> Identity:
    ident = Identity(dir / f"{name}.crt", dir / f"{name}.key")
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(ident.key), "-out", str(ident.cert), "-days", "2", "-subj", f"/CN={name}")
    return ident


def _leaf(dir: Path, name: str, ca: Identity, ext: str) -> Identity:
    ident = Identity(dir / f"{name}.crt", dir / f"{name}.key")
    csr, extfile = dir / f"{name}.csr", dir / f"{name}.ext"
    extfile.write_text(ext + "\nbasicConstraints=CA:FALSE\n")
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(ident.key), "-out", str(csr), "-subj", f"/CN={name}")
    _run("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
         "-CAcreateserial", "-out", str(ident.cert), "-days", "2", "-extfile", str(extfile))
    return ident


class Pki:
    """The CA, the server's and Envoy's certificates, and a stranger's client certificate."""

    def __init__(self, dir: Path) -> None:
        dir.mkdir(parents=True, exist_ok=True)
        self.ca = _ca(dir, "aimesh-test-ca")
        self.server = _leaf(dir, "xds-server", self.ca,
                            f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1\n"
                            "extendedKeyUsage=serverAuth")
        self.envoy = _leaf(dir, "gateway-envoy", self.ca, "extendedKeyUsage=clientAuth")
        other_ca = _ca(dir, "other-ca")
        self.stranger = _leaf(dir, "stranger", other_ca, "extendedKeyUsage=clientAuth")

    def server_args(self) -> list[str]:
        """`aimesh-xds serve` flags for mutual TLS with this PKI."""
        return ["--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key),
                "--client-ca", str(self.ca.cert)]


def upstream_tls(ca: Path, client: Identity | None) -> dict:
    """The `transport_socket` of Envoy's `aimesh-xds` cluster: verify the server against `ca`
    and its name, present `client` (None: no client certificate)."""
    common: dict = {
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": str(ca)},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": SERVER_NAME}}],
        },
    }
    if client is not None:
        common["tls_certificates"] = [{"certificate_chain": {"filename": str(client.cert)},
                                       "private_key": {"filename": str(client.key)}}]
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": SERVER_NAME,
        "common_tls_context": common,
    }}
