//! The server's certificate: the configured PEM files, or a self-signed one
//! generated on first start (`rcgen`, ECDSA P-256) and kept in a directory
//! (next to the store) so its fingerprint stays the same across restarts.
//! rustls with the `ring` provider, TLS 1.3 and 1.2 only.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files a generated certificate is kept in, inside the state directory.
pub const GENERATED_CERT: &str = "api-cert.pem";
pub const GENERATED_KEY: &str = "api-key.pem";

/// Why the TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("api.cert and api.key go together: give both or neither")]
    HalfPair,
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A loaded certificate and key, ready to serve.
pub struct TlsMaterial {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), `AB:CD:...`.
    pub fingerprint: String,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// Generated during this call.
    pub generated: bool,
}

/// SHA-256 of a DER certificate, upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a PEM certificate chain (leaf first).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_err(path, e.to_string()))
}

/// Writes a file only the owner may read, atomically (temp file + rename).
fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Generates a self-signed certificate for `names` (DNS names or IP addresses).
fn generate(dir: &Path, names: Vec<String>) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bulkhead management API");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    // Key first: a crash in between leaves no certificate without its key.
    write_private(&dir.join(GENERATED_KEY), &key.serialize_pem())?;
    write_private(&dir.join(GENERATED_CERT), &cert.pem())?;
    Ok(())
}

/// The names a generated certificate is valid for: localhost, the loopback
/// addresses and the listen address when it is a specific one.
fn names_for(listen: std::net::SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            names.push(h.to_string());
        }
    }
    names
}

/// The server configuration: `cert` + `key` if given, else the certificate
/// kept in `dir` (generated there on first use).
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    dir: &Path,
    listen: std::net::SocketAddr,
) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        (None, None) => {
            let (c, k) = (dir.join(GENERATED_CERT), dir.join(GENERATED_KEY));
            let generated = !(c.exists() && k.exists());
            if generated {
                generate(dir, names_for(listen))?;
            }
            (c, k, generated)
        }
        _ => return Err(TlsError::HalfPair),
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let fp = certs
        .first()
        .map(|c| fingerprint(c.as_ref()))
        .unwrap_or_default();
    let provider = control::tls::provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config: Arc::new(config),
        fingerprint: fp,
        cert_path,
        generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_and_reused() {
        let dir = std::env::temp_dir().join(format!("bulkhead-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let listen = "127.0.0.1:0".parse().expect("addr");
        let first = load_or_generate(None, None, &dir, listen).expect("generate");
        assert!(first.generated);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let again = load_or_generate(None, None, &dir, listen).expect("reuse");
        assert!(!again.generated);
        assert_eq!(first.fingerprint, again.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(GENERATED_KEY))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
        assert!(matches!(
            load_or_generate(Some(&dir.join(GENERATED_CERT)), None, &dir, listen),
            Err(TlsError::HalfPair)
        ));
        std::fs::write(dir.join("bad.pem"), "not pem").expect("write");
        let e = load_or_generate(
            Some(&dir.join("bad.pem")),
            Some(&dir.join(GENERATED_KEY)),
            &dir,
            listen,
        );
        assert!(matches!(e, Err(TlsError::Pem { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }
}
