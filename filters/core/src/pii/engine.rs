//! The compiled detector set, policies, and the per-request session that numbers placeholders
//! and remembers what they stand for.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;
use sha2::{Digest, Sha256};

use super::config::{type_names, Action, PiiConfig, PolicyConfig};
use super::fold::View;
use super::scan::{self, Hit};
use super::{PiiError, PiiType};

/// Type name of deny-word hits.
pub use aimesh_config::pii::DENY_WORD;

/// A detected value: byte range and type label (index into [`Engine::label_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// Type label.
    pub label: usize,
}

/// One compiled policy: an action per label.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Policy name (for logs).
    pub name: String,
    actions: Vec<Action>,
    /// Restore placeholders in responses.
    pub restore: bool,
    /// Mask PII the model returns.
    pub redact_responses: bool,
}

impl Policy {
    /// Action for a label.
    pub fn action(&self, label: usize) -> Action {
        self.actions.get(label).copied().unwrap_or(Action::Mask)
    }

    /// True when some type is not allowed, so request text must be scanned.
    pub fn scans_anything(&self) -> bool {
        self.actions.iter().any(|a| *a != Action::Allow)
    }
}

/// A policy-selection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `xds.route_name` must equal.
    pub route_name: Option<String>,
    /// Path prefix.
    pub path_prefix: Option<String>,
    /// Header name and value.
    pub header: Option<(String, String)>,
    /// Index into the policies.
    pub policy: usize,
}

/// Everything compiled from the config once per VM.
#[derive(Debug)]
pub struct Engine {
    labels: Vec<String>,
    patterns: Vec<(usize, Regex)>,
    deny: Option<Regex>,
    policies: Vec<Policy>,
    default_policy: usize,
    /// Selection rules, first match wins.
    pub rules: Vec<Rule>,
    hash_key: Vec<u8>,
}

