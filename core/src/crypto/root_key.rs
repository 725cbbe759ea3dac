//! Where the root key comes from (getkey script → key file → autogenerate), its checks and its
//! fingerprint. Loaded once in the postmaster; backends inherit it through fork. Nothing here is
//! reachable from SQL except the fingerprint.
#![forbid(unsafe_code)]

use crate::crypto::encoding::{hex_decode_exact, hex_encode};
use crate::ffi::sodium::{self, SecretBytes, SecretVec};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const KEY_BYTES: usize = 32;
/// Most bytes read from a key file or a getkey script's output.
const READ_LIMIT: u64 = 4096;
const FINGERPRINT_MESSAGE: &[u8] = b"vault_ext root key fingerprint";

struct Loaded {
    key: SecretBytes,
    fingerprint: String,
}

static ROOT: OnceLock<Loaded> = OnceLock::new();
/// The root key being rotated away from (vault.previous_root_key_file / previous_getkey_script).
static PREVIOUS: OnceLock<Loaded> = OnceLock::new();

/// Which loaded root key a data key is derived from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Root {
    Current,
    Previous,
}

impl Root {
    fn slot(self) -> &'static OnceLock<Loaded> {
        match self {
            Root::Current => &ROOT,
            Root::Previous => &PREVIOUS,
        }
    }
}

/// Where to look for the key, resolved from the settings.
pub struct KeySource {
    pub script: Option<PathBuf>,
    pub file: PathBuf,
    pub autogenerate: bool,
    /// The data directory: its owner is the server's OS user.
    pub data_dir: PathBuf,
}

/// Why the server must not start. Never contains key bytes.
#[derive(Debug)]
pub struct StartupError {
    pub message: String,
    pub hint: String,
}

fn refuse(message: String, hint: &str) -> StartupError {
    StartupError {
        message,
        hint: hint.to_string(),
    }
}

/// How the key was obtained, for the server log.
pub enum Origin {
    Script(PathBuf),
    File(PathBuf),
    Generated(PathBuf),
}

/// Load the root key from the first source that applies and keep it for this process and
/// its children. Returns where it came from and its fingerprint.
pub fn load(src: &KeySource) -> Result<(Origin, String), StartupError> {
    let (key, origin) = if let Some(script) = &src.script {
        (from_script(script)?, Origin::Script(script.clone()))
    } else {
        match from_file(&src.file, &src.data_dir)? {
            Some(k) => (k, Origin::File(src.file.clone())),
            None if src.autogenerate => match generate(&src.file)? {
                Some(k) => (k, Origin::Generated(src.file.clone())),
                // Lost a creation race: someone else wrote it first; use theirs.
                None => (
                    from_file(&src.file, &src.data_dir)?.ok_or_else(|| missing(&src.file))?,
                    Origin::File(src.file.clone()),
                ),
            },
            None => return Err(missing(&src.file)),
        }
    };
    Ok((origin, keep(Root::Current, key)))
}

/// Load the previous root key (never generated) beside the current one. Call after `load`.
/// Returns None when it is the current key, which needs no second copy.
pub fn load_previous(src: &KeySource) -> Result<Option<(Origin, String)>, StartupError> {
    let while_loading = |e: StartupError| StartupError {
        message: format!("while loading the previous root key: {}", e.message),
        hint: e.hint,
    };
    let (key, origin) = if let Some(script) = &src.script {
        (
            from_script(script).map_err(while_loading)?,
            Origin::Script(script.clone()),
        )
    } else {
        match from_file(&src.file, &src.data_dir).map_err(while_loading)? {
            Some(k) => (k, Origin::File(src.file.clone())),
            None => {
                return Err(refuse(
                    format!("vault_ext previous root key file \"{}\" does not exist", src.file.display()),
                    "Point vault.previous_root_key_file at the old key file, or remove the setting once vault.rotate_root_key() has run.",
                ))
            }
        }
    };
    if fingerprint() == Some(compute_fingerprint(key.as_slice()).as_str()) {
        return Ok(None);
    }
    Ok(Some((origin, keep(Root::Previous, key))))
}

/// Keep `key` for the rest of the process, unreadable except inside `with_key`.
fn keep(root: Root, key: SecretBytes) -> String {
    let fingerprint = compute_fingerprint(key.as_slice());
    key.set_no_access();
    let fp = fingerprint.clone();
    // A second load in the same process (cannot happen: _PG_init runs once) keeps the first.
    let _ = root.slot().set(Loaded { key, fingerprint });
    fp
}

