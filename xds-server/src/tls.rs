//! ADS over mutual TLS: whoever reaches the gRPC port can otherwise pull every filter config,
//! provider keys from `${file:...}` and the virtual keys' hashes included.

use std::net::SocketAddr;
use std::path::PathBuf;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// TLS options of `serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain the ADS server presents (with `--tls-key` and `--client-ca`).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle; only clients (Envoys) with a certificate it signed may connect.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Serve ADS without TLS on a non-loopback address (a mesh whose sidecar terminates mTLS).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

/// What the ADS listener will speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext (loopback, or `--insecure-plaintext`).
    Plain,
    /// TLS with required client certificates, from these PEM files.
    Mutual {
        /// Server certificate chain.
        cert: PathBuf,
        /// Server key.
        key: PathBuf,
        /// CA that signs client certificates.
        client_ca: PathBuf,
    },
}

/// Why the TLS options cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// Some but not all of the three files.
    #[error("--tls-cert, --tls-key and --client-ca go together (missing: {0})")]
    Incomplete(String),
    /// Plaintext on an address other hosts can reach.
    #[error("refusing plaintext ADS on {0}: anyone reaching it could read every provider key; give --tls-cert, --tls-key and --client-ca, or --insecure-plaintext if a sidecar provides mTLS")]
    PlainOnNetwork(SocketAddr),
    /// A file could not be read.
    #[error("{flag}: cannot read {path}: {reason}")]
    Unreadable {
        /// The flag naming the file.
        flag: &'static str,
        /// Its path.
        path: String,
        /// The OS error.
        reason: String,
    },
}

impl TlsArgs {
    /// Decides the mode for serving ADS on `listen`.
    pub fn mode(&self, listen: SocketAddr) -> Result<Mode, TlsError> {
        let given = [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--client-ca", &self.client_ca),
        ];
        if let [(_, Some(cert)), (_, Some(key)), (_, Some(ca))] = given {
            return Ok(Mode::Mutual {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
            });
        }
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(f, _)| *f)
            .collect();
        if missing.len() < given.len() {
            return Err(TlsError::Incomplete(missing.join(", ")));
        }
        if listen.ip().is_loopback() || self.insecure_plaintext {
            Ok(Mode::Plain)
        } else {
            Err(TlsError::PlainOnNetwork(listen))
        }
    }
}

fn read(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Unreadable {
        flag,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The tonic server config of a mode (`None`: plaintext).
pub fn server_config(mode: &Mode) -> Result<Option<ServerTlsConfig>, TlsError> {
    let Mode::Mutual {
        cert,
        key,
        client_ca,
    } = mode
    else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
    let ca = Certificate::from_pem(read("--client-ca", client_ca)?);
    // A client CA makes tonic require a client certificate signed by it.
    Ok(Some(
        ServerTlsConfig::new().identity(identity).client_ca_root(ca),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn plaintext_only_on_loopback_unless_asked_for() {
        let none = TlsArgs::default();
        assert_eq!(none.mode(addr("127.0.0.1:18000")), Ok(Mode::Plain));
        assert_eq!(none.mode(addr("[::1]:18000")), Ok(Mode::Plain));
        assert_eq!(
            none.mode(addr("0.0.0.0:18000")),
            Err(TlsError::PlainOnNetwork(addr("0.0.0.0:18000")))
        );
        assert!(none
            .mode(addr("10.1.2.3:18000"))
            .is_err_and(|e| e.to_string().contains("--insecure-plaintext")));
        let forced = TlsArgs {
            insecure_plaintext: true,
            ..TlsArgs::default()
        };
        assert_eq!(forced.mode(addr("0.0.0.0:18000")), Ok(Mode::Plain));
    }

    #[test]
    fn the_three_files_go_together() {
        let full = TlsArgs {
            tls_cert: Some("/c".into()),
            tls_key: Some("/k".into()),
            client_ca: Some("/ca".into()),
            insecure_plaintext: false,
        };
        assert!(matches!(
            full.mode(addr("0.0.0.0:1")),
            Ok(Mode::Mutual { .. })
        ));
        let half = TlsArgs {
            client_ca: None,
            ..full.clone()
        };
        assert_eq!(
            half.mode(addr("127.0.0.1:1")),
            Err(TlsError::Incomplete("--client-ca".into()))
        );
        let missing = server_config(&full.mode(addr("0.0.0.0:1")).unwrap_or(Mode::Plain));
        assert!(missing.is_err_and(|e| e.to_string().starts_with("--tls-cert: cannot read /c")));
    }
}
