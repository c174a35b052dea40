//! Scores the PII detectors on the labelled development corpus (`<repo>/../shared/pii/dev.jsonl`):
//! leak rate per type and over-redaction of decoys, with the floors the project must hold.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aimesh_core::pii::{Engine, PiiConfig, Session};

fn corpus() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("AIMESH_PII_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("../shared/pii/dev.jsonl"))
}

#[test]
fn corpus_leak_and_over_redaction_floors() {
    let path = corpus();
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("PII corpus {} unreadable: {e}", path.display()));
    let engine = Engine::new(&PiiConfig::default()).unwrap();
    let policy = engine.policy(0).clone();
    let mut seen: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let (mut decoys, mut altered) = (0u32, 0u32);
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = rec["text"].as_str().unwrap();
        let out = engine
            .redact(text, &policy, &mut Session::default())
            .unwrap_or_else(|| text.to_string());
        for p in rec["pii"].as_array().unwrap() {
            let e = seen
                .entry(p["type"].as_str().unwrap().to_string())
                .or_default();
            e.0 += 1;
            if out.contains(p["value"].as_str().unwrap()) {
                e.1 += 1;
                eprintln!("LEAK {}: {:?} in {out:?}", p["type"], p["value"]);
            }
        }
        for d in rec["decoys"].as_array().unwrap() {
            decoys += 1;
            if !out.contains(d.as_str().unwrap()) {
                altered += 1;
                eprintln!("DECOY altered: {d} in {out:?}");
            }
        }
    }
    for (t, (n, leaked)) in &seen {
        println!(
            "{t:<12} values {n:>4} leaked {leaked:>3} leak rate {:.2}%",
            100.0 * f64::from(*leaked) / f64::from(*n)
        );
    }
    println!(
        "DECOYS       {decoys:>4} altered {altered:>3} over-redaction {:.2}%",
        100.0 * f64::from(altered) / f64::from(decoys)
    );
    for (t, (n, leaked)) in &seen {
        if t == "PHONE" {
            assert!(
                f64::from(*leaked) < 0.02 * f64::from(*n),
                "PHONE leak rate too high"
            );
        } else {
            assert_eq!(*leaked, 0, "{t} leaked");
        }
    }
    assert!(
        f64::from(altered) < 0.01 * f64::from(decoys),
        "over-redaction too high"
    );
}
