//! Token estimates with the OpenAI tokenizers (tiktoken-rs) for providers that report no usage.
//!
//! The rank tables take a noticeable time and ~tens of MB to build, so each encoding is built on
//! first use and kept for the life of the VM (one per Envoy worker; Wasm VMs are single-threaded,
//! so a thread-local is a per-VM singleton).

use std::cell::OnceCell;

use serde::Deserialize;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

pub use aimesh_config::accounting::Encoding;

thread_local! {
    static CL100K: OnceCell<Option<CoreBPE>> = const { OnceCell::new() };
    static O200K: OnceCell<Option<CoreBPE>> = const { OnceCell::new() };
}

/// Tokens of `text` (special-token strings count as ordinary text); `None` if the tokenizer
/// could not be built.
pub fn count(enc: Encoding, text: &str) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    let run = |cell: &OnceCell<Option<CoreBPE>>| {
        let bpe = cell.get_or_init(|| match enc {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base().ok(),
            Encoding::O200kBase => tiktoken_rs::o200k_base().ok(),
        });
        bpe.as_ref()
            .map(|b| u64::try_from(b.encode_ordinary(text).len()).unwrap_or(u64::MAX))
    };
    match enc {
        Encoding::Cl100kBase => CL100K.with(run),
        Encoding::O200kBase => O200K.with(run),
    }
}

/// Per-message overhead of the chat format (OpenAI's counting guide for current models).
const PER_MESSAGE: u64 = 3;
/// Extra token when a message has a `name`.
const PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const REPLY_PRIMING: u64 = 3;

fn value_tokens(enc: Encoding, v: &Value) -> u64 {
    match v {
        Value::String(s) => count(enc, s).unwrap_or(0),
        Value::Null => 0,
        Value::Array(parts)
            if parts
                .iter()
                .all(|p| p.get("type").is_some() || p.is_string()) =>
        {
            parts
                .iter()
                .map(|p| match p {
                    Value::String(s) => count(enc, s).unwrap_or(0),
                    _ => p
                        .get("text")
                        .and_then(Value::as_str)
                        .map_or(0, |t| count(enc, t).unwrap_or(0)),
                })
                .sum()
        }
        other => count(enc, &other.to_string()).unwrap_or(0),
    }
}

#[derive(Deserialize)]
struct PromptWire {
    #[serde(default)]
    messages: Option<Vec<serde_json::Map<String, Value>>>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    input: Option<Value>,
}

/// Bytes per token of the admission estimate: OpenAI's rule of thumb for English text (~4
/// characters a token). JSON syntax makes a body a little longer than its text, so for English
/// the estimate errs high; for scripts of 2-4 UTF-8 bytes a character it errs low.
pub const BYTES_PER_TOKEN: u64 = 4;

/// The prompt estimate limits admit on: `ceil(body_bytes / 4)`.
///
/// Admission must not tokenize: BPE over the prompt costs more than the rest of the chain (a
/// profile of the five-filter chain put ~270 µs of a 1 KB request's ~380 µs of Wasm time in
/// it), and the estimate is only a reservation that the provider's usage settles when the reply
/// ends. The body's length is in `content-length`, so admission needs no body at all.
pub fn prompt_from_size(body_bytes: u64) -> u64 {
    body_bytes.div_ceil(BYTES_PER_TOKEN)
}

/// Estimated prompt tokens of a chat, completions or embeddings request body.
pub fn prompt_tokens(enc: Encoding, body: &[u8]) -> Option<u64> {
    let w: PromptWire = serde_json::from_slice(body).ok()?;
    if let Some(messages) = w.messages {
        let mut n = REPLY_PRIMING;
        for m in &messages {
            n += PER_MESSAGE;
            for (k, v) in m {
                n += value_tokens(enc, v);
                if k == "name" {
                    n += PER_NAME;
                }
            }
        }
        return Some(n);
    }
    let texts = w.prompt.or(w.input)?;
    Some(match &texts {
        Value::String(s) => count(enc, s).unwrap_or(0),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => count(enc, s).unwrap_or(0),
                // Pre-tokenized input: one number per token.
                Value::Number(_) => 1,
                Value::Array(toks) => u64::try_from(toks.len()).unwrap_or(0),
                _ => 0,
            })
            .sum(),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_estimate_is_a_quarter_of_the_bytes_rounded_up() {
        assert_eq!(prompt_from_size(0), 0);
        assert_eq!(prompt_from_size(1), 1);
        assert_eq!(prompt_from_size(4), 1);
        assert_eq!(prompt_from_size(5), 2);
        assert_eq!(prompt_from_size(1024), 256);
        assert_eq!(prompt_from_size(u64::MAX), u64::MAX / 4 + 1);
    }

    #[test]
    fn picks_encoding_by_family() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("openai/gpt-4.1"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("o3-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("ollama-llama3"), Encoding::Cl100kBase);
    }

    #[test]
    fn counts_known_strings() {
        // Reference figures from Python tiktoken.
        assert_eq!(count(Encoding::Cl100kBase, "hello world"), Some(2));
        assert_eq!(count(Encoding::O200kBase, "hello world"), Some(2));
        assert_eq!(count(Encoding::Cl100kBase, "<|endoftext|>"), Some(7));
    }

    #[test]
    fn chat_prompt_follows_openai_rules() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"hello world"},
            {"role":"user","name":"bob","content":[{"type":"text","text":"hello world"}]}]}"#;
        // 3 priming + 2 x (3 + role 1 + content 2) + name (1 + 1)
        assert_eq!(prompt_tokens(Encoding::O200kBase, body), Some(3 + 12 + 2));
        let emb = br#"{"model":"e","input":["hello world","hello"]}"#;
        assert_eq!(prompt_tokens(Encoding::Cl100kBase, emb), Some(3));
    }

    /// Same counts as Python tiktoken on the shared corpus (the e2e suite checks the fixture is
    /// what Python tiktoken gives: tests/e2e/test_token_accounting_tiktoken.py).
    #[test]
    fn matches_python_tiktoken_corpus() {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("testdata/tiktoken_counts.json")).unwrap();
        assert!(rows.len() >= 200);
        let mut mismatches = Vec::new();
        for r in &rows {
            let text = r["text"].as_str().unwrap();
            for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
                let want = r[enc.name()].as_u64().unwrap();
                let got = count(enc, text).unwrap();
                if got != want {
                    mismatches.push((
                        enc.name(),
                        text.chars().take(40).collect::<String>(),
                        got,
                        want,
                    ));
                }
            }
        }
        assert!(mismatches.is_empty(), "{mismatches:?}");
    }

    /// Worst case for BPE: one 100,000-byte piece. tiktoken switches to a heap-based merge for
    /// long pieces, so this stays O(n log n); the time is printed (`--nocapture`).
    #[test]
    fn long_run_of_one_character_is_not_quadratic() {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let _ = count(enc, "warm up");
            for ch in ["a", "1", " ", "é"] {
                let text = ch.repeat(100_000);
                let t = std::time::Instant::now();
                let n = count(enc, &text).unwrap();
                eprintln!(
                    "{}: 100000 x {:?} -> {n} tokens in {:?}",
                    enc.name(),
                    ch,
                    t.elapsed()
                );
                assert!(n > 0 && n <= 100_000 * ch.len() as u64);
            }
        }
    }
}
