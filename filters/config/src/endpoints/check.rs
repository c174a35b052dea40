//! Header-auth's config-time rules, without reading any secret: names, base URLs against the
//! egress allow-list, clusters, access lists, header names and `${env:NAME}` syntax.

use std::collections::BTreeMap;

use super::creds::{header_name, header_value, resolve, Env};
use super::{AuthConfig, Config};
use crate::egress::Egress;
use crate::names::{valid_account, valid_endpoint};
use crate::path::is_proxy_path;
use crate::url::BaseUrl;
use crate::{ConfigError, Validate};

/// Every variable resolves to a harmless placeholder: syntax is checked, nothing is read.
struct Placeholder;

impl Env for Placeholder {
    fn var(&self, _name: &str) -> Option<String> {
        Some("placeholder".into())
    }
}

/// The credential helpers answer `field: message`; keep the field apart.
fn split(e: String) -> ConfigError {
    match e.split_once(": ") {
        Some((f, m)) => ConfigError::invalid(f, m),
        None => ConfigError::invalid("", e),
    }
}

fn auth(field: &str, a: Option<&AuthConfig>) -> Result<(), ConfigError> {
    match a {
        Some(a) => a.render(field, &Placeholder).map(|_| ()).map_err(split),
        None => Ok(()),
    }
}

fn headers(field: &str, h: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (k, v) in h {
        let f = format!("{field}.{k}");
        header_name(&f, k).map_err(split)?;
        let value = resolve(&f, v, &Placeholder).map_err(split)?;
        header_value(&f, &value).map_err(split)?;
    }
    Ok(())
}

impl Config {
    /// Everything but secret resolution (variables are not read); `Err` names the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        let egress = self
            .egress
            .as_ref()
            .map(Egress::compile)
            .transpose()
            .map_err(split)?;
        for (name, acct) in &self.accounts {
            let field = format!("accounts.{name}");
            if !valid_account(name) {
                return Err(ConfigError::invalid(
                    field,
                    "account names are 3-32 characters of a-z, 0-9 and '-'",
                ));
            }
            auth(&format!("{field}.auth"), acct.auth.as_ref())?;
            headers(&format!("{field}.headers"), &acct.headers)?;
            for (ep_name, ep) in &acct.endpoints {
                let f = format!("{field}.endpoints.{ep_name}");
                if !valid_endpoint(ep_name) {
                    return Err(ConfigError::invalid(f, "endpoint names are 2-62 characters of A-Z, a-z, 0-9, '-', '_', '.', not starting with a digit"));
                }
                let url = BaseUrl::parse(&ep.base_url)
                    .map_err(|e| ConfigError::invalid(format!("{f}.base_url"), e))?;
                match &egress {
                    None => {
                        return Err(ConfigError::missing(
                            format!("{f}.base_url"),
                            "an egress allow-list is required when endpoints are configured",
                        ))
                    }
                    Some(e) if !e.allows(&url) => {
                        return Err(ConfigError::invalid(
                            format!("{f}.base_url"),
                            format!("host '{}' is not in the egress allow-list", url.host),
                        ))
                    }
                    Some(_) => {}
                }
                if ep.cluster.is_empty() || !ep.cluster.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ConfigError::invalid(
                        format!("{f}.cluster"),
                        "must be a non-empty Envoy cluster name",
                    ));
                }
                auth(&format!("{f}.auth"), ep.auth.as_ref())?;
                headers(&format!("{f}.headers"), &ep.headers)?;
                if ep
                    .allow
                    .as_ref()
                    .is_some_and(|a| a.key_ids.is_empty() && a.teams.is_empty())
                {
                    return Err(ConfigError::invalid(
                        format!("{f}.allow"),
                        "list at least one key id or team (omit allow to let every caller in)",
                    ));
                }
            }
        }
        if let Some(d) = &self.default_account {
            if !self.accounts.contains_key(d) {
                return Err(ConfigError::unknown(
                    "default_account",
                    format!("no account named '{d}'"),
                ));
            }
        }
        for (i, p) in self.paths.iter().enumerate() {
            let field = format!("paths[{i}]");
            if !p.prefix.starts_with('/') || is_proxy_path(&p.prefix) {
                return Err(ConfigError::invalid(
                    format!("{field}.prefix"),
                    "must start with '/' and not be under /proxy-api/",
                ));
            }
            auth(&format!("{field}.auth"), p.auth.as_ref())?;
        }
        Ok(())
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.check()
    }
}
