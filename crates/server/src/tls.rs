//! TLS on the signaling port (rustls): with a certificate and key configured (`--tls-cert`,
//! `--tls-key`, or `tls_cert`/`tls_key` in the config file), every connection to the port is
//! TLS, so the page is `https://` and signaling `wss://` on the one port. Without them the port
//! is plain, as behind a TLS-terminating proxy (docs/operations.md).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The acceptor for a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
/// Errors say which file and what is wrong with it.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE block",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_checked() {
        let dir = std::env::temp_dir().join(format!("zrooms-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key, junk) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("j.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        std::fs::write(&junk, "not pem\n").unwrap();
        assert!(acceptor(&cert, &key).is_ok());
        let e = acceptor(&junk, &key).err().unwrap();
        assert!(e.contains("j.pem") && e.contains("no CERTIFICATE"), "{e}");
        let e = acceptor(&cert, &junk).err().unwrap();
        assert!(e.starts_with("TLS key") && e.contains("j.pem"), "{e}");
        let e = acceptor(&dir.join("missing.pem"), &key).err().unwrap();
        assert!(e.contains("missing.pem"), "{e}");
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(&junk, other.signing_key.serialize_pem()).unwrap();
        let e = acceptor(&cert, &junk).err().unwrap();
        assert!(
            e.starts_with("TLS certificate and key"),
            "mismatched pair: {e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
