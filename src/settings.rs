//! Every vault_ext setting, in one place.

use crate::ffi::log_hook::Redaction;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;

/// vault.log_redact: which server log records have their literals masked.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogRedact {
    /// Records that touch the vault (by name, through an application function, ...).
    #[name = c"vault"]
    Vault,
    /// Every record.
    #[name = c"all"]
    All,
    /// None: the log shows what PostgreSQL writes (for debugging; superuser only).
    #[name = c"off"]
    Off,
}

pub static GETKEY_SCRIPT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ROOT_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"vault_root.key"));
pub static ROOT_KEY_AUTOGENERATE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAX_VERSIONS: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static AUDIT_READS: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Seconds; 30 days.
pub static AUDIT_MIN_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
pub static PREVIOUS_GETKEY_SCRIPT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static PREVIOUS_ROOT_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LOG_REDACT: GucSetting<LogRedact> = GucSetting::<LogRedact>::new(LogRedact::Vault);

/// Define the settings. Only while preloading: PGC_POSTMASTER settings defined later
/// would crash the backend.
pub fn init() {
    GucRegistry::define_string_guc(
        c"vault.getkey_script",
        c"Executable whose first output line is the 64-hex-character root key.",
        c"When set it wins over vault.root_key_file. Same meaning as supabase_vault's setting.",
        &GETKEY_SCRIPT,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"vault.root_key_file",
        c"File holding the root key as 64 hex characters (relative to the data directory).",
        c"Must be mode 0600 and owned by the server's OS user.",
        &ROOT_KEY_FILE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"vault.root_key_autogenerate",
        c"Generate a random root key file at start when vault.root_key_file does not exist.",
        c"",
        &ROOT_KEY_AUTOGENERATE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"vault.audit_reads",
        c"Log one LOG line per decrypted value: the role and the secret's id (never the value).",
        c"Goes to the server log, so it works on standbys too.",
        &AUDIT_READS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"vault.log_redact",
        c"Which server log records have their SQL literals masked: vault (those touching the vault), all, or off.",
        c"vault recognises vault objects by any name, application functions that use the vault, and bind \
          parameters of such statements; all masks every literal of every record.",
        &LOG_REDACT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"vault.audit_min_retention",
        c"vault.purge_audit_log() keeps audit rows younger than this, whoever calls it.",
        c"Only a superuser can lower it (e.g. SET LOCAL for one purge).",
        &AUDIT_MIN_RETENTION,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"vault.max_versions",
        c"Earlier values kept per secret (vault.secret_versions); older ones are deleted.",
        c"0 keeps none. Read by the trigger that archives a secret's previous value.",
        &MAX_VERSIONS,
        0,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"vault.previous_getkey_script",
        c"Executable printing the previous root key, loaded beside the current one during root key rotation.",
        c"When set it wins over vault.previous_root_key_file. Remove it once vault.rotate_root_key() has run.",
        &PREVIOUS_GETKEY_SCRIPT,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"vault.previous_root_key_file",
        c"File holding the previous root key (relative to the data directory), for root key rotation.",
        c"Empty (the default) loads no previous key. Never generated: the file must exist.",
        &PREVIOUS_ROOT_KEY_FILE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
}

fn non_empty(s: &GucSetting<Option<CString>>) -> Option<String> {
    s.get()
        .map(|c| c.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn getkey_script() -> Option<String> {
    non_empty(&GETKEY_SCRIPT)
}

pub fn root_key_file() -> String {
    non_empty(&ROOT_KEY_FILE).unwrap_or_else(|| "vault_root.key".to_string())
}

pub fn previous_getkey_script() -> Option<String> {
    non_empty(&PREVIOUS_GETKEY_SCRIPT)
}

pub fn previous_root_key_file() -> Option<String> {
    non_empty(&PREVIOUS_ROOT_KEY_FILE)
}

pub fn audit_reads() -> bool {
    AUDIT_READS.get()
}

pub fn root_key_autogenerate() -> bool {
    ROOT_KEY_AUTOGENERATE.get()
}

/// vault.audit_min_retention in seconds (its default when the library was not preloaded).
pub fn audit_min_retention() -> i32 {
    AUDIT_MIN_RETENTION.get()
}

pub fn log_redact() -> Redaction {
    match LOG_REDACT.get() {
        LogRedact::Vault => Redaction::Vault,
        LogRedact::All => Redaction::All,
        LogRedact::Off => Redaction::Off,
    }
}
