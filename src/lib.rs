use pgrx::prelude::*;
::pgrx::pg_module_magic!(name, version);
mod cipher;
mod sodium;
#[pg_extern]
fn hello() -> &'static str { "x" }
