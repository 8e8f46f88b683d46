//! Coffer's storage: the [`Store`] trait and its backends.
//!
//! The store keeps rows, not meaning: it never sees plaintext key material
//! (callers hand it wrapped bytes) and it does no cryptography. Every change
//! goes through [`Store::apply`], a list of [`Op`]s applied in one
//! transaction, so a request either changes everything it meant to or
//! nothing. The embedded SQLite backend lives in [`sqlite`]; a PostgreSQL
//! backend implements the same trait against the same schema.
#![forbid(unsafe_code)]

pub mod audit;
mod rows;
pub mod sqlite;

use async_trait::async_trait;

pub use rows::{
    CertRoleRow, GuardedRow, MountRow, NamespaceRow, PolicyRow, TenantKeyRow, TokenRow, TombstoneRow, TransitKeyRow,
    TransitVersionRow,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An insert collided with an existing row.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The backend failed (I/O, corruption, lock timeout).
    #[error("storage error: {0}")]
    Backend(String),
    /// A row fails its integrity check: someone edited the database.
    #[error("stored {0} fails its check: storage was altered")]
    Altered(String),
    /// A conditional update found the row changed since it was read.
    #[error("{0} changed meanwhile")]
    Changed(&'static str),
    /// Rows are checked with a key that exists only while unsealed.
    #[error("sealed: stored rows cannot be checked")]
    Sealed,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A token row's MAC before one of its uses is spent, and the MAC it has
/// after (None for its last use, which deletes it).
#[derive(Debug, Clone)]
pub struct UseMacs {
    pub before: Option<Vec<u8>>,
    pub after: Option<Vec<u8>>,
}

/// One ask of [`Store::reserve_encryptions`].
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    pub version: VersionRef<'a>,
    pub need: u64,
    pub block: u64,
    pub limit: u64,
}

/// A place in a walk over due items: its deadline, then its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePlace {
    pub deadline: i64,
    pub namespace: String,
    pub mount: String,
    pub name: String,
}

impl DuePlace {
    /// Before every item.
    pub fn start() -> Self {
        DuePlace {
            deadline: i64::MIN,
            namespace: String::new(),
            mount: String::new(),
            name: String::new(),
        }
    }
}

/// One transit key version, by its place.
#[derive(Debug, Clone, Copy)]
pub struct VersionRef<'a> {
    pub namespace: &'a str,
    pub mount: &'a str,
    pub name: &'a str,
    pub version: u32,
}

