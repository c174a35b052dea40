//! Labelled stats: the shape of a stat whose labels ride in its name.
//!
//! A proxy-wasm stat takes no tags, so the stages name a labelled figure
//! `<name>.<label>.<value>...` (values reduced to `[A-Za-z0-9_-]`, so a dot never shifts a
//! label), and the gateway's `stats_config.stats_tags` regexes turn the pairs into Prometheus
//! tags. A host with real labels (the native build) defines each family up front with the tag
//! names as labels, so Prometheus sees the same series either way: [`Family`] says which names
//! a stage records, [`tag_name`] what each label is called as a tag.

/// What a family records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// Added to (`Metrics::count`).
    Counter,
    /// Sampled (`Metrics::record`).
    Histogram,
}

/// A labelled stat a stage records: `name`, then `.<label>.<value>` for each of `labels`, in
/// this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Counter or histogram.
    pub kind: FamilyKind,
    /// The name before the labels (`aimesh.gen_ai.client.requests`).
    pub name: &'static str,
    /// Label names as they appear in the stat name (`model`, `key_id`, `meta_project`).
    pub labels: Vec<String>,
}

impl Family {
    /// A counter family.
    pub fn counter<S: AsRef<str>>(
        name: &'static str,
        labels: impl IntoIterator<Item = S>,
    ) -> Family {
        Family::new(FamilyKind::Counter, name, labels)
    }

    /// A histogram family.
    pub fn histogram<S: AsRef<str>>(
        name: &'static str,
        labels: impl IntoIterator<Item = S>,
    ) -> Family {
        Family::new(FamilyKind::Histogram, name, labels)
    }

    fn new<S: AsRef<str>>(
        kind: FamilyKind,
        name: &'static str,
        labels: impl IntoIterator<Item = S>,
    ) -> Family {
        Family {
            kind,
            name,
            labels: labels.into_iter().map(|l| l.as_ref().to_string()).collect(),
        }
    }

    /// The label values of `stat` when it is a stat of this family, in label order.
    pub fn values<'a>(&self, stat: &'a str) -> Option<Vec<&'a str>> {
        let rest = stat.strip_prefix(self.name)?.strip_prefix('.')?;
        let mut parts = rest.split('.');
        let mut values = Vec::with_capacity(self.labels.len());
        for label in &self.labels {
            if parts.next()? != label {
                return None;
            }
            values.push(parts.next()?);
        }
        parts.next().is_none().then_some(values)
    }

    /// The labels as Prometheus tags ([`tag_name`]).
    pub fn tags(&self) -> Vec<String> {
        self.labels.iter().map(|l| tag_name(l)).collect()
    }
}

/// Each label and the tag the gateway's `stats_tags` extract it as (`envoy/*.yaml`; a test
/// holds the shipped bootstraps to this table).
pub const TAGS: [(&str, &str); 10] = [
    ("model", "gen_ai_response_model"),
    ("backend", "aimesh_backend"),
    ("key_id", "aimesh_key_id"),
    ("token_type", "gen_ai_token_type"),
    ("source", "aimesh_usage_source"),
    ("reason", "aimesh_reason"),
    ("operation_name", "gen_ai_operation_name"),
    ("provider_name", "gen_ai_provider_name"),
    ("request_model", "gen_ai_request_model"),
    ("tool_name", "gen_ai_tool_name"),
];

/// The Prometheus tag of a label: from [`TAGS`], else the label itself (`meta_<key>`, as
/// docs/gateway-yaml.md tells operators to name its `stats_tags` entry).
pub fn tag_name(label: &str) -> String {
    TAGS.iter()
        .find(|(l, _)| *l == label)
        .map_or(label, |(_, t)| t)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_of_the_family_gives_its_values_in_order() {
        let f = Family::counter("aimesh.gen_ai.client.requests", ["model", "backend"]);
        let stat = "aimesh.gen_ai.client.requests.model.gpt-4o.backend.local";
        assert_eq!(f.values(stat), Some(vec!["gpt-4o", "local"]));
    }

    #[test]
    fn other_names_label_orders_and_label_counts_are_not_the_family() {
        let f = Family::counter("aimesh.gen_ai.client.requests", ["model", "backend"]);
        for stat in [
            "aimesh.gen_ai.client.requests",
            "aimesh.gen_ai.client.requests.model.a",
            "aimesh.gen_ai.client.requests.backend.b.model.a",
            "aimesh.gen_ai.client.requests.model.a.backend.b.key_id.c",
            "aimesh.gen_ai.client.requestsx.model.a.backend.b",
            "aimesh.gen_ai.client.requests.model.a.backend",
        ] {
            assert_eq!(f.values(stat), None, "{stat}");
        }
        // A histogram whose name extends a counter's is its own family.
        let usage = Family::counter("aimesh.gen_ai.client.token.usage", ["token_type"]);
        assert_eq!(
            usage.values("aimesh.gen_ai.client.token.usage.tokens.token_type.input"),
            None
        );
    }

    #[test]
    fn labels_become_the_gateways_tags_and_unknown_ones_keep_their_name() {
        let f = Family::histogram("x", ["model", "request_model", "meta_project"]);
        assert_eq!(
            f.tags(),
            [
                "gen_ai_response_model",
                "gen_ai_request_model",
                "meta_project"
            ]
        );
    }

    /// `(tag_name, label)` of every `stats_tags` entry of a bootstrap: the label is the
    /// `\.<label>\.` its regex captures.
    fn shipped_tags(yaml: &str) -> Vec<(String, String)> {
        yaml.lines()
            .filter_map(|l| {
                let tag = l.split("tag_name:").nth(1)?.split(',').next()?.trim();
                let label = l.split(r"(\.").nth(1)?.split(r"\.").next()?;
                Some((tag.to_string(), label.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_shipped_bootstraps_extract_exactly_these_tags() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/");
        for file in ["token-accounting.yaml", "ads-bootstrap.yaml"] {
            let yaml = std::fs::read_to_string(format!("{root}{file}")).unwrap_or_default();
            let mut got = shipped_tags(&yaml);
            let mut want: Vec<(String, String)> = TAGS
                .iter()
                .map(|(l, t)| ((*t).to_string(), (*l).to_string()))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{file}");
        }
    }
}
