//! Endpoint base URLs: `http(s)://host[:port][/path]`, no trailing slash, no query.

use std::net::IpAddr;

use super::path::check_base_path;

/// A checked base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercased host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Parsed IP when the host is an IP literal.
    pub ip: Option<IpAddr>,
    /// Explicit port, if given.
    pub port: Option<u16>,
    /// Path without trailing slash; `""` for none.
    pub path: String,
}

impl BaseUrl {
    /// The `:authority` to send: host, plus the port unless it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        let default = if self.scheme == "https" { 443 } else { 80 };
        match self.port {
            Some(p) if p != default => format!("{host}:{p}"),
            _ => host,
        }
    }

    /// Parses and checks; the error says what is wrong without repeating the URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or("must start with http:// or https://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("must start with http:// or https://".into());
        }
        if rest.contains(['?', '#']) {
            return Err("must not have a query or fragment".into());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("must not carry user info (put credentials in auth)".into());
        }
        if path.ends_with('/') {
            return Err("must not end with '/'".into());
        }
        check_base_path(path).map_err(|e| format!("path: {e}"))?;
        let (host, port) = split_host_port(authority)?;
        Ok(Self {
            scheme,
            ip: host.parse::<IpAddr>().ok(),
            host,
            port,
            path: path.to_string(),
        })
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unterminated IPv6 literal")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("invalid IPv6 literal".into());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("invalid port")?),
        };
        (h.to_ascii_lowercase(), port)
    } else {
        let (h, p) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if !valid_dns_name(h) {
            return Err("invalid host".into());
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err("invalid port".into()),
        },
    };
    Ok((host, port))
}

/// Letters, digits, hyphens in dot-separated labels of 1–63 chars (also covers IPv4 literals).
fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = BaseUrl::parse("https://TTS.Example.com/cognitiveservices/v1").unwrap();
        assert_eq!(u.host, "tts.example.com");
        assert_eq!(u.path, "/cognitiveservices/v1");
        assert_eq!(u.authority(), "tts.example.com");
        let u = BaseUrl::parse("http://10.1.2.3:8080").unwrap();
        assert_eq!(u.ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(
            (u.path.as_str(), u.authority()),
            ("", "10.1.2.3:8080".into())
        );
        let u = BaseUrl::parse("https://[::1]:8443/x").unwrap();
        assert_eq!(u.authority(), "[::1]:8443");
        assert_eq!(
            BaseUrl::parse("https://h.example.com:443")
                .unwrap()
                .authority(),
            "h.example.com"
        );
    }

    #[test]
    fn refuses_bad_base_urls() {
        for bad in [
            "ftp://h.example.com",
            "h.example.com/x",
            "https://h.example.com/",
            "https://h.example.com/x/",
            "https://h.example.com/x?y=1",
            "https://user:pw@h.example.com",
            "https://h.example.com:0",
            "https://h.example.com:99999",
            "https://h.example.com:+1",
            "https://h_x.example.com",
            "https://",
            "https://[zz]/",
            "https://h.example.com/a/../b",
            "https://h.example.com/a%2fb",
            "https://h.example.com/a\\b",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
