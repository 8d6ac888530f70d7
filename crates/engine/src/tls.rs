//! The TLS client of `wss://` servers (rustls): the system's trusted roots (`/etc/ssl/certs`
//! and the like, read once per engine), plus a CA the app names for a self-signed set-up
//! (`setEngineConfig({advancedConfig: {tls_ca}})`: a PEM file's path or the PEM text).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The client configuration: system roots and `extra_ca`'s certificates. An `extra_ca` that
/// cannot be read or holds no certificate is an error (the app asked to trust it); system
/// roots that fail to load are only logged (the extra CA may be all that is needed).
pub fn client_config(extra_ca: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("system TLS roots: {e}");
    }
    let (_, refused) = roots.add_parsable_certificates(native.certs);
    if refused > 0 {
        tracing::debug!("system TLS roots: {refused} unusable certificate(s) skipped");
    }
    if let Some(ca) = extra_ca.map(str::trim).filter(|ca| !ca.is_empty()) {
        let certs: Vec<CertificateDer<'static>> = if ca.starts_with("-----BEGIN") {
            CertificateDer::pem_slice_iter(ca.as_bytes()).collect::<Result<_, _>>()
        } else {
            CertificateDer::pem_file_iter(ca).and_then(|c| c.collect::<Result<_, _>>())
        }
        .map_err(|e| format!("tls_ca: {e}"))?;
        if certs.is_empty() {
            return Err("tls_ca: no CERTIFICATE block".into());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca: unusable certificate: {e}"))?;
        }
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #[test]
    fn extra_cas_are_checked() {
        assert!(super::client_config(None).is_ok());
        assert!(super::client_config(Some("")).is_ok());
        let e = super::client_config(Some("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.starts_with("tls_ca"), "{e}");
        let e = super::client_config(Some("-----BEGIN NOTHING-----\n")).unwrap_err();
        assert!(e.starts_with("tls_ca"), "{e}");
    }
}
