//! Scores the PII detectors on the labelled development corpus (`tests/data/pii_dev.jsonl`, a
//! copy of the project's shared corpus): leak rate per type and over-redaction of decoys, with
//! the floors the project must hold. Each record is scored as written, with its values and
//! decoys hidden by zero-width characters and in fullwidth forms, and placed in each of the
//! request fields a person or tool writes (not only `messages[].content`).
//!
//! `cargo test -p aimesh-core --test pii_corpus -- --nocapture` prints the figures.

// Test helpers: a malformed corpus line must fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use aimesh_core::pii::json::redact_request;
use aimesh_core::pii::{Engine, PiiConfig, Session};
use serde_json::{json, Value};

fn corpus() -> PathBuf {
    std::env::var_os("AIMESH_PII_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pii_dev.jsonl"),
        PathBuf::from,
    )
}

/// How a record's values and decoys are written.
#[derive(Clone, Copy, Debug)]
enum Form {
    Plain,
    ZeroWidth,
    Fullwidth,
}

impl Form {
    /// What a model reads in text written in any of the forms (independent of the scanner's
    /// own normalisation, which is what is under test).
    fn undo(s: &str) -> String {
        s.chars()
            .filter(|&c| c != '\u{200B}')
            .map(|c| match c {
                '\u{3000}' => ' ',
                '\u{FF01}'..='\u{FF5E}' => {
                    char::from_u32(u32::from(c) - 0xFF01 + 0x21).unwrap_or(c)
                }
                _ => c,
            })
            .collect()
    }

    fn apply(self, s: &str) -> String {
        match self {
            Form::Plain => s.to_string(),
            // A zero-width space after every second character.
            Form::ZeroWidth => s
                .chars()
                .enumerate()
                .flat_map(|(i, c)| std::iter::once(c).chain((i % 2 == 1).then_some('\u{200B}')))
                .collect(),
            Form::Fullwidth => s
                .chars()
                .map(|c| match c {
                    ' ' => '\u{3000}',
                    '!'..='~' => char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap_or(c),
                    _ => c,
                })
                .collect(),
        }
    }
}

/// The request fields a record is placed in: a body around `text`, and where it lands.
const FIELDS: [&str; 6] = [
    "/messages/0/content",
    "/user",
    "/messages/0/name",
    "/prediction/content",
    "/tools/0/function/description",
    "/metadata/note",
];

fn body(field: &str, text: &str) -> Value {
    let mut b = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "prediction": {"type": "content"}, "metadata": {}});
    if let Some(slot) = b.pointer_mut(field) {
        *slot = Value::String(text.to_string());
    } else if let Some((parent, key)) = field.rsplit_once('/') {
        if let Some(Value::Object(m)) = b.pointer_mut(parent) {
            m.insert(key.to_string(), Value::String(text.to_string()));
        }
    }
    b
}

#[derive(Default)]
struct Score {
    per_type: BTreeMap<String, (u32, u32)>,
    decoys: u32,
    altered: u32,
}

fn score(raw: &str, engine: &Engine, form: Form, field: &str) -> Score {
    let policy = engine.policy(0).clone();
    let mut s = Score::default();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let rec: Value = serde_json::from_str(line).unwrap();
        let mut text = rec["text"].as_str().unwrap().to_string();
        let values: Vec<(String, String)> = rec["pii"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["type"].as_str().unwrap().into(),
                    p["value"].as_str().unwrap().into(),
                )
            })
            .collect();
        let decoys: Vec<&str> = rec["decoys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        for v in values
            .iter()
            .map(|v| v.1.as_str())
            .chain(decoys.iter().copied())
        {
            text = text.replace(v, &form.apply(v));
        }
        let decoys: Vec<String> = decoys.iter().map(|d| form.apply(d)).collect();
        let doc = body(field, &text).to_string();
        let out = redact_request(engine, &policy, &mut Session::default(), doc.as_bytes())
            .unwrap()
            .map_or(doc.clone(), |b| String::from_utf8(b).unwrap());
        let out: Value = serde_json::from_str(&out).unwrap();
        let got = out
            .pointer(field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A leak is the value as a model reads it, however it was written.
        let read = Form::undo(got);
        for (t, v) in &values {
            let e = s.per_type.entry(t.clone()).or_default();
            e.0 += 1;
            if read.contains(v.as_str()) {
                e.1 += 1;
                eprintln!("LEAK {form:?} {field} {t}: {v:?} in {got:?}");
            }
        }
        for d in &decoys {
            s.decoys += 1;
            if !got.contains(d.as_str()) {
                s.altered += 1;
                eprintln!("DECOY altered {form:?} {field}: {d:?} in {got:?}");
            }
        }
    }
    s
}

#[test]
fn corpus_leak_and_over_redaction_floors() {
    let path = corpus();
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("PII corpus {} unreadable: {e}", path.display()));
    let engine = Engine::new(&PiiConfig::default()).unwrap();
    let mut runs: Vec<(Form, &str)> = FIELDS.iter().map(|f| (Form::Plain, *f)).collect();
    runs.push((Form::ZeroWidth, FIELDS[0]));
    runs.push((Form::Fullwidth, FIELDS[0]));
    for (form, field) in runs {
        let s = score(&raw, &engine, form, field);
        println!("-- {form:?} in {field}");
        for (t, (n, leaked)) in &s.per_type {
            println!(
                "{t:<12} values {n:>4} leaked {leaked:>3} leak rate {:.2}%",
                100.0 * f64::from(*leaked) / f64::from(*n)
            );
        }
        println!(
            "DECOYS       {:>4} altered {:>3} over-redaction {:.2}%",
            s.decoys,
            s.altered,
            100.0 * f64::from(s.altered) / f64::from(s.decoys)
        );
        for (t, (n, leaked)) in &s.per_type {
            if t == "PHONE" {
                assert!(
                    f64::from(*leaked) < 0.02 * f64::from(*n),
                    "{form:?} {field}: PHONE leak rate too high"
                );
            } else {
                assert_eq!(*leaked, 0, "{form:?} {field}: {t} leaked");
            }
        }
        assert!(
            f64::from(s.altered) < 0.01 * f64::from(s.decoys),
            "{form:?} {field}: over-redaction too high"
        );
    }
}
