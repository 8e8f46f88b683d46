//! Coffer's server: the HTTP API over the core and the store.
//!
//! It owns the seal (whether the root key is in memory), tokens and ACL
//! enforcement, the mount table and the transit engine. Every request is
//! authorised against the caller's policies before a handler runs, except
//! the few `sys/` paths that must work while sealed. Cryptography lives in
//! `coffer-core`; rows live in `coffer-store`.
#![forbid(unsafe_code)]

pub mod config;
mod core;
mod error;
mod http;
mod mounts;
mod params;
mod policies;
mod sys;
mod tokens;
mod transit;

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_store::sqlite::SqliteStore;
use tokio::net::TcpListener;

pub use crate::config::Config;
pub use crate::core::{Clock, Core};
pub use crate::error::ApiError;
pub use crate::sys::VERSION;

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

/// The HTTP API as an axum router (for in-process tests and fuzzing); it
/// expects `ConnectInfo<SocketAddr>`, which [`serve`] provides.
pub fn app(core: Arc<Core>) -> axum::Router {
    http::router(core)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::router(core).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
