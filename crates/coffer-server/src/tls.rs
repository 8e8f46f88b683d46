//! The listener's TLS: rustls with the aws-lc-rs provider, TLS 1.3 only
//! unless `tls_min_version = "tls12"`, optional client certificates, and
//! reload without a restart.
//!
//! The whole `ServerConfig` is rebuilt from the files on reload and swapped
//! in; each handshake takes the current one, so connections already open
//! keep the certificate they were made with. A reload that fails (missing
//! file, bad PEM, key not matching the certificate) leaves the previous
//! configuration in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::config::{Listener, TlsVersion};
use crate::core::{lock, read, write};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no PEM private key found")]
    NoKey { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("the TLS configuration is incomplete: {0}")]
    Incomplete(&'static str),
}

/// The files a TLS listener is built from.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    require_client_cert: bool,
    min_version: TlsVersion,
}

impl Files {
    fn paths(&self) -> Vec<&Path> {
        let mut v = vec![self.cert.as_path(), self.key.as_path()];
        v.extend(self.client_ca.as_deref());
        v
    }

    /// Modification time and size of each file: what polling compares.
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.paths()
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

/// A TLS listener's live configuration.
pub struct Tls {
    files: Files,
    current: RwLock<Arc<ServerConfig>>,
    /// File stamps at the last load attempt, so a bad file is reported once.
    tried: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Every certificate in a PEM file.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    parse_certs(&pem)
        .map_err(|message| TlsError::Invalid {
            path: path.display().to_string(),
            message,
        })
        .and_then(|c| {
            if c.is_empty() {
                Err(TlsError::NoCertificate {
                    path: path.display().to_string(),
                })
            } else {
                Ok(c)
            }
        })
}

/// Every certificate in PEM text (possibly none).
pub(crate) fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))
}

fn certified_key(files: &Files, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(&files.cert)?;
    let key_pem = read_file(&files.key)?;
    let key_path = || files.key.display().to_string();
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: key_path() },
        other => TlsError::Invalid {
            path: key_path(),
            message: format!("bad PEM: {other}"),
        },
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Invalid {
        path: key_path(),
        message: format!("unusable key for {}: {e}", files.cert.display()),
    })
}

fn build(files: &Files) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let key = Arc::new(certified_key(files, &provider)?);
    let versions: &[&'static rustls::SupportedProtocolVersion] = match files.min_version {
        TlsVersion::Tls13 => &[&version::TLS13],
        TlsVersion::Tls12 => &[&version::TLS13, &version::TLS12],
    };
    // aws-lc-rs's default suites are AEAD-only with forward secrecy (no CBC,
    // no RSA key exchange), so "modern suites only" needs no further trimming.
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Invalid {
            path: files.cert.display().to_string(),
            message: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::Invalid {
                    path: ca.display().to_string(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if files.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Invalid {
                path: ca.display().to_string(),
                message: e.to_string(),
            })?)
        }
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(OneCert(key)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves one certificate whatever the client asks for.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl Tls {
    /// Loads the listener's certificate, key and client CA; fails if any is unusable.
    pub fn load(listener: &Listener) -> Result<Arc<Self>, TlsError> {
        let files = Files {
            cert: listener
                .tls_cert_file
                .clone()
                .ok_or(TlsError::Incomplete("tls_cert_file"))?,
            key: listener
                .tls_key_file
                .clone()
                .ok_or(TlsError::Incomplete("tls_key_file"))?,
            client_ca: listener.tls_client_ca_file.clone(),
            require_client_cert: listener.tls_require_client_cert,
            min_version: listener.tls_min_version,
        };
        let stamps = files.stamps();
        let cfg = build(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(cfg)),
            tried: Mutex::new(stamps),
        }))
    }

    /// The configuration new handshakes use.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        read(&self.current).clone()
    }

    /// Rebuilds from the files and swaps the result in; on error the
    /// previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *lock(&self.tried) = self.files.stamps();
        let cfg = build(&self.files)?;
        *write(&self.current) = Arc::new(cfg);
        Ok(())
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.files.cert.display(),
                reason = why,
                "TLS configuration reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                reason = why,
                "TLS reload failed; still serving the previous certificate"
            ),
        }
    }

    /// Reloads on SIGHUP, and when a file's modification time or size
    /// changes (checked every `interval`). Runs until the runtime stops.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let me = self.clone();
        // Registered before returning, so a SIGHUP right after start-up is
        // never taken by the default action (which ends the process).
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hup_fired = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_fired = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = hup_fired => me.reload_logged("SIGHUP"),
                    _ = tick.tick() => {
                        let changed = *lock(&me.tried) != me.files.stamps();
                        if changed {
                            me.reload_logged("files changed");
                        }
                    }
                }
            }
        });
    }
}