fn missing(path: &Path) -> StartupError {
    refuse(
        format!("vault_ext root key file \"{}\" does not exist", path.display()),
        "Restore the key file, set vault.getkey_script, or turn vault.root_key_autogenerate on to create a new key (secrets written under the old key will not decrypt).",
    )
}

/// BLAKE2b-256 of the fixed message keyed with the root key; first 16 hex characters.
pub fn compute_fingerprint(key: &[u8]) -> String {
    let mut out = [0u8; 32];
    sodium::generichash(&mut out, FINGERPRINT_MESSAGE, key);
    hex_encode(&out[..8])
}

/// The loaded key's fingerprint, or None when vault_ext was not preloaded.
pub fn fingerprint() -> Option<&'static str> {
    fingerprint_of(Root::Current)
}

pub fn fingerprint_of(root: Root) -> Option<&'static str> {
    root.slot().get().map(|l| l.fingerprint.as_str())
}

/// The loaded root key a recorded fingerprint names: NULL (never recorded) means the current
/// one; None when neither loaded key has that fingerprint.
pub fn root_for(recorded: Option<&str>) -> Option<Root> {
    match recorded {
        None => Some(Root::Current),
        Some(fp) if fingerprint() == Some(fp) => Some(Root::Current),
        Some(fp) if fingerprint_of(Root::Previous) == Some(fp) => Some(Root::Previous),
        Some(_) => None,
    }
}

/// Run `f` with that root key readable; the pages are unreadable again afterwards.
pub fn with_key<R>(root: Root, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let loaded = root.slot().get()?;
    loaded.key.set_read_only();
    let r = f(loaded.key.as_slice());
    loaded.key.set_no_access();
    Some(r)
}

/// Parse 64 hex characters (surrounding whitespace ignored) into guarded memory.
fn parse_hex_key(text: &[u8]) -> Result<SecretBytes, String> {
    let start = text.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    let body = &text[start..end];
    if body.len() != 2 * KEY_BYTES {
        return Err(format!("holds {} characters instead of 64 hex characters", body.len()));
    }
    let mut bytes = hex_decode_exact::<KEY_BYTES>(body).ok_or("is not all hex characters (0-9, a-f)")?;
    let mut key = SecretBytes::zeroed(KEY_BYTES).ok_or("could not be placed in locked memory")?;
    key.as_mut_slice().copy_from_slice(&bytes);
    sodium::memzero(&mut bytes);
    Ok(key)
}

fn read_bounded(r: impl Read) -> std::io::Result<SecretVec> {
    let mut buf = SecretVec::with_capacity(READ_LIMIT as usize);
    r.take(READ_LIMIT).read_to_end(buf.vec_mut())?;
    Ok(buf)
}

/// The key file, or None when it does not exist.
fn from_file(path: &Path, data_dir: &Path) -> Result<Option<SecretBytes>, StartupError> {
    let shown = path.display();
    // A symlink could point the server at a key file someone else controls: refuse it.
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(refuse(
            format!("vault_ext root key file \"{shown}\" is a symbolic link"),
            "Point vault.root_key_file at the real file (mode 0600, owned by the server's OS user).",
        ));
    }
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(refuse(
                format!("could not stat vault_ext root key file \"{shown}\": {e}"),
                "Check the path in vault.root_key_file and the permissions of its directories.",
            ))
        }
    };
    if !meta.is_file() {
        return Err(refuse(
            format!("vault_ext root key file \"{shown}\" is not a regular file"),
            "Point vault.root_key_file at a file holding 64 hex characters.",
        ));
    }
    let server_uid = fs::metadata(data_dir).map(|m| m.uid()).ok();
    if server_uid.is_some_and(|uid| uid != meta.uid()) {
        return Err(refuse(
            format!("vault_ext root key file \"{shown}\" is not owned by the server's OS user"),
            "chown the file to the user that runs PostgreSQL (the owner of the data directory).",
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse(
            format!(
                "vault_ext root key file \"{shown}\" has group or world access (mode {:04o})",
                meta.permissions().mode() & 0o7777
            ),
            "Run chmod 600 on the file.",
        ));
    }
    let text = fs::File::open(path).and_then(read_bounded).map_err(|e| {
        refuse(
            format!("could not read vault_ext root key file \"{shown}\": {e}"),
            "Check the file's permissions.",
        )
    })?;
    parse_hex_key(text.as_slice()).map(Some).map_err(|problem| {
        refuse(
            format!("vault_ext root key file \"{shown}\" {problem}"),
            "The file must hold exactly 64 hex characters (32 bytes), e.g. from: openssl rand -hex 32",
        )
    })
}

