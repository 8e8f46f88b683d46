//! Coffer's server: the HTTP API over the core and the store.
//!
//! It owns the seal (whether the root key is in memory), tokens and ACL
//! enforcement, the mount table and the transit engine. Every request is
//! authorised against the caller's policies before a handler runs, except
//! the few `sys/` paths that must work while sealed. Cryptography lives in
//! `coffer-core`; rows live in `coffer-store`.
//!
//! Transport: [`serve`] runs its own accept loop (TLS through rustls when
//! configured, see [`Tls`]) so handlers see the verified client
//! certificate; request limits and security headers are applied in `http`.
#![forbid(unsafe_code)]

pub mod audit;
mod audit_api;
mod audit_record;
mod cache;
mod cert_auth;
pub mod config;
mod core;
mod error;
mod http;
mod hygiene;
mod integrity;
mod limits;
mod mounts;
mod namespaces;
mod params;
mod policies;
pub mod scheduler;
mod serve;
mod sys;
mod telemetry;
mod tls;
mod tokens;
mod transit;
mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_store::audit::AuditStore;
use coffer_store::sqlite::SqliteStore;

use crate::audit::Auditor;
use tokio::net::TcpListener;

pub use crate::config::{Config, Limits};
pub use crate::core::{Clock, Core, CoreOptions};
pub use crate::error::ApiError;
pub use crate::hygiene::{Hardening, harden_process};
pub use crate::scheduler::{Rotated, revoke_expired_tokens, rotate_due};
pub use crate::sys::VERSION;
pub use crate::tls::{Tls, TlsError};

/// Options for `coffer server --dev`.
#[derive(Clone)]
pub struct DevOptions {
    pub root_token_id: Option<String>,
    pub listen: SocketAddr,
}

/// The root token id is a credential: shown only as present or not.
impl std::fmt::Debug for DevOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevOptions")
            .field("root_token_id", &self.root_token_id.as_ref().map(|_| "[redacted]"))
            .field("listen", &self.listen)
            .finish()
    }
}

/// What a dev server prints at start, like `vault server -dev`.
pub struct DevCredentials {
    pub unseal_key_b64: String,
    pub root_token: String,
}

/// Opens the stores a config names and the server state over them (sealed),
/// with the audit trail running.
pub async fn open(config: &Config) -> Result<Arc<Core>, ApiError> {
    let store = SqliteStore::open(&config.storage.path).await?;
    let clock = Clock::default();
    let options = config.core_options().map_err(ApiError::BadRequest)?;
    if !config.audit.enabled {
        tracing::warn!("AUDIT IS DISABLED: requests are not recorded. Use this only to measure its cost.");
        return Ok(Arc::new(
            Core::open(Arc::new(store), clock).await?.with_options(options),
        ));
    }
    let audit_store = AuditStore::open(&config.storage.path).await?;
    let auditor = Auditor::start(audit_store.clone(), &config.audit, clock.clone(), config.node_name())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Arc::new(
        Core::open_audited(Arc::new(store), clock, auditor, Some(audit_store))
            .await?
            .with_options(options),
    ))
}

/// `coffer audit verify --config`: checks the trail straight from disk, with
/// the verify key pinned by the caller or else read from the store.
pub async fn verify_audit_offline(config: &Config, pinned_key: Option<&str>) -> Result<serde_json::Value, ApiError> {
    use coffer_store::Store;
    let data = &config.storage.path;
    if !data.join(coffer_store::audit::AUDIT_DB_FILE).exists() {
        return Err(ApiError::bad(format!("no audit trail in {}", data.display())));
    }
    let key_hex = match pinned_key {
        Some(k) => k.to_owned(),
        None => {
            let store = SqliteStore::open(data).await?;
            let raw = store
                .meta("audit_keys")
                .await?
                .ok_or_else(|| ApiError::bad("the store is not initialised"))?;
            let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?;
            v["verify_key"].as_str().unwrap_or_default().to_owned()
        }
    };
    let key = hex::decode(key_hex.trim()).map_err(|_| ApiError::bad("the verify key is not hex"))?;
    let audit_store = AuditStore::open(data).await?;
    Ok(audit_api::report_json(
        &audit_api::verify_store(&audit_store, &key).await?,
    ))
}

/// Initialises and unseals a fresh store with one share, for `--dev`.
pub async fn dev_init(core: &Core, root_token_id: Option<&str>) -> Result<DevCredentials, ApiError> {
    use base64::Engine;
    let out = core.init(1, 1, root_token_id).await?;
    let share = out
        .shares
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("no share".into()))?;
    let unseal_key_b64 = base64::engine::general_purpose::STANDARD.encode(&share[..]);
    core.unseal(share).await?;
    Ok(DevCredentials {
        unseal_key_b64,
        root_token: out.root_token.to_string(),
    })
}

/// Creates many tenants at once (provisioning, benchmarks); needs the server unsealed.
pub async fn provision_tenants(core: &Core, names: &[String]) -> Result<(), ApiError> {
    let u = core.unsealed()?;
    namespaces::provision(core, &u, names).await
}

/// The HTTP API as an axum router (for in-process tests and fuzzing).
/// Without [`serve`]'s connection information, requests count as plain
/// HTTP with no client certificate.
pub fn app(core: Arc<Core>, limits: Limits) -> axum::Router {
    http::router(Arc::new(http::AppState::new(core, limits)))
}

/// Serves the API on `listener` (over TLS when `tls` is given) until
/// `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    core: Arc<Core>,
    limits: Limits,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = serve::ConnLimits::new(&limits);
    serve::run(app(core.clone(), limits), listener, tls, conns, shutdown).await?;
    // The last records get their checkpoint before the process exits.
    core.auditor.flush().await;
    Ok(())
}
