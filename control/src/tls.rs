//! TLS for the appliance's outgoing HTTPS (alert webhooks) and the CLI:
//! the roots a server is checked against, from a PEM file or the system's
//! bundle. rustls with ring, TLS 1.3 and 1.2.

use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The one crypto provider of every TLS end bulkhead has (the API server,
/// `bulkhead ctl`, webhooks, the test receivers): *ring*, which builds with
/// a C compiler alone. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange (aws-lc-rs has X25519MLKEM768 but needs cmake
/// and a longer build); docs/decisions.md, "TLS with ring".
#[allow(
    deprecated,
    reason = "ring on purpose: docs/decisions.md, \"TLS with ring\""
)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Debian's bundle of the public CAs (package ca-certificates).
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Bad { path: PathBuf, reason: String },
    #[error("{}: no certificate in the file", path.display())]
    Empty { path: PathBuf },
    #[error("no CA file given and no system bundle at {SYSTEM_CAS} (install ca-certificates)")]
    NoRoots,
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificates of a PEM file as roots.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| TlsError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// A client configuration trusting `ca` (a PEM file: a private CA, or the
/// receiver's own self-signed certificate), else the system's public CAs.
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None if Path::new(SYSTEM_CAS).exists() => roots(Path::new(SYSTEM_CAS))?,
        None => return Err(TlsError::NoRoots),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
