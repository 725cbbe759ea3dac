//! Why pgvault stops, in one table.
//!
//! Every failure has a [`Kind`]; the kind decides the command line's exit code and the HTTP
//! status `pgvault serve` answers with, and the HTTPS client (`remote.rs`) reads a refusal
//! back into the same kind (by its SQLSTATE when the server sent one). A SQLSTATE is mapped
//! to a kind here and nowhere else.

use std::io;

/// A failure as the user sees it: the same kind gives the same exit code on the command line
/// and the same HTTP status from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The database or the server failed (exit 1, HTTP 500).
    Failed,
    /// The command line or a setting is wrong (exit 2, HTTP 400).
    Usage,
    /// No such secret, version or key (exit 3, HTTP 404).
    NotFound,
    /// The role may not do that (exit 4, HTTP 403).
    Denied,
    /// No connection: unreachable, wrong password, lost (exit 5, HTTP 503).
    Connect,
    /// The user or token is not known or not accepted (exit 5, HTTP 401).
    Unauthenticated,
    /// The database has no vault_ext (exit 6, HTTP 500).
    NoExtension,
    /// A value, name, date or role the database refused (exit 7, HTTP 400).
    Input,
    /// Someone changed it first: re-read and retry (exit 1, HTTP 409).
    Conflict,
    /// verify found secrets that do not decrypt (exit 8, HTTP 500).
    Damaged,
}

impl Kind {
    /// The documented exit code of the command line.
    pub const fn exit_code(self) -> u8 {
        match self {
            Kind::Failed | Kind::Conflict => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Denied => 4,
            Kind::Connect | Kind::Unauthenticated => 5,
            Kind::NoExtension => 6,
            Kind::Input => 7,
            Kind::Damaged => 8,
        }
    }

    /// The HTTP status of `pgvault serve`'s answer.
    pub const fn http_status(self) -> u16 {
        match self {
            Kind::Failed | Kind::NoExtension | Kind::Damaged => 500,
            Kind::Usage | Kind::Input => 400,
            Kind::NotFound => 404,
            Kind::Denied => 403,
            Kind::Connect => 503,
            Kind::Unauthenticated => 401,
            Kind::Conflict => 409,
        }
    }

    /// The kind of a database error, by its SQLSTATE: THE table.
    pub fn of_sqlstate(code: &str) -> Kind {
        match code {
            // insufficient_privilege
            "42501" => Kind::Denied,
            // no_data_found (unknown secret, version or key)
            "P0002" => Kind::NotFound,
            // invalid_schema_name, undefined_table, undefined_function: no vault_ext here
            "3F000" | "42P01" | "42883" => Kind::NoExtension,
            // undefined_object (an unknown role), duplicate_object, not-null and check
            // violations, a value over a size limit, and every data exception (bad dates,
            // intervals, uuids, values)
            "42704" | "42710" | "23502" | "23514" | "54000" => Kind::Input,
            c if c.starts_with("22") => Kind::Input,
            // serialization_failure (a stale expected_version), unique_violation
            "40001" | "23505" => Kind::Conflict,
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => Kind::Unauthenticated,
            _ => Kind::Failed,
        }
    }

    /// The status HashiCorp Vault's API (`/v1/`, SPEC §12) answers with where `pgvault serve`
    /// answers `http` (`http_status`): a token that does not act is 403 there (Vault's clients
    /// read 403 as "not authenticated"), and a version mismatch 400 (check-and-set).
    pub const fn vault_status(http: u16) -> u16 {
        match http {
            401 => 403,
            409 => 400,
            s => s,
        }
    }

    /// The kind of an HTTP refusal that carries no SQLSTATE.
    pub fn of_http_status(status: u16) -> Kind {
        match status {
            400 => Kind::Input,
            401 => Kind::Unauthenticated,
            403 => Kind::Denied,
            404 => Kind::NotFound,
            409 => Kind::Conflict,
            _ => Kind::Failed,
        }
    }
}

/// Why pgvault stops, as the documented exit code and a message (never a value).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
    /// The server's SQLSTATE, when the database refused (`pgvault serve` maps it to HTTP).
    sqlstate: Option<String>,
}

/// Which role each command needs, added to every permission error.
pub const ROLES_HINT: &str =
    "hint: list needs vault_viewer, get/run/export vault_reader, set/rm/import/history/rollback/\
audit/grant/revoke/verify vault_admin (GRANT vault_reader TO your_role)";