impl Engine {
    /// Compiles a validated config.
    pub fn new(cfg: &PiiConfig) -> Result<Self, String> {
        let labels = type_names(cfg);
        let mut patterns = Vec::new();
        for (i, p) in cfg.patterns.iter().enumerate() {
            let re = Regex::new(&p.regex).map_err(|e| format!("patterns[{i}].regex: {e}"))?;
            patterns.push((PiiType::ALL.len() + i, re));
        }
        let deny = if cfg.deny_words.is_empty() {
            None
        } else {
            let alts: Vec<String> = cfg
                .deny_words
                .iter()
                .map(|w| regex::escape(w.trim()))
                .collect();
            let re = Regex::new(&format!(r"(?i)\b(?:{})\b", alts.join("|")))
                .map_err(|e| format!("deny_words: {e}"))?;
            Some(re)
        };
        let mut policies_cfg: Vec<(String, PolicyConfig)> = cfg
            .policies
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if policies_cfg.is_empty() {
            policies_cfg.push(("default".into(), PolicyConfig::default()));
        }
        let policies: Vec<Policy> = policies_cfg
            .iter()
            .map(|(name, p)| Policy {
                name: name.clone(),
                actions: labels
                    .iter()
                    .map(|l| p.actions.get(l).copied().unwrap_or(p.default_action))
                    .collect(),
                restore: p.restore,
                redact_responses: p.redact_responses,
            })
            .collect();
        let index = |n: &str| policies.iter().position(|p| p.name == n);
        let default_name = cfg.default_policy.as_deref().unwrap_or("default");
        let default_policy = index(default_name).ok_or("default_policy: unknown policy")?;
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            rules.push(Rule {
                route_name: r.route_name.clone(),
                path_prefix: r.path_prefix.clone(),
                header: r
                    .header
                    .as_ref()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.clone())),
                policy: index(&r.policy).ok_or(format!("rules[{i}].policy: unknown policy"))?,
            });
        }
        Ok(Self {
            labels,
            patterns,
            deny,
            policies,
            default_policy,
            rules,
            hash_key: cfg.hash_key.clone().unwrap_or_default().into_bytes(),
        })
    }

    /// Name of a label.
    pub fn label_name(&self, label: usize) -> &str {
        self.labels.get(label).map_or("PII", String::as_str)
    }

    /// Number of labels.
    pub fn label_count(&self) -> usize {
        self.labels.len()
    }

    /// A policy by index (the default one when out of range).
    pub fn policy(&self, i: usize) -> &Policy {
        self.policies
            .get(i)
            .or_else(|| self.policies.get(self.default_policy))
            .unwrap_or(&self.policies[0])
    }

    /// True when a rule selects by route name (reading `xds.route_name` costs a host call).
    pub fn uses_route_names(&self) -> bool {
        self.rules.iter().any(|r| r.route_name.is_some())
    }

    /// Picks the policy for a request: `header(name)` returns a request header.
    pub fn select(
        &self,
        route: Option<&str>,
        path: &str,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> usize {
        self.rules
            .iter()
            .find(|r| {
                r.route_name.as_deref().is_none_or(|n| route == Some(n))
                    && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
                    && r.header
                        .as_ref()
                        .is_none_or(|(n, v)| header(n).as_deref() == Some(v.as_str()))
            })
            .map_or(self.default_policy, |r| r.policy)
    }

    /// Non-overlapping findings in `text`, in order, for the labels `policy` does not allow.
    /// Detectors read the text as a model would ([`View`]); findings are ranges of `text`.
    pub fn find(&self, text: &str, policy: &Policy) -> Vec<Finding> {
        if !policy.scans_anything() {
            return Vec::new();
        }
        let Some(view) = View::of(text) else {
            return self.find_in(text, policy);
        };
        let mut out: Vec<Finding> = Vec::new();
        for f in self.find_in(&view.text, policy) {
            let (start, end) = view.original(f.start, f.end);
            // Two findings inside one folded character (`⑴`) would overlap in the original.
            if out.last().is_none_or(|l| start >= l.end) {
                out.push(Finding { start, end, ..f });
            }
        }
        out
    }

    fn find_in(&self, text: &str, policy: &Policy) -> Vec<Finding> {
        let wanted = |l: usize| policy.action(l) != Action::Allow;
        let mut hits: Vec<Hit> = Vec::new();
        scan::scan(text, &|t: PiiType| wanted(t.index()), &mut hits);
        let mut all: Vec<Finding> = hits
            .iter()
            .map(|h| Finding {
                start: h.start,
                end: h.end,
                label: h.kind.index(),
            })
            .collect();
        for (label, re) in &self.patterns {
            if wanted(*label) {
                all.extend(
                    re.find_iter(text)
                        .filter(|m| !m.is_empty())
                        .map(|m| Finding {
                            start: m.start(),
                            end: m.end(),
                            label: *label,
                        }),
                );
            }
        }
        if let Some(re) = &self.deny {
            let label = self.labels.len() - 1;
            if wanted(label) {
                all.extend(re.find_iter(text).map(|m| Finding {
                    start: m.start(),
                    end: m.end(),
                    label,
                }));
            }
        }
        // Earliest first, longest first at the same start; drop overlaps.
        all.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut out: Vec<Finding> = Vec::with_capacity(all.len());
        for f in all {
            if out.last().is_none_or(|l| f.start >= l.end) {
                out.push(f);
            }
        }
        out
    }

    /// Applies `policy` to `text`: `None` when nothing changed. Blocked types are recorded in
    /// the session (the caller refuses the request once the whole body is seen).
    pub fn redact(&self, text: &str, policy: &Policy, session: &mut Session) -> Option<String> {
        let findings = self.find(text, policy);
        self.apply(text, &findings, policy, session, false)
    }

    fn apply(
        &self,
        text: &str,
        findings: &[Finding],
        policy: &Policy,
        session: &mut Session,
        response: bool,
    ) -> Option<String> {
        if findings.is_empty() {
            return None;
        }
        // Built only once something is replaced: blocked or allowed findings change nothing.
        let mut out = String::new();
        let mut last = 0;
        let mut changed = false;
        for f in findings {
            let mut action = policy.action(f.label);
            if response && action == Action::Block {
                action = Action::Mask;
            }
            session.count(f.label, action);
            match action {
                Action::Allow => continue,
                Action::Block => {
                    session.blocked.insert(f.label);
                    continue;
                }
                Action::Mask | Action::Hash => {}
            }
            if !changed {
                out.reserve(text.len() + 64);
                changed = true;
            }
            out.push_str(&text[last..f.start]);
            self.push_token(&mut out, session, f.label, &text[f.start..f.end], action);
            last = f.end;
        }
        if !changed {
            return None;
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    /// Appends the placeholder for `value`: the one it already has in this session, or a new one.
    fn push_token(
        &self,
        out: &mut String,
        session: &mut Session,
        label: usize,
        value: &str,
        action: Action,
    ) {
        if let Some(t) = session.token(label, value) {
            out.push_str(t);
            return;
        }
        let name = self.label_name(label);
        let token = if action == Action::Hash {
            let mac = hmac_sha256(&self.hash_key, format!("{name}\0{value}").as_bytes());
            format!("[{name}_{}]", hex::encode(&mac[..6]))
        } else {
            if session.next.len() <= label {
                session.next.resize(label + 1, 0);
            }
            session.next[label] += 1;
            format!("[{name}_{}]", session.next[label])
        };
        out.push_str(&token);
        if session.tokens.is_empty() {
            // A request that has one value to mask usually has a few.
            session.tokens.reserve(8);
            session.originals.reserve(8);
        }
        session
            .tokens
            .entry(value.to_string())
            .or_default()
            .push((label, token.clone()));
        session.originals.insert(token, value.to_string());
    }

    /// Response text: restores placeholders (when the policy restores) and masks PII the
    /// model produced (when it redacts responses). `None` when nothing changed.
    pub fn respond(&self, text: &str, policy: &Policy, session: &mut Session) -> Option<String> {
        let out = self.respond_from(text, 0, policy, session);
        (out != text).then_some(out)
    }

    /// Ranges in `text` a response transform acts on: known placeholders and findings.
    pub fn response_spans(
        &self,
        text: &str,
        policy: &Policy,
        session: &Session,
    ) -> Vec<(usize, usize)> {
        let mut v: Vec<(usize, usize)> = Vec::new();
        if policy.restore {
            v.extend(session.placeholders_in(text).iter().map(|p| (p.0, p.1)));
        }
        if policy.redact_responses {
            v.extend(self.find(text, policy).iter().map(|f| (f.start, f.end)));
        }
        v
    }

    /// Transforms `text[from..]` (the bytes before `from` are context already released):
    /// restores placeholders and masks model-produced PII per `policy`.
    pub fn respond_from(
        &self,
        text: &str,
        from: usize,
        policy: &Policy,
        session: &mut Session,
    ) -> String {
        let restores = if policy.restore {
            session.placeholders_in(text)
        } else {
            Vec::new()
        };
        let findings = if policy.redact_responses {
            self.find(text, policy)
        } else {
            Vec::new()
        };
        let mut out = String::with_capacity(text.len().saturating_sub(from));
        let mut last = from;
        let mut r = restores.iter().filter(|x| x.0 >= from).peekable();
        let mut f = findings.iter().filter(|x| x.start >= from).peekable();
        loop {
            let next_r = r.peek().map(|x| x.0);
            let next_f = f.peek().map(|x| x.start);
            match (next_r, next_f) {
                (None, None) => break,
                (Some(rs), nf) if nf.is_none_or(|fs| rs <= fs) => {
                    let Some(&(s, e, ref value)) = r.next() else {
                        break;
                    };
                    if s < last {
                        continue;
                    }
                    out.push_str(&text[last..s]);
                    out.push_str(value);
                    last = e;
                }
                _ => {
                    let Some(x) = f.next() else { break };
                    if x.start < last {
                        continue;
                    }
                    // A finding overlapping a later placeholder is left for the placeholder.
                    if r.peek().is_some_and(|p| p.0 < x.end) {
                        continue;
                    }
                    let action = match policy.action(x.label) {
                        Action::Block => Action::Mask,
                        a => a,
                    };
                    session.count(x.label, action);
                    if action == Action::Allow {
                        continue;
                    }
                    out.push_str(&text[last..x.start]);
                    self.push_token(&mut out, session, x.label, &text[x.start..x.end], action);
                    last = x.end;
                }
            }
        }
        out.push_str(&text[last..]);
        out
    }

    /// The refusal for the types a session blocked, if any.
    pub fn blocked_error(&self, session: &Session) -> Option<PiiError> {
        if session.blocked.is_empty() {
            return None;
        }
        let names: Vec<&str> = session
            .blocked
            .iter()
            .map(|l| self.label_name(*l))
            .collect();
        Some(PiiError::Blocked(names.join(", ")))
    }
}

/// Per-request state: placeholder numbering, what each placeholder stands for, counts.
#[derive(Debug, Default, Clone)]
pub struct Session {
    /// Value -> (label, placeholder): keyed by the value alone so a lookup borrows it.
    tokens: HashMap<String, Vec<(usize, String)>>,
    originals: HashMap<String, String>,
    /// Last placeholder number per label.
    next: Vec<u32>,
    /// Findings per (label, action) not yet reported as metrics.
    pub counts: BTreeMap<(usize, Action), u32>,
    /// Findings per (label, action) already reported.
    pub reported: BTreeMap<(usize, Action), u32>,
    /// Labels whose action is block that were found.
    pub blocked: BTreeSet<usize>,
}

impl Session {
    fn token(&self, label: usize, value: &str) -> Option<&str> {
        let issued = self.tokens.get(value)?;
        issued
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, t)| t.as_str())
    }

    fn count(&mut self, label: usize, action: Action) {
        *self.counts.entry((label, action)).or_insert(0) += 1;
    }

    /// True when a placeholder was issued (so responses may need restoring).
    pub fn has_placeholders(&self) -> bool {
        !self.originals.is_empty()
    }

    /// Longest placeholder issued, in bytes (the streaming restorer holds at most this much).
    pub fn longest_placeholder(&self) -> usize {
        self.originals.keys().map(String::len).max().unwrap_or(0)
    }

    /// Known placeholders in `text`: (start, end, original value).
    pub fn placeholders_in(&self, text: &str) -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        if self.originals.is_empty() {
            return out;
        }
        let b = text.as_bytes();
        let mut i = 0;
        while let Some(off) = b[i..].iter().position(|&c| c == b'[') {
            let s = i + off;
            let inner = b[s + 1..]
                .iter()
                .take(64)
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            let e = s + 1 + inner;
            if b.get(e) == Some(&b']') {
                if let Some(v) = self.originals.get(&text[s..=e]) {
                    out.push((s, e + 1, v.clone()));
                    i = e + 1;
                    continue;
                }
            }
            i = s + 1;
        }
        out
    }

    /// `TYPE:count,...` for the access log: types and counts, never values.
    pub fn summary(&self, engine: &Engine) -> String {
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        for ((label, _), n) in self.counts.iter().chain(self.reported.iter()) {
            *per.entry(engine.label_name(*label)).or_insert(0) += n;
        }
        per.iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(json: &str) -> Engine {
        let cfg: PiiConfig = serde_json::from_str(json).unwrap();
        cfg.validate().unwrap();
        Engine::new(&cfg).unwrap()
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn masks_numbered_and_stable_within_a_request() {
        let e = engine("{}");
        let p = e.policy(0).clone();
        let mut s = Session::default();
        let out = e
            .redact("a@x.com b@x.com a@x.com 4111 1111 1111 1111", &p, &mut s)
            .unwrap();
        assert_eq!(out, "[EMAIL_1] [EMAIL_2] [EMAIL_1] [CREDIT_CARD_1]");
        assert_eq!(s.summary(&e), "CREDIT_CARD:1,EMAIL:3");
        assert_eq!(e.redact("nothing here", &p, &mut s), None);
    }

    #[test]
    fn hash_is_keyed_and_stable_across_requests() {
        let cfg = r#"{"hash_key":"0123456789abcdef0123","policies":{"default":{"default_action":"hash"}}}"#;
        let e = engine(cfg);
        let p = e.policy(0).clone();
        let a = e
            .redact("mail a@x.com", &p, &mut Session::default())
            .unwrap();
        let b = e
            .redact("mail a@x.com", &p, &mut Session::default())
            .unwrap();
        assert_eq!(a, b);
        assert!(
            a.starts_with("mail [EMAIL_") && a.len() == "mail [EMAIL_]".len() + 12,
            "{a}"
        );
        let other = engine(&cfg.replace("0123456789abcdef0123", "another-key-entirely"));
        let c = other
            .redact("mail a@x.com", other.policy(0), &mut Session::default())
            .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn block_names_types_not_values() {
        let e = engine(r#"{"policies":{"default":{"actions":{"US_SSN":"block"}}}}"#);
        let mut s = Session::default();
        e.redact("ssn 123-45-6789 mail a@x.com", e.policy(0), &mut s);
        let err = e.blocked_error(&s).unwrap().to_string();
        assert!(err.contains("US_SSN") && !err.contains("6789"), "{err}");
    }

    #[test]
    fn patterns_deny_words_and_allow() {
        let e = engine(
            r#"{"patterns":[{"name":"EMPLOYEE_ID","regex":"EMP-[0-9]{6}"}],"deny_words":["Project Falcon"],
                "policies":{"default":{"actions":{"EMAIL":"allow"}}}}"#,
        );
        let out = e
            .redact(
                "EMP-123456 on project falcon, a@x.com",
                e.policy(0),
                &mut Session::default(),
            )
            .unwrap();
        assert_eq!(out, "[EMPLOYEE_ID_1] on [DENY_WORD_1], a@x.com");
    }

    #[test]
    fn respond_restores_and_masks_new_values() {
        let e = engine(r#"{"policies":{"default":{"restore":true}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        let sent = e.redact("I am a@x.com", &p, &mut s).unwrap();
        assert_eq!(sent, "I am [EMAIL_1]");
        let back = e
            .respond("Hi [EMAIL_1], also b@y.org [EMAIL_9]", &p, &mut s)
            .unwrap();
        assert_eq!(back, "Hi a@x.com, also [EMAIL_2] [EMAIL_9]");
    }

    #[test]
    fn select_first_matching_rule() {
        let e = engine(
            r#"{"policies":{"default":{},"strict":{"default_action":"block"}},
                "rules":[{"route_name":"external","policy":"strict"},
                         {"header":{"name":"x-env","value":"prod"},"path_prefix":"/v1/","policy":"strict"}]}"#,
        );
        let none = |_: &str| None;
        let prod = |n: &str| (n == "x-env").then(|| "prod".to_string());
        assert_eq!(
            e.policy(e.select(Some("external"), "/", &none)).name,
            "strict"
        );
        assert_eq!(
            e.policy(e.select(Some("internal"), "/v1/x", &none)).name,
            "default"
        );
        assert_eq!(e.policy(e.select(None, "/v1/x", &prod)).name, "strict");
    }
}
