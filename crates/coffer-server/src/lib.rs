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

mod cert_auth;
pub mod config;
mod core;
mod error;
mod http;
mod hygiene;
mod limits;
mod mounts;
mod params;
mod policies;
mod serve;
mod sys;
mod tls;
mod tokens;
mod transit;

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_store::sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use crate::config::{Config, Limits};
pub use crate::core::{Clock, Core};
pub use crate::error::ApiError;
pub use crate::hygiene::{Hardening, harden_process};
pub use crate::sys::VERSION;
pub use crate::tls::{Tls, TlsError};

/// Options for `coffer server --dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub root_token_id: Option<String>,
    pub listen: SocketAddr,
}

/// What a dev server prints at start, like `vault server -dev`.
pub struct DevCredentials {
    pub unseal_key_b64: String,
    pub root_token: String,
}

/// Opens the store a config names and the server state over it (sealed).
pub async fn open(config: &Config) -> Result<Arc<Core>, ApiError> {
    let store = SqliteStore::open(&config.storage.path).await?;
    Ok(Arc::new(Core::open(Arc::new(store), Clock::default()).await?))
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
    serve::run(app(core, limits), listener, tls, shutdown).await
}
