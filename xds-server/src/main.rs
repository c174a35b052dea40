//! `aimesh-xds`: the aimesh control plane and operator CLI.

use aimesh_xds::{diff, keys, render, schema, serve, sim, validate};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// aimesh control plane.
#[derive(Parser)]
#[command(name = "aimesh-xds", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gateway.yaml to Envoys over ADS (SotW and delta), reloading it when it changes.
    Serve(serve::ServeArgs),
    /// Check a gateway.yaml as `serve` would (secret files read), and that the `${env:NAME}`
    /// secrets Envoy needs are set here; errors name the field and line.
    Validate {
        /// The file.
        file: PathBuf,
        /// Do not check `${env:NAME}` secrets (validating away from Envoy's environment).
        #[arg(long)]
        skip_env: bool,
    },
    /// Show what replacing OLD with NEW would add (+), change (~) and remove (-).
    Diff {
        /// Current file.
        old: PathBuf,
        /// Proposed file.
        new: PathBuf,
    },
    /// Print the JSON schema of gateway.yaml.
    Schema,
    /// Print gateway.yaml as a mesh's resources (Istio or Envoy Gateway), as one YAML stream.
    Render(render::RenderArgs),
    /// Benchmark helper: simulated ADS clients timing how fast a file change reaches them.
    #[command(hide = true)]
    Sim(sim::SimArgs),
    /// Virtual API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Validate { file, skip_env } => match validate::check_file(&file, !skip_env) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(())
            }
            Err(es) => {
                for e in &es {
                    eprintln!("{}: {e}", file.display());
                }
                Err(format!("{} error(s)", es.len()))
            }
        },
        Command::Diff { old, new } => diff::run(&old, &new),
        Command::Schema => {
            println!("{}", schema::json());
            Ok(())
        }
        Command::Render(args) => render::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Keys(cmd) => keys::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