/// One change; a list of them is applied atomically by [`Store::apply`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Op {
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    PutTenantKey(TenantKeyRow),
    /// Fails with [`StoreError::Conflict`] if the mount exists.
    InsertMount(MountRow),
    /// Deletes the mount and every transit key under it.
    DeleteMount {
        namespace: String,
        path: String,
    },
    /// Fails with [`StoreError::Conflict`] if the key exists.
    InsertTransitKey(TransitKeyRow),
    UpdateTransitKey(TransitKeyRow),
    /// A new version; an existing one is a conflict, never overwritten.
    PutTransitVersion(TransitVersionRow),
    /// The same version wrapped anew (tenant key rotation).
    RewrapTransitVersion(TransitVersionRow),
    /// Deletes versions below `below` (trim).
    DeleteTransitVersionsBelow {
        namespace: String,
        mount: String,
        name: String,
        below: u32,
    },
    DeleteTransitKey {
        namespace: String,
        mount: String,
        name: String,
    },
    InsertToken(TokenRow),
    DeleteToken {
        accessor: String,
    },
    SetTokenExpiry {
        accessor: String,
        ttl: i64,
        expires: Option<i64>,
    },
    /// Rewrites a token's fields and MAC, if its MAC is still `expect_mac`;
    /// else fails with [`StoreError::Changed`].
    UpdateToken {
        row: TokenRow,
        expect_mac: Option<Vec<u8>>,
    },
    /// Makes the children of `parent` orphans (they survive its revocation).
    OrphanChildren {
        parent: String,
    },
    /// Fails with [`StoreError::Conflict`] if the namespace exists.
    InsertNamespace(NamespaceRow),
    SetNamespaceDisabled {
        name: String,
        disabled: bool,
    },
    SetNamespaceRotation {
        name: String,
        next_rotation: Option<i64>,
    },
    /// Rewrites a tenant's state and MAC, if its MAC is still `expect_mac`;
    /// else fails with [`StoreError::Changed`].
    UpdateNamespace {
        row: NamespaceRow,
        expect_mac: Option<Vec<u8>>,
    },
    /// Gives a row from before MACs its MAC (the row's `mac`); a row that
    /// already has one is left as it is.
    SetRowMac(GuardedRow),
    /// Destroys every row of a tenant (keys, tokens, policies, mounts) and leaves the tombstone.
    ShredNamespace(TombstoneRow),
    /// Deletes tenant key versions below `below` (after a rewrap).
    DeleteTenantKeysBelow {
        namespace: String,
        below: u32,
    },
    PutPolicy(PolicyRow),
    DeletePolicy {
        namespace: String,
        name: String,
    },
    /// Creates or replaces a certificate role.
    PutCertRole(CertRoleRow),
    DeleteCertRole {
        tenant: String,
        name: String,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn tenant_keys(&self, namespace: &str) -> Result<Vec<TenantKeyRow>>;
    async fn mounts(&self) -> Result<Vec<MountRow>>;
    async fn transit_key(&self, namespace: &str, mount: &str, name: &str) -> Result<Option<TransitKeyRow>>;
    async fn transit_versions(&self, namespace: &str, mount: &str, name: &str) -> Result<Vec<TransitVersionRow>>;
    /// For each ask, reserves up to `block` encryptions of a version, and at
    /// least `need`, within `limit`, atomically (one count for every node of
    /// a store), all in one transaction; returns, per ask, how many it may be
    /// sure it got: `block`, or `need` when the count reached the limit, or
    /// 0 when not even `need` fit (or the version is gone).
    async fn reserve_encryptions(&self, asks: &[Reservation<'_>]) -> Result<Vec<u64>>;
    /// A version's count of encryptions (None when it is gone).
    async fn encryptions(&self, version: &VersionRef<'_>) -> Result<Option<u64>>;
    async fn transit_key_names(&self, namespace: &str, mount: &str) -> Result<Vec<String>>;
    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>>;
    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>>;
    async fn token_children(&self, parent_accessor: &str) -> Result<Vec<TokenRow>>;
    /// Accessors of tokens expired at `now`, at most `limit`.
    async fn tokens_expired(&self, now: i64, limit: u32) -> Result<Vec<String>>;
    /// Spends one use of a limited-use token, atomically: the uses left, or
    /// None if the token is gone or used up (its last use deletes it), or,
    /// with `macs`, if its MAC is not `macs.before` (it changed meanwhile).
    async fn consume_token_use(&self, accessor: &str, macs: Option<UseMacs>) -> Result<Option<i64>>;
    async fn policy(&self, namespace: &str, name: &str) -> Result<Option<PolicyRow>>;
    async fn policy_names(&self, namespace: &str) -> Result<Vec<String>>;
    async fn cert_role(&self, tenant: &str, name: &str) -> Result<Option<CertRoleRow>>;
    /// A tenant's certificate roles, by name.
    async fn cert_roles(&self, tenant: &str) -> Result<Vec<CertRoleRow>>;
    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRow>>;
    async fn namespaces(&self) -> Result<Vec<NamespaceRow>>;
    async fn tombstones(&self) -> Result<Vec<TombstoneRow>>;
    /// Whether a tenant with this id was shredded.
    async fn is_tombstoned(&self, id: &str) -> Result<bool>;
    /// Keys due for automatic rotation at `now`, at most `limit`, in order
    /// of (deadline, namespace, mount, name) and after `after` in it, so a
    /// caller can page past keys that stay due.
    async fn transit_keys_due(&self, now: i64, after: &DuePlace, limit: u32) -> Result<Vec<TransitKeyRow>>;
    /// One mount's keys due for automatic rotation at `now`, by name.
    async fn transit_keys_due_in(&self, namespace: &str, mount: &str, now: i64) -> Result<Vec<String>>;
    /// Tenants whose key is due for rotation at `now`, in order of
    /// (deadline, name) and after `after` in it (its namespace is the name).
    async fn namespaces_due(&self, now: i64, after: &DuePlace, limit: u32) -> Result<Vec<NamespaceRow>>;
    /// Every transit key of a tenant (to rewrap under a new tenant key).
    async fn transit_keys_of(&self, namespace: &str) -> Result<Vec<TransitKeyRow>>;
    /// Keys stored before their settings carried a MAC.
    async fn transit_keys_without_mac(&self) -> Result<Vec<TransitKeyRow>>;
    /// Tokens, policies, mounts, tenants and certificate roles stored before
    /// their rows carried a MAC.
    async fn rows_without_mac(&self) -> Result<Vec<GuardedRow>>;
    /// Applies every op in one transaction: all or nothing.
    async fn apply(&self, ops: Vec<Op>) -> Result<()>;
    /// Makes deleted rows unrecoverable from the files (after a shred),
    /// waiting at most `wait` for readers of old pages. False when one kept
    /// them in use: try again later.
    async fn scrub(&self, wait: std::time::Duration) -> Result<bool>;
}
