//! `aimesh-xds diff OLD NEW`: what applying NEW over OLD would add, change and remove, both as
//! gateway.yaml entries and as Envoy resources. Values are never printed (they may be secrets).

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::Gateway;
use crate::snapshot::Snapshot;
use crate::{protocol::short_type, resources, validate};

fn named<T: serde::Serialize>(items: &[T], name: impl Fn(&T) -> &str) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|i| {
            (
                name(i).to_string(),
                serde_json::to_string(i).unwrap_or_default(),
            )
        })
        .collect()
}

fn sections(gw: &Gateway) -> Vec<(&'static str, BTreeMap<String, String>)> {
    let one = |v: String| BTreeMap::from([(String::new(), v)]);
    vec![
        (
            "listener",
            one(serde_json::to_string(&gw.listener).unwrap_or_default()),
        ),
        ("provider", named(&gw.providers, |p| &p.name)),
        (
            "default_provider",
            one(gw.default_provider.clone().unwrap_or_default()),
        ),
        ("custom_endpoint", named(&gw.custom_endpoints, |p| &p.name)),
        ("mcp_server", named(&gw.mcp_servers, |p| &p.name)),
        ("virtual_model", named(&gw.virtual_models, |p| &p.name)),
        ("key", named(&gw.keys, |p| &p.id)),
        (
            "limits",
            one(serde_json::to_string(&gw.limits).unwrap_or_default()),
        ),
        (
            "budgets",
            one(serde_json::to_string(&gw.budgets).unwrap_or_default()),
        ),
        (
            "price",
            gw.prices
                .iter()
                .map(|(m, p)| (m.clone(), serde_json::to_string(p).unwrap_or_default()))
                .collect(),
        ),
        (
            "pii",
            one(serde_json::to_string(&gw.pii).unwrap_or_default()),
        ),
        (
            "egress",
            one(serde_json::to_string(&gw.egress).unwrap_or_default()),
        ),
    ]
}

fn compare(
    out: &mut Vec<String>,
    kind: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) {
    let label = |n: &String| {
        if n.is_empty() {
            kind.to_string()
        } else {
            format!("{kind} {n}")
        }
    };
    for (n, v) in new {
        match old.get(n) {
            None => out.push(format!("+ {}", label(n))),
            Some(o) if o != v => out.push(format!("~ {}", label(n))),
            _ => {}
        }
    }
    for n in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(format!("- {}", label(n)));
    }
}

/// Lines describing the change, `+` added, `~` changed, `-` removed; empty when identical.
pub fn diff(old: &Gateway, new: &Gateway, wasm_dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for ((kind, o), (_, n)) in sections(old).iter().zip(sections(new).iter()) {
        compare(&mut out, kind, o, n);
    }
    let so = Snapshot::new(resources::build(old, wasm_dir, false)?);
    let sn = Snapshot::new(resources::build(new, wasm_dir, false)?);
    let mut types: Vec<&String> = so.type_urls().chain(sn.type_urls()).collect();
    types.sort();
    types.dedup();
    let mut envoy = Vec::new();
    for t in types {
        let versions = |s: &Snapshot| -> BTreeMap<String, String> {
            s.of_type(t)
                .map(|(n, r)| (n.clone(), r.version.clone()))
                .collect()
        };
        compare(
            &mut envoy,
            &format!("envoy {}", short_type(t)),
            &versions(&so),
            &versions(&sn),
        );
    }
    out.extend(envoy);
    Ok(out)
}

/// Runs the CLI command: prints the diff; errors name the file, field and line.
pub fn run(old: &Path, new: &Path) -> Result<(), String> {
    let load = |p: &Path| {
        validate::load_file(p).map_err(|es| {
            let lines: Vec<String> = es.iter().map(ToString::to_string).collect();
            format!("{} is invalid:\n  {}", p.display(), lines.join("\n  "))
        })
    };
    let (o, n) = (load(old)?, load(new)?);
    let lines = diff(&o, &n, Path::new("/wasm"))?;
    if lines.is_empty() {
        println!("no changes");
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