impl Failure {
    pub fn of(kind: Kind, message: impl Into<String>) -> Failure {
        Failure::exit(kind.exit_code(), message)
    }
    /// A failure with an exit code of its own (`run`'s 126 and 127, 0 for a quiet stop).
    pub fn exit(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            sqlstate: None,
        }
    }
    /// `run`: exit with the command's own status (128 + N after signal N), nothing to say.
    pub fn status(code: u8) -> Failure {
        Failure::exit(code, "")
    }
    pub fn with_sqlstate(mut self, sqlstate: Option<String>) -> Failure {
        self.sqlstate = sqlstate;
        self
    }
    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlstate.as_deref()
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn code(&self) -> u8 {
        self.code
    }
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Failed, message)
    }
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Usage, message)
    }
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::of(Kind::NotFound, message)
    }
    pub fn denied(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Denied, message)
    }
    pub fn connect(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Connect, message)
    }
    pub fn no_extension(message: impl Into<String>) -> Failure {
        Failure::of(Kind::NoExtension, message)
    }
    pub fn input(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Input, message)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        let kind = match e.code() {
            Some(c) => Kind::of_sqlstate(c.code()),
            None if e.is_closed() => Kind::Connect,
            None => Kind::Failed,
        };
        let mut message = error_text(&e);
        if kind == Kind::Denied {
            message.push('\n');
            message.push_str(ROLES_HINT);
        }
        Failure::of(kind, message).with_sqlstate(e.code().map(|c| c.code().to_string()))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        // The reader went away (pgvault list | head -1): stop quietly, as cat does.
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure::exit(0, "");
        }
        Failure::failed(e.to_string())
    }
}

