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

/// Runs a keys subcommand.
pub fn run(cmd: KeysCommand) -> Result<(), String> {
    match cmd {
        KeysCommand::New { id, team, plain } => {
            let key = generate();
            let h = hash(&key);
            if plain {
                println!("{key} {h}");
                return Ok(());
            }
            let mut entry = serde_json::json!({ "id": id, "hash": h });
            if let Some(t) = team {
                entry["team"] = serde_json::Value::String(t);
            }
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
}
