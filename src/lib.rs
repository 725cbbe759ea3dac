//! vault_ext: application secrets encrypted inside PostgreSQL, compatible with supabase_vault.
//!
//! Load order: `_PG_init` runs in the postmaster while preloading → settings → cache counters
//! → log hook → libsodium → root key. Backends inherit the key through fork. Without
//! preloading the SQL objects still install, but anything that needs a key raises 55000.
//!
//! Layers, each using only those after it: `api` (the SQL surface) → `vault` (keys, grants,
//! read and write paths, audit) → `cache` (stamps, kept plans) → `settings`, `error` → `ffi`
//! (the only `unsafe` code: Postgres calls pgrx does not wrap, the log hook). The code that
//! needs no Postgres (ciphers, encodings, KDF, root key, log lexer, masks) is the vault_core
//! crate (core/).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use vault_core::crypto::root_key;
use vault_core::ffi::sodium;

mod api;
mod cache;
mod error;
#[allow(unsafe_code)]
mod ffi;
mod settings;
mod vault;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
// The hand-written SQL after the generated functions, one file per concern, in this order.
extension_sql_file!(
    "../sql/keys.sql",
    name = "keys",
    requires = [api::keys::loaded_fingerprint, api::triggers::keys_changed]
);
extension_sql_file!(
    "../sql/secrets.sql",
    name = "secrets",
    requires = [
        "keys",
        api::triggers::secrets_encrypt,
        api::secrets::decrypt_row,
        api::mask::mask_secret
    ]
);
extension_sql_file!(
    "../sql/versions.sql",
    name = "versions",
    requires = [
        "secrets",
        api::secrets::decrypt_column,
        api::audit::audit_rollback,
        api::audit::rewrapped,
        api::triggers::secrets_archive,
        api::triggers::secret_versions_guard
    ]
);
extension_sql_file!(
    "../sql/audit.sql",
    name = "audit",
    requires = [
        "versions",
        api::triggers::secrets_audit_create,
        api::triggers::secrets_audit_update,
        api::triggers::secrets_audit_reencrypt,
        api::triggers::secrets_audit_delete,
        api::triggers::secrets_audit_truncate,
        api::triggers::secret_acl_audit,
        api::triggers::keys_audit,
        api::audit::purge_audit_log
    ]
);
extension_sql_file!(
    "../sql/grants.sql",
    name = "grants",
    requires = ["audit", api::triggers::grants_changed]
);
extension_sql_file!(
    "../sql/rotation.sql",
    name = "rotation",
    requires = [
        "grants",
        api::keys::check_key_type,
        api::keys::previous_fingerprint,
        api::secrets::rewrap,
        api::secrets::rekey,
        api::audit::audit_rotate_key,
        api::audit::audit_rotate_root_key
    ]
);
extension_sql_file!(
    "../sql/tokens.sql",
    name = "tokens",
    requires = [
        "rotation",
        api::tokens::create_api_token,
        api::tokens::revoke_api_token,
        api::tokens::api_token_role,
        api::tokens::api_token_self
    ]
);
extension_sql_file!(
    "../sql/migrate.sql",
    name = "migrate",
    requires = ["tokens", api::secrets::supabase_row_kind]
);
extension_sql_file!(
    "../sql/use.sql",
    name = "use",
    requires = [
        "tokens",
        api::usage::hmac_bytea,
        api::usage::hmac_text,
        api::usage::hmac_verify_bytea,
        api::usage::hmac_verify_text,
        api::usage::verify_webhook,
        api::usage::sign_jwt,
        api::usage::verify_jwt,
        api::usage::create_signing_key,
        api::usage::signing_public_key,
        api::usage::sign_message,
        api::usage::verify_signature,
        api::usage::create_encryption_key,
        api::usage::rotate_encryption_key,
        api::usage::encrypt_bytea,
        api::usage::encrypt_text,
        api::usage::decrypt_bytea,
        api::usage::decrypt_text,
        api::usage::rewrap_ciphertext,
        api::usage::unexportable_changed
    ]
);
extension_sql_file!("../sql/notify.sql", name = "notify", requires = ["migrate"]);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

fn fatal(message: String, hint: &str) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR, message, "vault_ext")
        .set_hint(hint)
        .report(PgLogLevel::FATAL);
    unreachable!("FATAL does not return")
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    if !ffi::pg::preloading() {
        return;
    }
    settings::init();
    ffi::pg::reserve_guc_prefix();
    cache::epoch::track();
    ffi::pg::install_truncate_hook();
    ffi::log_hook::install(
        settings::log_redact,
        vault::log_names::touches_vault,
        vault::log_names::decrypted,
    );
    ffi::pg::after_parse_analysis(vault::log_names::refresh);
    if sodium::init().is_err() {
        fatal(
            "vault_ext could not initialise libsodium".into(),
            "Check the server's /dev/urandom.",
        );
    }
    let data_dir = ffi::pg::data_dir().unwrap_or_else(|| ".".into());
    let src = root_key::KeySource {
        script: settings::getkey_script().map(Into::into),
        file: data_dir.join(settings::root_key_file()),
        autogenerate: settings::root_key_autogenerate(),
        data_dir: data_dir.clone(),
    };
    match root_key::load(&src) {
        Ok((origin, fp)) => error::log_line(describe("root key", origin, &fp)),
        Err(e) => fatal(e.message, &e.hint),
    }
    let (script, file) = (settings::previous_getkey_script(), settings::previous_root_key_file());
    if script.is_some() || file.is_some() {
        let src = root_key::KeySource {
            script: script.map(Into::into),
            file: data_dir.join(file.unwrap_or_default()),
            autogenerate: false,
            data_dir,
        };
        match root_key::load_previous(&src) {
            Ok(Some((origin, fp))) => error::log_line(format!(
                "{}; run SELECT vault.rotate_root_key() in each database, then remove the setting",
                describe("previous root key", origin, &fp)
            )),
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