/// A server error as psql shows it: severity, message, SQLSTATE, detail and hint.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("\ndetail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("\nhint: {hint}"));
            }
            s
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The SQLSTATE of each condition name the extension's SQL raises with `USING ERRCODE =`.
    const NAMED: &[(&str, &str)] = &[
        ("feature_not_supported", "0A000"),
        ("foreign_key_violation", "23503"),
        ("insufficient_privilege", "42501"),
        ("invalid_parameter_value", "22023"),
        ("no_data_found", "P0002"),
        ("object_in_use", "55006"),
        ("object_not_in_prerequisite_state", "55000"),
        ("serialization_failure", "40001"),
        ("undefined_object", "42704"),
    ];

    /// The SQLSTATE of each `ERRCODE_*` the extension's Rust raises.
    const ERRCODES: &[(&str, &str)] = &[
        ("CHARACTER_NOT_IN_REPERTOIRE", "22021"),
        ("CONFIG_FILE_ERROR", "F0000"),
        ("DATA_CORRUPTED", "XX001"),
        ("DUPLICATE_OBJECT", "42710"),
        ("FEATURE_NOT_SUPPORTED", "0A000"),
        ("INSUFFICIENT_PRIVILEGE", "42501"),
        ("INTEGRITY_CONSTRAINT_VIOLATION", "23000"),
        ("INTERNAL_ERROR", "XX000"),
        ("INVALID_PARAMETER_VALUE", "22023"),
        ("INVALID_XML_COMMENT", "2200S"),
        ("INVALID_XML_CONTENT", "2200N"),
        ("INVALID_XML_DOCUMENT", "2200M"),
        ("INVALID_XML_PROCESSING_INSTRUCTION", "2200T"),
        ("NOT_NULL_VIOLATION", "23502"),
        ("NO_DATA_FOUND", "P0002"),
        ("NULL_VALUE_NOT_ALLOWED", "22004"),
        ("OBJECT_NOT_IN_PREREQUISITE_STATE", "55000"),
        ("OUT_OF_MEMORY", "53200"),
        ("PROGRAM_LIMIT_EXCEEDED", "54000"),
        ("SUCCESSFUL_COMPLETION", "00000"),
        ("UNDEFINED_COLUMN", "42703"),
    ];

    /// What each SQLSTATE the extension raises must mean to a user, and so to the CLI, the
    /// server and the HTTPS client alike.
    const EXPECTED: &[(&str, Kind)] = &[
        // The extension's LOG lines (never an error) and the classes its log hook masks.
        ("00000", Kind::Failed),
        ("23000", Kind::Failed),
        ("2200M", Kind::Input),
        ("2200N", Kind::Input),
        ("2200S", Kind::Input),
        ("2200T", Kind::Input),
        // A value over the extension's size limit: bad input, as every other refused value.
        ("54000", Kind::Input),
        ("0A000", Kind::Failed),
        ("22004", Kind::Input),
        ("22021", Kind::Input),
        ("22023", Kind::Input),
        ("23502", Kind::Input),
        ("23503", Kind::Failed),
        ("40001", Kind::Conflict),
        ("42501", Kind::Denied),
        ("42703", Kind::Failed),
        ("42710", Kind::Input),
        ("53200", Kind::Failed),
        ("55000", Kind::Failed),
        ("55006", Kind::Failed),
        ("F0000", Kind::Failed),
        ("P0002", Kind::NotFound),
        ("XX000", Kind::Failed),
        ("XX001", Kind::Failed),
        // Raised by PostgreSQL for what pgvault sends: an unknown role, bad dates and
        // intervals, wrong passwords, a database without the extension.
        ("42704", Kind::Input),
        ("22007", Kind::Input),
        ("22008", Kind::Input),
        ("22P02", Kind::Input),
        ("23505", Kind::Conflict),
        ("28P01", Kind::Unauthenticated),
        ("28000", Kind::Unauthenticated),
        ("3F000", Kind::NoExtension),
        ("42P01", Kind::NoExtension),
        ("42883", Kind::NoExtension),
    ];

    fn sources(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "sql") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
                out.push('\n');
            }
        }
    }

    /// Every SQLSTATE the extension raises (found in src/ and sql/ now, so a new one cannot
    /// slip by): known here, and mapped to one kind whose exit code and HTTP status read back
    /// (as remote.rs reads them) to the same exit code.
    #[test]
    fn every_sqlstate_the_extension_raises_maps_the_same_everywhere() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut text = String::new();
        sources(&root.join("src"), &mut text);
        sources(&root.join("sql"), &mut text);
        let mut raised = Vec::new();
        for part in text.split("ERRCODE_").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let code = ERRCODES.iter().find(|(n, _)| *n == name);
            raised.push(
                code.unwrap_or_else(|| panic!("ERRCODE_{name}: add it to ERRCODES and EXPECTED"))
                    .1,
            );
        }
        let lower = text.to_lowercase();
        for part in lower.split("errcode = '").skip(1) {
            let name = part.split('\'').next().unwrap();
            let code = NAMED.iter().find(|(n, _)| *n == name);
            raised.push(
                code.unwrap_or_else(|| panic!("ERRCODE = '{name}': add it to NAMED and EXPECTED"))
                    .1,
            );
        }
        assert!(
            raised.len() > 20,
            "found only {} raises: is the source layout unchanged?",
            raised.len()
        );
        for code in &raised {
            assert!(
                EXPECTED.iter().any(|(c, _)| c == code),
                "{code} is raised by the extension: say in EXPECTED what it means"
            );
        }
        for (code, kind) in EXPECTED {
            let got = Kind::of_sqlstate(code);
            assert_eq!(got, *kind, "{code}");
            // What the server answers, read back by the HTTPS client without the SQLSTATE, is
            // the same exit code (the client reads the SQLSTATE first when there is one; a 500
            // says no more than "failed" without it).
            let by_status = Kind::of_http_status(got.http_status());
            assert_eq!(by_status.http_status(), got.http_status(), "{code}");
            if got.http_status() != 500 {
                assert_eq!(
                    by_status.exit_code(),
                    got.exit_code(),
                    "{code} through HTTP {}",
                    got.http_status()
                );
            }
        }
    }

    #[test]
    fn the_undefined_object_state_is_bad_input_on_both_sides() {
        // 42704 (an unknown role in grant / token create) was exit 7 and HTTP 404 before.
        assert_eq!(Kind::of_sqlstate("42704").exit_code(), 7);
        assert_eq!(Kind::of_sqlstate("42704").http_status(), 400);
        assert_eq!(Kind::of_sqlstate("42501").http_status(), 403);
        assert_eq!(Kind::of_sqlstate("P0002").http_status(), 404);
        assert_eq!(Kind::of_sqlstate("40001").http_status(), 409);
        assert_eq!(Kind::of_sqlstate("28P01").http_status(), 401);
        assert_eq!(Kind::of_sqlstate("22007").http_status(), 400);
        assert_eq!(Kind::of_sqlstate("XX000").http_status(), 500);
    }
}
