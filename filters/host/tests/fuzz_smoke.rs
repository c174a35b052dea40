//! The `edge` fuzz target's body (`fuzz/checks/edge.rs`) as a plain test, so `make test` runs
//! it on every change without cargo-fuzz and its nightly flags: the seed corpus
//! (`fuzz/seeds/edge`), then a few thousand inputs derived from it with a fixed seed.
//! `make fuzz` explores the same properties coverage-guided.

// Test code: a property that does not hold, or a corpus that cannot be read, must stop it.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../../../fuzz/checks/edge.rs"]
mod edge;

use std::path::Path;

/// Fragments that matter to the properties: separators, dots in every spelling, the internal
/// and Envoy header prefixes, bytes that must never pass.
const TOKENS: [&[u8]; 20] = [
    b"/",
    b"..",
    b".",
    b"%2e",
    b"%2E%2e",
    b"%2f",
    b"%5C",
    b"\\",
    b"//",
    b"?",
    b"#",
    b"%",
    b"\n",
    b"\nx-aimesh-key-id: a",
    b"\nX-AIMESH-Team: t",
    b"\nx-envoy-original-path: /x",
    b":",
    b"\0",
    b"%00",
    b"\xc0\xae",
];

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/edge");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(out.len() >= 5, "seed corpus missing");
    out
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(4) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            1 if at < input.len() => {
                input.remove(at);
            }
            2 if at < input.len() => input[at] = rng.next() as u8,
            _ => input.insert(at, b"-_/.%aAzZ09 :"[rng.below(13)]),
        }
    }
}

#[test]
fn edge_properties_hold_on_the_corpus_and_derived_inputs() {
    let seeds = seeds();
    for s in &seeds {
        edge::check(s);
    }
    let mut rng = Rng(0x5eed_ed9e);
    for _ in 0..5000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input);
        edge::check(&input);
    }
}

#[test]
fn proxy_paths_from_the_corpus_hold_too() {
    for s in seeds() {
        for line in String::from_utf8_lossy(&s).lines() {
            edge::proxy_path(line);
        }
    }
}
