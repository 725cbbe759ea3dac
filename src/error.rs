//! One error type for the SQL surface, mapped to SQLSTATEs. Messages name secrets and keys by
//! id only: never a value, ciphertext or key bytes.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode as Code;

#[derive(Debug)]
pub enum VaultError {
    /// The library was not preloaded, so no root key exists in this server.
    NoRootKey,
    UnknownKey(String),
    /// A key exists but may not be used for this operation.
    KeyUnusable {
        key: String,
        why: String,
    },
    BadArgument {
        message: String,
        hint: Option<String>,
    },
    /// A stored ciphertext is not well-formed (not base64, too short, wrong nonce size).
    Malformed {
        secret: String,
        what: &'static str,
    },
    /// Authentication failed. `stored` is the root key fingerprint recorded for the key.
    DecryptFailed {
        secret: String,
        key: String,
        stored: Option<String>,
        loaded: String,
    },
    NotUtf8 {
        secret: String,
    },
    NullColumn(&'static str),
    /// vault.read_secret: no secret by that name (as `shown_name` shows it, or `<NULL>`).
    UnknownSecret(String),
    /// vault.read_secret: per-secret grants keep the caller out.
    SecretDenied(String),
    /// A column the triggers need is missing or has another type (e.g. renamed).
    MissingColumn {
        column: &'static str,
        typ: &'static str,
    },
    KeyTypeUnsupported(&'static str),
    /// A query vault_ext runs itself (through SPI) failed: not the caller's argument.
    Spi {
        /// What the query was doing, e.g. "read vault.keys".
        doing: &'static str,
        cause: String,
    },
    OutOfMemory,
    /// An allocation sized by an argument or a stored value could not be made.
    NoMemory {
        bytes: usize,
    },
    Internal(&'static str),
    /// A refusal with its own SQLSTATE and hint (audit retention, event rows without their change).
    Refused {
        code: Code,
        message: String,
        hint: String,
    },
}

impl From<VaultError> for ErrorReport {
    fn from(e: VaultError) -> ErrorReport {
        let new = |code, msg: String| ErrorReport::new(code, msg, "vault_ext");
        match e {
            VaultError::NoRootKey => new(Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "vault_ext has no root key: the library was not preloaded".into())
                .set_hint("Add vault_ext to shared_preload_libraries in postgresql.conf and restart the server."),
            VaultError::UnknownKey(k) => new(Code::ERRCODE_NO_DATA_FOUND, format!("vault key {k} does not exist"))
                .set_hint("See vault.keys for the available keys."),
            VaultError::KeyUnusable { key, why } => new(Code::ERRCODE_INVALID_PARAMETER_VALUE, format!("vault key {key} cannot be used: {why}"))
                .set_hint("Use a key whose status is default or valid (see vault.keys)."),
            VaultError::BadArgument { message, hint } => {
                let r = new(Code::ERRCODE_INVALID_PARAMETER_VALUE, message);
                match hint {
                    Some(h) => r.set_hint(h),
                    None => r,
                }
            }
            VaultError::Malformed { secret, what } => new(Code::ERRCODE_INVALID_PARAMETER_VALUE, format!("ciphertext of secret {secret} is malformed: {what}"))
                .set_hint("A row inserted with a nonce must carry ciphertext as written by vault_ext or supabase_vault; insert it without a nonce to have plaintext encrypted."),
            VaultError::DecryptFailed { secret, key, stored: Some(stored), loaded } if stored != loaded => new(
                Code::ERRCODE_DATA_CORRUPTED,
                format!("could not decrypt secret {secret}: the server's root key is not the one this secret was written under"),
            )
            .set_detail(format!("Key {key} was created under root key fingerprint {stored}; the server loaded root key fingerprint {loaded}."))
            .set_hint("Start the server with the original root key (vault.root_key_file or vault.getkey_script); vault.root_key_fingerprint() shows the loaded one."),
            VaultError::DecryptFailed { secret, key, .. } => new(Code::ERRCODE_DATA_CORRUPTED, format!("could not decrypt secret {secret}: the ciphertext does not authenticate"))
                .set_detail(format!("The stored ciphertext, nonce or id was changed, or it was not written with key {key} under this root key.")),
            VaultError::NotUtf8 { secret } => new(Code::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, format!("decrypted value of secret {secret} is not valid UTF-8")),
            VaultError::NullColumn(col) => new(Code::ERRCODE_NOT_NULL_VIOLATION, format!("null value in column \"{col}\" of relation \"secrets\" violates not-null constraint")),
            VaultError::MissingColumn { column, typ } => new(Code::ERRCODE_UNDEFINED_COLUMN, format!("vault.secrets has no column \"{column}\" of type {typ}"))
                .set_hint("vault_ext's triggers need vault.secrets' columns as CREATE EXTENSION made them; undo the ALTER TABLE that renamed or changed it."),
            VaultError::UnknownSecret(name) => new(Code::ERRCODE_NO_DATA_FOUND, format!("secret \"{name}\" does not exist"))
                .set_hint("Secret names are case-sensitive; see vault.decrypted_secrets."),
            VaultError::SecretDenied(name) => new(Code::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied for secret \"{name}\""))
                .set_hint("The secret has per-secret grants (vault.secret_grants); ask a vault_admin for vault.grant_secret."),
            VaultError::KeyTypeUnsupported(t) => new(Code::ERRCODE_FEATURE_NOT_SUPPORTED, format!("key type {t} is not supported on this server's CPU"))
                .set_hint("aes256gcm needs a CPU with AES-NI and CLMUL; use aead-det or aead-ietf."),
            VaultError::Spi { doing, cause } => new(Code::ERRCODE_INTERNAL_ERROR, format!("vault_ext could not {doing}: {cause}"))
                .set_hint("A query vault_ext runs itself failed. Check that the vault schema is as CREATE EXTENSION made it (ALTER EXTENSION vault_ext UPDATE after installing a new version)."),
            VaultError::OutOfMemory => new(Code::ERRCODE_OUT_OF_MEMORY, "could not allocate locked memory for a vault data key".into())
                .set_hint("Raise the server's RLIMIT_MEMLOCK."),
            VaultError::NoMemory { bytes } => new(Code::ERRCODE_OUT_OF_MEMORY, "out of memory".into())
                .set_detail(format!("vault_ext failed on a request of size {bytes} bytes."))
                .set_hint("The value is too large for the memory this server may use."),
            VaultError::Internal(what) => new(Code::ERRCODE_INTERNAL_ERROR, format!("vault_ext internal error: {what}")),
            VaultError::Refused { code, message, hint } => new(code, message).set_hint(hint),
        }
    }
}

/// Names quoted in messages: at most 64 characters (a name is an argument, and may be huge).
pub fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    const MAX_CHARS: usize = 64;
    match name.char_indices().nth(MAX_CHARS) {
        None => name.into(),
        Some((end, _)) => format!("{}...", &name[..end]).into(),
    }
}

pub type VResult<T> = Result<T, VaultError>;

impl VaultError {
    /// Map an SPI failure while doing `doing` (e.g. "read vault.keys").
    pub fn spi(doing: &'static str) -> impl FnOnce(pgrx::spi::Error) -> VaultError {
        move |e| VaultError::Spi {
            doing,
            cause: e.to_string(),
        }
    }
}

/// Write one LOG line of vault_ext's own (funcname "vault_ext": the log hook leaves such lines,
/// which never carry a value, as written).
pub fn log_line(message: String) {
    ErrorReport::new(Code::ERRCODE_SUCCESSFUL_COMPLETION, message, "vault_ext").report(pgrx::PgLogLevel::LOG);
}

/// Raise as a Postgres ERROR with its SQLSTATE, detail and hint. For code paths (triggers)
/// where pgrx would otherwise wrap a returned error and lose its SQLSTATE.
pub fn raise(e: VaultError) -> ! {
    ErrorReport::from(e).report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub trait OrRaise<T> {
    /// The value, or the error raised as a Postgres ERROR.
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for VResult<T> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}
