//! `aimesh-xds keys`: mint virtual keys; only their hash goes into config.

use clap::Subcommand;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Key subcommands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generates a key, prints it once, and prints its config entry (hash only).
    New {
        /// Key id (not secret; shows in logs and metrics).
        #[arg(long)]
        id: String,
        /// Team the key belongs to.
        #[arg(long)]
        team: Option<String>,
        /// Person or service the key is issued to.
        #[arg(long)]
        owner: Option<String>,
        /// Allowed models, comma-separated (`gpt-4o-mini,team-a/*`); all when absent.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Requests naming no model the key may make, comma-separated
        /// (`GET /v1/files,/mcp/docs`); absent: all when `--models` is, else none.
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        /// RFC 3339 expiry (`2026-12-31T23:59:59Z`).
        #[arg(long)]
        expires_at: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Requests in flight at once.
        #[arg(long)]
        max_concurrent: Option<u64>,
        /// Print only `KEY HASH` on one line, for scripts.
        #[arg(long)]
        plain: bool,
    },
    /// Prints the `sha256:` hash of a key read from standard input.
    Hash,
}

/// Prefix of generated keys, so secret scanners recognise them.
pub const KEY_PREFIX: &str = "sk-aimesh-";

/// A fresh random key: prefix plus 32 random bytes, hex.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// `sha256:<hex>` of a key, the form the auth filter's config takes.
pub fn hash(key: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(key.trim().as_bytes()))
    )
}

/// The auth filter's config entry for a key (see `filters/auth/README.md`).
#[derive(Debug, Default)]
pub struct EntrySpec {
    /// Key id.
    pub id: String,
    /// Team.
    pub team: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Allowed models; empty means the field is left out (all models).
    pub models: Vec<String>,
    /// Endpoint grants; empty means the field is left out (the auth filter's default).
    pub endpoints: Vec<String>,
    /// RFC 3339 expiry.
    pub expires_at: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Requests in flight.
    pub max_concurrent: Option<u64>,
}

/// Builds the JSON entry holding only the hash of the key.
pub fn entry(spec: EntrySpec, hash: &str) -> serde_json::Value {
    use serde_json::Value;
    let mut e = serde_json::Map::new();
    e.insert("id".into(), Value::String(spec.id));
    e.insert("hash".into(), Value::String(hash.to_string()));
    let opt = |e: &mut serde_json::Map<String, Value>, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            e.insert(k.into(), v);
        }
    };
    opt(&mut e, "owner", spec.owner.map(Value::String));
    opt(&mut e, "team", spec.team.map(Value::String));
    if !spec.models.is_empty() {
        e.insert("models".into(), spec.models.into());
    }
    if !spec.endpoints.is_empty() {
        e.insert("endpoints".into(), spec.endpoints.into());
    }
    opt(&mut e, "expires_at", spec.expires_at.map(Value::String));
    opt(&mut e, "requests_per_minute", spec.rpm.map(Value::from));
    opt(
        &mut e,
        "max_concurrent",
        spec.max_concurrent.map(Value::from),
    );
    Value::Object(e)
}

/// Runs a keys subcommand.
pub fn run(cmd: KeysCommand) -> Result<(), String> {
    match cmd {
        KeysCommand::New {
            id,
            team,
            owner,
            models,
            endpoints,
            expires_at,
            rpm,
            max_concurrent,
            plain,
        } => {
            let key = generate();
            let h = hash(&key);
            if plain {
                println!("{key} {h}");
                return Ok(());
            }
            let spec = EntrySpec {
                id,
                team,
                owner,
                models,
                endpoints,
                expires_at,
                rpm,
                max_concurrent,
            };
            let entry = entry(spec, &h);
            println!("key (shown once, store it now): {key}");
            println!("config entry: {entry}");
            Ok(())
        }
        KeysCommand::Hash => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading key from stdin: {e}"))?;
            println!("{}", hash(&line));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_hash_matches_sha256() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        assert_eq!(
            hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn entry_has_only_given_fields() {
        let e = entry(
            EntrySpec {
                id: "a".into(),
                models: vec!["m".into(), "p/*".into()],
                endpoints: vec!["GET /v1/files".into()],
                rpm: Some(5),
                ..Default::default()
            },
            "sha256:00",
        );
        assert_eq!(
            e,
            serde_json::json!({"id": "a", "hash": "sha256:00", "models": ["m", "p/*"],
                               "endpoints": ["GET /v1/files"], "requests_per_minute": 5})
        );
    }
}
