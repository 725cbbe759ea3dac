//! `pgvault import`: one secret per KEY=VALUE line of an env file, in one transaction.

use super::set::{upsert, Outcome};
use super::{check_name, check_value, Ctx};
use crate::dotenv;
use crate::error::Failure;
use std::collections::BTreeMap;
use std::io::{self, Read};
use zeroize::Zeroizing;

/// Create or update one secret per KEY=VALUE line of an env file (vault_admin)
#[derive(clap::Args)]
#[command(
    after_help = "Unchanged values are not rewritten (no new version); a key given twice: the last wins,
with a warning. FILE may be - for standard input. One transaction: a malformed line imports
nothing.

Examples:
  pgvault import .env --tag imported
  cat .env | pgvault import -"
)]
pub struct Import {
    #[arg(value_name = "FILE.env")]
    file: String,
    /// Tags for every imported secret (replaces theirs)
    #[arg(long, value_name = "T")]
    tag: Vec<String>,
}

impl Import {
    pub fn execute(self, ctx: &Ctx) -> Result<(), Failure> {
        let file = self.file.as_str();
        let mut raw = Zeroizing::new(String::new());
        if file == "-" {
            io::stdin()
                .read_to_string(&mut raw)
                .map_err(|_| Failure::input("standard input is not UTF-8 text"))?;
        } else {
            let bytes =
                Zeroizing::new(std::fs::read(file).map_err(|e| Failure::input(format!("cannot read {file}: {e}")))?);
            *raw =
                String::from_utf8(bytes.to_vec()).map_err(|_| Failure::input(format!("{file} is not UTF-8 text")))?;
        }
        // Editors on Windows start files with a byte order mark.
        let body = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
        let pairs = dotenv::parse(body).map_err(|e| Failure::input(format!("{file}: {e}; nothing was imported")))?;
        let pairs: Vec<(String, Zeroizing<String>)> = pairs.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect();
        // Last one wins, as when a shell sources the file.
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, (key, value)) in pairs.iter().enumerate() {
            let bad = |f: Failure| Failure::input(format!("{file}: {}; nothing was imported", f.message()));
            check_name(key).map_err(bad)?;
            check_value(key, value).map_err(bad)?;
            if last.insert(key.as_str(), i).is_some() {
                eprintln!("pgvault: warning: {file}: {key} is given more than once; the last one wins");
            }
        }
        let mut db = ctx.connect()?;
        let (created, updated, unchanged) = db.transaction(async |tx| {
            let (mut created, mut updated, mut unchanged) = (0, 0, 0);
            for (i, (key, value)) in pairs.iter().enumerate() {
                if last[key.as_str()] != i {
                    continue;
                }
                match upsert(tx, key, Some(value), None, &self.tag, true).await? {
                    Outcome::Created => created += 1,
                    Outcome::Updated => updated += 1,
                    Outcome::Unchanged => unchanged += 1,
                }
            }
            Ok((created, updated, unchanged))
        })?;
        eprintln!(
            "pgvault: imported {} secrets ({created} created, {updated} updated, {unchanged} unchanged)",
            last.len()
        );
        Ok(())
    }
}
