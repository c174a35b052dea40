//! The operator's egress allow-list: which hosts and networks endpoint base URLs may name.
//!
//! Checked once at config time against every base URL. Host names are matched by name only
//! (the gateway does not resolve DNS at config time), so the cluster an endpoint maps to must
//! resolve the same name; IP literals are matched against the CIDRs.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::url::BaseUrl;

/// Allow-list as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Host names: `api.example.com` (exact) or `*.example.com` (any name below it, not the
    /// apex). Case-insensitive. A CIDR listed here counts as one under `cidrs`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Networks for IP-literal base URLs: `10.0.0.0/8`, `fd00::/8`, or a single address.
    #[serde(default)]
    pub cidrs: Vec<String>,
}

/// A compiled allow-list.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    exact: Vec<String>,
    suffixes: Vec<String>,
    nets: Vec<Cidr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Egress {
    /// Compiles the config; the error names the entry (`egress.cidrs[1]: ...`).
    pub fn compile(c: &EgressConfig) -> Result<Self, String> {
        let mut out = Self::default();
        for (i, h) in c.hosts.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            if let Some(suffix) = h.strip_prefix("*.") {
                if !valid_name(suffix) || !suffix.contains('.') {
                    return Err(format!(
                        "egress.hosts[{i}]: wildcard must be '*.' followed by a domain with at least two labels"
                    ));
                }
                out.suffixes.push(format!(".{suffix}"));
            } else if h.parse::<IpAddr>().is_ok() || valid_name(&h) {
                out.exact.push(h);
            } else if let Some(net) = h.contains('/').then(|| parse_cidr(&h)).flatten() {
                // A network listed among hosts means the same as under `cidrs`.
                out.nets.push(net);
            } else {
                return Err(format!(
                    "egress.hosts[{i}]: not a host name, IP or '*.domain' pattern"
                ));
            }
        }
        for (i, s) in c.cidrs.iter().enumerate() {
            out.nets
                .push(parse_cidr(s).ok_or_else(|| format!("egress.cidrs[{i}]: not a CIDR or IP"))?);
        }
        Ok(out)
    }

    /// True when the base URL's host is allowed.
    pub fn allows(&self, url: &BaseUrl) -> bool {
        if self.exact.contains(&url.host) {
            return true;
        }
        match url.ip {
            Some(ip) => self.nets.iter().any(|n| n.contains(ip)),
            None => self
                .suffixes
                .iter()
                .any(|s| url.host.len() > s.len() && url.host.ends_with(s.as_str())),
        }
    }
}

fn valid_name(h: &str) -> bool {
    !h.is_empty()
        && h.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(Cidr { net: addr, bits })
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)),
                u128::from(u32::from(a)),
                self.bits,
                32,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(u128::from(n), u128::from(a), self.bits, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, width: u32) -> bool {
    let shift = width - u32::from(bits);
    shift >= width || (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(hosts: &[&str], cidrs: &[&str]) -> Egress {
        Egress::compile(&EgressConfig {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn url(s: &str) -> BaseUrl {
        BaseUrl::parse(s).unwrap()
    }

    #[test]
    fn hosts_and_wildcards() {
        let e = egress(&["api.openai.com", "*.Example.com"], &[]);
        assert!(e.allows(&url("https://api.openai.com/v1")));
        assert!(e.allows(&url("https://tts.example.com")));
        assert!(e.allows(&url("https://a.b.example.com")));
        assert!(!e.allows(&url("https://example.com")));
        assert!(!e.allows(&url("https://evilexample.com")));
        assert!(!e.allows(&url("https://api.openai.com.evil.net")));
        assert!(!e.allows(&url("http://10.0.0.1")));
    }

    #[test]
    fn cidrs() {
        let e = egress(
            &["192.168.1.9"],
            &["10.0.0.0/8", "fd00::/8", "172.16.5.4", "0.0.0.0/0"],
        );
        assert!(e.allows(&url("http://10.200.0.1:8000")));
        assert!(e.allows(&url("http://172.16.5.4")));
        assert!(e.allows(&url("http://192.168.1.9")));
        assert!(e.allows(&url("http://[fd12::1]")));
        assert!(!e.allows(&url("http://[fe80::1]")));
        assert!(
            !e.allows(&url("http://internal.example.org")),
            "names never match CIDRs"
        );
        let e = egress(&[], &["10.0.0.0/8"]);
        assert!(!e.allows(&url("http://11.0.0.1")));
        let e = egress(&["10.0.0.0/8"], &[]);
        assert!(e.allows(&url("http://10.9.9.9")));
        assert!(!e.allows(&url("http://11.0.0.1")));
        assert!(!e.allows(&url("http://[::ffff:10.0.0.1]")));
        assert!(!e.allows(&url("http://127.0.0.1")));
    }

    #[test]
    fn bad_entries_name_the_field() {
        let err = Egress::compile(&EgressConfig {
            hosts: vec!["ok.example.com".into(), "*.com".into()],
            cidrs: vec![],
        })
        .unwrap_err();
        assert!(err.starts_with("egress.hosts[1]:"), "{err}");
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129"] {
            let err = Egress::compile(&EgressConfig {
                hosts: vec![],
                cidrs: vec![bad.into()],
            })
            .unwrap_err();
            assert!(err.starts_with("egress.cidrs[0]:"), "{err}");
        }
    }
}
