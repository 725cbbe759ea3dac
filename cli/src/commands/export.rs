//! `pgvault export`: the values on standard output, as an env file or JSON.

use super::reading::{self, Via};
use super::Ctx;
use crate::dotenv;
use crate::error::Failure;
use crate::text;
use clap::ValueEnum;
use std::io::{self, IsTerminal, Write};
use zeroize::Zeroizing;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Env,
    Json,
}

/// Write the values to standard output (vault_reader)
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  pgvault export --format json > backup.json\n  pgvault export --tag prod > prod.env"
)]
pub struct Export {
    #[arg(long, value_enum, default_value = "env")]
    format: Format,
    #[arg(long, value_name = "T")]
    tag: Vec<String>,
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    #[command(flatten)]
    via: Via,
}

impl Export {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let secrets = reading::secrets(ctx, &self.via, &self.tag, &self.only)?;
        let mut text = Zeroizing::new(String::new());
        let mut written = 0;
        match self.format {
            Format::Json => {
                let map: serde_json::Map<String, serde_json::Value> = secrets
                    .iter()
                    .map(|(n, v)| (n.clone(), serde_json::Value::String(v.to_string())))
                    .collect();
                text.push_str(&serde_json::to_string_pretty(&map).map_err(|e| Failure::failed(e.to_string()))?);
                text.push('\n');
                written = secrets.len();
            }
            Format::Env => {
                for (name, value) in &secrets {
                    if !dotenv::is_valid_key(name) {
                        eprintln!(
                            "pgvault: warning: skipping secret {}: its name cannot be a key in an env file (use --format json)",
                            text::escape(name)
                        );
                        continue;
                    }
                    text.push_str(&dotenv::format_line(name, value));
                    written += 1;
                }
            }
        }
        eprintln!(
            "pgvault: writing {written} secret values in plain text to standard output{}",
            if io::stdout().is_terminal() {
                " (this terminal)"
            } else {
                ""
            }
        );
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}
