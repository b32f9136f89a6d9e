//! TLS for the public listener (feature `tls`): rustls with the ring provider, ALPN `h2` and
//! `http/1.1`.

use crate::error::Error;
use std::sync::Arc;
pub use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key,
/// offering `h2` and `http/1.1` through ALPN.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Tls(format!(
                "certificate chain: {e}; expected PEM `CERTIFICATE` blocks"
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(
            "certificate chain: no PEM `CERTIFICATE` block found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        Error::Tls(format!(
            "private key: {e}; expected a PEM PKCS#8, PKCS#1 or SEC1 key"
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Tls(format!(
                "certificate and key do not form a usable pair: {e}"
            ))
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Root certificates from PEM `CERTIFICATE` blocks (e.g. a private CA for `https://` targets).
pub fn roots_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Tls(format!(
                "root certificates: {e}; expected PEM `CERTIFICATE` blocks"
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(
            "root certificates: no PEM `CERTIFICATE` block found".into(),
        ));
    }
    Ok(certs)
}

/// The operating system's trusted root certificates (on Linux the OpenSSL locations, or
/// `SSL_CERT_FILE` / `SSL_CERT_DIR`). Certificates that cannot be read or parsed are skipped
/// with a warning; an empty store makes every `https://` target fail verification, which the
/// 502 for such a request says. Reads files: call it off async threads.
pub fn system_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "system root certificates: skipped a source");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "system root certificates: skipped unparsable certificates"
        );
    }
    if added == 0 {
        tracing::warn!(
            "no system root certificates found; https targets will fail verification \
             (install ca-certificates, set SSL_CERT_FILE, or give roots to RouterBuilder::upstream_tls)"
        );
    }
    roots
}

/// A client configuration for `https://` headless targets that trusts exactly `roots`
/// (ring provider, safe default protocol versions, no client certificate). The router sets
/// its ALPN list itself (`h2`, `http/1.1`). For the system store plus a private CA:
///
/// ```no_run
/// # fn f(ca_pem: &[u8]) -> Result<(), landscape_net::Error> {
/// use landscape_net::tls;
/// let mut roots = tls::system_roots();
/// for c in tls::roots_from_pem(ca_pem)? {
///     roots.add(c).map_err(|e| landscape_net::Error::Tls(e.to_string()))?;
/// }
/// let router = landscape_net::Router::builder()
///     .upstream_tls(tls::client_config(roots)?)
///     .build(landscape_net::RouteTable::new());
/// # Ok(()) }
/// ```
pub fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
