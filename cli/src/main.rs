//! pgvault: parse the command line, run the command, exit with its code.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match pgvault::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.code() == 0 => ExitCode::SUCCESS,
        Err(f) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "pgvault: {}", f.message());
            if f.code() == 2 {
                let _ = writeln!(err, "run pgvault help for the commands, pgvault help COMMAND for one");
            }
            ExitCode::from(f.code())
        }
    }
}