/// Create the key file with a fresh random key (0600, O_EXCL). None if it appeared meanwhile.
fn generate(path: &Path) -> Result<Option<SecretBytes>, StartupError> {
    let shown = path.display();
    let key = SecretBytes::random(KEY_BYTES).ok_or_else(|| {
        refuse(
            "could not allocate locked memory for the vault_ext root key".into(),
            "Raise the server's RLIMIT_MEMLOCK.",
        )
    })?;
    let mut text = SecretVec::from_vec(hex_encode(key.as_slice()).into_bytes());
    text.vec_mut().push(b'\n');
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => {
            return Err(refuse(
                format!("could not create vault_ext root key file \"{shown}\": {e}"),
                "Make the directory writable by the server's OS user, or create the key file yourself.",
            ))
        }
    };
    let written = file.write_all(text.as_slice()).and_then(|_| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(refuse(
            format!("could not write vault_ext root key file \"{shown}\": {e}"),
            "Check free disk space.",
        ));
    }
    if let Some(dir) = path.parent().and_then(|d| fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(Some(key))
}

/// Run the getkey script and take its first output line. Its stderr is discarded so nothing
/// it prints reaches the server log.
fn from_script(path: &Path) -> Result<SecretBytes, StartupError> {
    let shown = path.display();
    let hint = "vault.getkey_script must name an executable that prints the 64-hex-character root key on its first line and exits with status 0.";
    let meta = fs::metadata(path)
        .map_err(|e| refuse(format!("vault_ext getkey script \"{shown}\" cannot be used: {e}"), hint))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(refuse(
            format!("vault_ext getkey script \"{shown}\" is not an executable file"),
            hint,
        ));
    }
    let mut child = Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| refuse(format!("could not run vault_ext getkey script \"{shown}\": {e}"), hint))?;
    let out = read_bounded(child.stdout.take().expect("piped stdout"));
    if out.as_ref().is_ok_and(|o| o.as_slice().len() as u64 >= READ_LIMIT) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(refuse(
            format!("vault_ext getkey script \"{shown}\" printed more than {READ_LIMIT} bytes"),
            hint,
        ));
    }
    let status = child.wait().map_err(|e| {
        refuse(
            format!("could not wait for vault_ext getkey script \"{shown}\": {e}"),
            hint,
        )
    })?;
    if !status.success() {
        return Err(refuse(
            format!("vault_ext getkey script \"{shown}\" failed ({status})"),
            hint,
        ));
    }
    let out = out.map_err(|e| {
        refuse(
            format!("could not read output of vault_ext getkey script \"{shown}\": {e}"),
            hint,
        )
    })?;
    let line = out.as_slice().split(|&c| c == b'\n').next().unwrap_or(&[]);
    if line.len() != 2 * KEY_BYTES {
        return Err(refuse(
            format!("vault_ext getkey script \"{shown}\" printed {} characters on its first line instead of 64 hex characters", line.len()),
            hint,
        ));
    }
    parse_hex_key(line)
        .map_err(|problem| refuse(format!("output of vault_ext getkey script \"{shown}\" {problem}"), hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_whitespace_and_rejects_bad_keys() {
        sodium::init().unwrap();
        let k = "ab".repeat(32);
        assert_eq!(
            parse_hex_key(format!("  {k}\n").as_bytes()).unwrap().as_slice(),
            &[0xab; 32]
        );
        assert_eq!(
            parse_hex_key(k.to_uppercase().as_bytes()).unwrap().as_slice(),
            &[0xab; 32]
        );
        let short = parse_hex_key(&k.as_bytes()[..63]).err().unwrap();
        assert!(short.contains("63 characters"), "{short}");
        let nonhex = parse_hex_key(format!("{}zz", &k[..62]).as_bytes()).err().unwrap();
        assert!(nonhex.contains("not all hex"), "{nonhex}");
        assert!(!nonhex.contains("abab"));
    }

    #[test]
    fn fingerprint_is_keyed_blake2b_of_the_fixed_message() {
        sodium::init().unwrap();
        // Known answer computed independently (Python: hashlib.blake2b(msg, key=k, digest_size=32)).
        let key = [0x11u8; 32];
        assert_eq!(compute_fingerprint(&key), "b3bca8fee82abeaf");
    }
}
