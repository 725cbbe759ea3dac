//! TLS as libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` ask for it.

use super::{Mode, Target};
use crate::Failure;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// The TLS settings for `mode`: which roots to trust, the client certificate, and whether the
/// host name must match. Fails when a file the mode needs is missing.
pub(super) fn tls_connector(target: &Target, mode: Mode) -> Result<MakeTlsConnector, Failure> {
    let tls_err = |e: openssl::error::ErrorStack| Failure::connect(format!("TLS setup failed: {e}"));
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(tls_err)?;
    let root = target
        .get("sslrootcert")
        .map(PathBuf::from)
        .or_else(|| target.default_file("root.crt"));
    let verify = match &root {
        Some(p) if p.as_os_str() == "system" => {
            b.set_default_verify_paths().map_err(tls_err)?;
            true
        }
        Some(p) if p.exists() => {
            b.set_ca_file(p).map_err(|e| {
                Failure::connect(format!("could not read root certificate file \"{}\": {e}", p.display()))
            })?;
            // libpq: with a root certificate file, every mode checks the server's chain.
            true
        }
        _ if mode >= Mode::VerifyCa => {
            return Err(Failure::connect(format!(
                "root certificate file \"{}\" does not exist\nhint: either provide the file (sslrootcert=FILE), \
                 use the system's trusted roots with sslrootcert=system, or change sslmode to disable server \
                 certificate verification",
                root.map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.postgresql/root.crt".into())
            )))
        }
        _ => false,
    };
    b.set_verify(if verify {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    let cert = target.get("sslcert").map(PathBuf::from);
    let cert = match cert {
        Some(c) => Some(c),
        None => target.default_file("postgresql.crt").filter(|p| p.exists()),
    };
    if let Some(cert) = cert {
        if !cert.exists() {
            return Err(Failure::connect(format!(
                "certificate file \"{}\" does not exist",
                cert.display()
            )));
        }
        let key = target
            .get("sslkey")
            .map(PathBuf::from)
            .or_else(|| target.default_file("postgresql.key"))
            .ok_or_else(|| Failure::connect("no sslkey for the client certificate"))?;
        let meta = fs::metadata(&key)
            .map_err(|e| Failure::connect(format!("cannot read private key file \"{}\": {e}", key.display())))?;
        let mode_bits = meta.permissions().mode();
        let too_open = if meta.uid() == 0 {
            mode_bits & 0o037 != 0
        } else {
            mode_bits & 0o077 != 0
        };
        if too_open {
            return Err(Failure::connect(format!(
                "private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or \
                 less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
                key.display()
            )));
        }
        b.set_certificate_chain_file(&cert)
            .map_err(|e| Failure::connect(format!("could not load certificate file \"{}\": {e}", cert.display())))?;
        b.set_private_key_file(&key, SslFiletype::PEM)
            .map_err(|e| Failure::connect(format!("could not load private key file \"{}\": {e}", key.display())))?;
        b.check_private_key().map_err(|e| {
            Failure::connect(format!(
                "certificate does not match private key file \"{}\": {e}",
                key.display()
            ))
        })?;
    }
    let mut connector = MakeTlsConnector::new(b.build());
    if mode != Mode::VerifyFull {
        connector.set_callback(|cfg, _| {
            cfg.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}
