//! Native PII scan throughput: `cargo run --release -p aimesh-core --example pii_scan`.
//!
//! Prints MB/s for realistic chat text (with and without PII, in other scripts, hidden by
//! zero-width and fullwidth characters), a JSON chat body end to end
//! (parse, scan, splice), and adversarial inputs (1 MB of digits, `@`, one character...).

use std::time::Instant;

use aimesh_core::pii::fold::View;
use aimesh_core::pii::json::redact_request;
use aimesh_core::pii::{Engine, PiiConfig, Session};

fn prose(bytes: usize, with_pii: bool) -> String {
    let clean = "Please summarise the quarterly report: revenue grew 12% to $4.2M in Q3 2024, \
                 build 6.7.68 shipped on 2024-05-01 at 12:00, ticket 935-54-5879 is closed. ";
    let pii = "Contact jane.doe@example.com or +44 20 7946 0958, card 4111 1111 1111 1111, \
               server 10.20.30.40, key AKIA4KHVDGAJGXBENYJQ. ";
    let mut s = String::with_capacity(bytes + 256);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(if with_pii && i % 4 == 0 { pii } else { clean });
        i += 1;
    }
    s
}

fn other_scripts(bytes: usize) -> String {
    "Résumé du rapport trimestriel : 東京の売上は 12% 増加、Ελληνικά и русский текст. "
        .repeat(bytes / 100 + 1)
}

/// Every `@` fullwidth and a zero-width space after every digit group's first digit.
fn hidden(text: String) -> String {
    text.replace('@', "＠").replace(" 1111", " 1\u{200B}111")
}

fn rate(label: &str, bytes: usize, reps: usize, mut f: impl FnMut()) {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{label:<40} {:>9.1} MB/s",
        (bytes * reps) as f64 / secs / 1e6
    );
}

fn main() {
    let engine = match Engine::new(&PiiConfig::default()) {
        Ok(e) => e,
        Err(e) => return eprintln!("{e}"),
    };
    let policy = engine.policy(0).clone();
    for (label, text) in [
        ("prose, no PII (4 MB)", prose(4 << 20, false)),
        ("prose, PII every 4th sentence (4 MB)", prose(4 << 20, true)),
        // Other scripts take the no-copy path of the normalised view; hidden forms build it.
        (
            "prose in other scripts, no PII (4 MB)",
            other_scripts(4 << 20),
        ),
        (
            "prose, PII hidden by zero-width/fullwidth (4 MB)",
            hidden(prose(4 << 20, true)),
        ),
        ("1 MB of digits", "7".repeat(1 << 20)),
        ("1 MB of '@'", "@".repeat(1 << 20)),
        ("1 MB of 'a'", "a".repeat(1 << 20)),
        ("1 MB of 'a@'", "a@".repeat(1 << 19)),
        ("1 MB of '1 '", "1 ".repeat(1 << 19)),
        ("1 MB of '1-'", "1-".repeat(1 << 19)),
        ("1 MB of ':'", ":".repeat(1 << 20)),
        ("1 MB of 'eyJ.'", "eyJ.".repeat(1 << 18)),
    ] {
        rate(label, text.len(), 5, || {
            let _ = engine.redact(&text, &policy, &mut Session::default());
        });
    }
    // What deciding "no view needed" costs on its own, next to the scans above.
    for (label, text) in [
        ("view check alone, ASCII prose (4 MB)", prose(4 << 20, true)),
        (
            "view check alone, other scripts (4 MB)",
            other_scripts(4 << 20),
        ),
    ] {
        rate(label, text.len(), 5, || {
            std::hint::black_box(View::of(&text));
        });
    }
    for size in [1 << 10, 100 << 10] {
        let body = serde_json::json!({"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prose(size, true)}]})
        .to_string();
        let reps = (50 << 20) / body.len();
        rate(
            &format!("JSON chat body {} KB, end to end", size >> 10),
            body.len(),
            reps,
            || {
                let _ = redact_request(&engine, &policy, &mut Session::default(), body.as_bytes());
            },
        );
    }
}
