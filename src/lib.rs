//! vault_ext: application secrets encrypted inside PostgreSQL, compatible with supabase_vault.
//!
//! Load order: `_PG_init` runs in the postmaster while preloading → settings → libsodium →
//! root key. Backends inherit the key through fork. Without preloading the SQL objects still
//! install, but anything that needs a key raises 55000.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

mod audit;
mod cipher;
mod errors;
mod grants;
mod guc;
mod hooks;
mod kdf;
mod keys;
mod log_redact;
mod mask;
mod plans;
mod readcache;
mod redact;
mod root_key;
mod secrets;
mod sodium;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

fn fatal(message: String, hint: &str) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR, message, "vault_ext")
        .set_hint(hint)
        .report(PgLogLevel::FATAL);
    unreachable!("FATAL does not return")
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    if !hooks::preloading() {
        return;
    }
    guc::init();
    hooks::reserve_guc_prefix();
    readcache::track();
    log_redact::install();
    if sodium::init().is_err() {
        fatal(
            "vault_ext could not initialise libsodium".into(),
            "Check the server's /dev/urandom.",
        );
    }
    let data_dir = hooks::data_dir().unwrap_or_else(|| ".".into());
    let src = root_key::KeySource {
        script: guc::getkey_script().map(Into::into),
        file: data_dir.join(guc::root_key_file()),
        autogenerate: guc::root_key_autogenerate(),
        data_dir: data_dir.clone(),
    };
    match root_key::load(&src) {
        Ok((origin, fp)) => pgrx::log!("{}", describe("root key", origin, &fp)),
        Err(e) => fatal(e.message, &e.hint),
    }
    let (script, file) = (guc::previous_getkey_script(), guc::previous_root_key_file());
    if script.is_some() || file.is_some() {
        let src = root_key::KeySource {
            script: script.map(Into::into),
            file: data_dir.join(file.unwrap_or_default()),
            autogenerate: false,
            data_dir,
        };
        match root_key::load_previous(&src) {
            Ok(Some((origin, fp))) => pgrx::log!(
                "{}; run SELECT vault.rotate_root_key() in each database, then remove the setting",
                describe("previous root key", origin, &fp)
            ),
            Ok(None) => pgrx::warning!("vault_ext: the previous root key is the current root key; ignoring it"),
            Err(e) => fatal(e.message, &e.hint),
        }
    }
}

fn describe(what: &str, origin: root_key::Origin, fp: &str) -> String {
    match origin {
        root_key::Origin::Script(p) => format!("vault_ext: {what} loaded from getkey script \"{}\" (fingerprint {fp})", p.display()),
        root_key::Origin::File(p) => format!("vault_ext: {what} loaded from \"{}\" (fingerprint {fp})", p.display()),
        root_key::Origin::Generated(p) => format!(
            "vault_ext: generated a new {what} in \"{}\" (fingerprint {fp}); back this file up: secrets cannot be decrypted without it",
            p.display()
        ),
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'vault_ext'"]
    }
}
