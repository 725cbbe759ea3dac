//! `pgvault inject`: a text file's `{{ pgvault://NAME }}` references resolved (the work is done
//! by [`crate::inject`]).

use super::reading::Via;
use super::Ctx;
use crate::error::Failure;
use crate::remote::Fetched;
use crate::store::secrets;

/// Resolve {{ pgvault://NAME }} references in a text file (vault_reader)
#[derive(clap::Args)]
#[command(after_help = INJECT_HELP)]
pub struct Inject {
    /// The template (- for standard input)
    #[arg(short = 'i', long = "in", value_name = "TEMPLATE")]
    input: String,
    /// Write here (atomically, mode 0600) instead of standard output
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    output: Option<String>,
    #[command(flatten)]
    via: Via,
}

const INJECT_HELP: &str = "Every {{ pgvault://NAME }} (spaces inside the braces optional) becomes the value of the
secret NAME; other text is unchanged. An unknown or unreadable secret fails as get does (exit
3 or 4) and writes nothing. With -o FILE the result is written to a new file with mode 0600
that replaces FILE at once (also when FILE existed, with another mode).

Examples:
  pgvault inject -i config.yml.tpl -o config.yml
  pgvault inject -i - < app.conf.tpl > /dev/null";

impl Inject {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let output = self.output.as_deref();
        match self.via.remote(ctx)? {
            Some(r) => {
                r.may_read()?;
                crate::inject::main(&self.input, output, &mut |n| {
                    Ok(match r.value(n)? {
                        Fetched::Value(v) => Some(Some(v)),
                        Fetched::NotGranted => Some(None),
                        Fetched::NotFound => None,
                    })
                })
            }
            None => {
                let db = ctx.connect()?;
                crate::inject::main(&self.input, output, &mut |n| {
                    Ok(db.wait(secrets::value(db.client(), n))?)
                })
            }
        }
    }
}
