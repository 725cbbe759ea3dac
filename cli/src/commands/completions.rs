//! `pgvault completions`: a shell completion script.

use super::Cli;
use crate::error::Failure;
use clap::CommandFactory;
use std::io::{self, Write};

/// Print a shell completion script
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  pgvault completions bash > /etc/bash_completion.d/pgvault\n  pgvault completions zsh > \"${fpath[1]}/_pgvault\"\n  pgvault completions fish > ~/.config/fish/completions/pgvault.fish"
)]
pub struct Completions {
    shell: clap_complete::Shell,
}

impl Completions {
    pub fn execute(self) -> Result<(), Failure> {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "pgvault", &mut script);
        let mut out = io::stdout().lock();
        out.write_all(&script)?;
        out.flush()?;
        Ok(())
    }
}
