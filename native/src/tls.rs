//! TLS for the listener (`--tls-cert`, `--tls-key`): rustls with ring (the provider the outbound
//! client uses too), ALPN for HTTP/2 and HTTP/1.1, the certificate read again on SIGHUP (a
//! renewed certificate without a restart; a file that does not load leaves the one in use).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate in use, and where it is read from.
#[derive(Debug)]
pub struct Certificate {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
}

/// The crypto provider: ring, which builds with a C compiler alone (aws-lc-rs needs cmake). Its
/// key exchange has no post-quantum group, which is why rustls marks it deprecated.
#[allow(deprecated)]
pub fn default_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A certificate chain and its key from PEM files.
fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate in it", cert.display());
    let key_der =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}: no PEM private key", key.display()))?;
    let signing = default_provider()
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("{}: unsupported private key", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .with_context(|| format!("{} does not match {}", key.display(), cert.display()))?;
    Ok(ck)
}

impl Certificate {
    /// Reads the certificate and key now.
    pub fn open(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(load(cert, key)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }))
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let ck = load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
        Ok(())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The acceptor serving `cert`, offering HTTP/2 and HTTP/1.1.
pub fn acceptor(cert: Arc<Certificate>) -> anyhow::Result<TlsAcceptor> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the certificate again on every SIGHUP, for as long as the process runs.
pub fn reload_on_sighup(cert: Arc<Certificate>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match cert.reload() {
                Ok(()) => tracing::info!(cert = %cert.cert.display(), "TLS certificate reloaded"),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "TLS certificate not reloaded; the one in use stays")
                }
            }
        }
    });
}
