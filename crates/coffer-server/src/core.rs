//! The server's state: the seal (root key in memory or not), the tenant
//! keys, the mount table and the caches, and the operations on them that
//! are not tied to one API path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{hkdf, hmac};
use coffer_core::keyring::Keyring;
use coffer_core::policy::{Acl, Policy};
use coffer_core::shamir::{self, Share};
use coffer_core::wrap::{self, Label};
use coffer_core::{Key256, rand};
use coffer_store::{MountRow, NamespaceRow, Op, Store, TenantKeyRow, TokenRow, TransitKeyRow};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::{Auditor, Reader};
use crate::cache::Lru;
use crate::error::{ApiError, ApiResult};
use crate::integrity::Guarded;
use coffer_core::audit::{RecordKeyPair, Signer};
use coffer_store::audit::AuditStore;

const META_SEAL: &str = "seal";
const META_ROOT_KEY: &str = "root_key";
const META_CLUSTER: &str = "cluster";
const META_AUDIT_KEYS: &str = "audit_keys";
const META_AUDIT_SIGNING: &str = "audit_signing";
/// Written by servers of schema v5 to v7 once every key's settings carried a
/// MAC; read only when upgrading from them.
const META_SETTINGS_MACS: &str = "key_settings_macs";

fn meta_audit_record_private(version: u32) -> String {
    format!("audit_record_private/{version}")
}

/// The public halves of the audit keys, stored in clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AuditKeys {
    pub(crate) record_version: u32,
    pub(crate) record_public: String,
    pub(crate) verify_key: String,
}
/// The root namespace's tenant id.
pub(crate) const ROOT_NS: &str = "";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealConfig {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) secret_shares: u32,
    pub(crate) secret_threshold: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClusterInfo {
    pub(crate) cluster_name: String,
    pub(crate) cluster_id: String,
}

/// Where "now" comes from; tests may pin it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    fixed: Option<Arc<std::sync::atomic::AtomicI64>>,
}

impl Clock {
    /// A clock that stays at `t` until [`Clock::set`] moves it (for tests).
    pub fn fixed(t: i64) -> Self {
        Clock {
            fixed: Some(Arc::new(std::sync::atomic::AtomicI64::new(t))),
        }
    }

    pub fn set(&self, t: i64) {
        if let Some(f) = &self.fixed {
            f.store(t, Ordering::Relaxed);
        }
    }

    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(t) => t.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }
    }
}

/// Key material that exists only while unsealed. Dropping it wipes it.
pub(crate) struct Unsealed {
    root: Key256,
    /// HMAC key for token ids, derived from the root key.
    token_key: hmac::Key,
    /// HMAC key for stored key settings, derived from the root key.
    settings_key: hmac::Key,
    /// Tenant keys by namespace (every live version, and the current one); bounded.
    tenants: Lru<String, TenantKeys>,
    /// The seal epoch it was unsealed in.
    epoch: u64,
}

/// Sizes and policies a deployment may tune.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// Keyrings kept unwrapped in memory.
    pub key_cache: usize,
    /// Tenants whose keys are kept unwrapped in memory.
    pub tenant_cache: usize,
    /// Default `auto_rotate_period` (seconds) for new keys, by key type name.
    pub default_rotation: HashMap<String, u64>,
    /// Tenant key rotation period (seconds); 0 = never.
    pub tenant_rotation: u64,
    /// Messages a transit key version may seal before it is rotated out.
    pub encryption_limit: u64,
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            key_cache: 10_000,
            tenant_cache: 10_000,
            default_rotation: HashMap::new(),
            tenant_rotation: 0,
            encryption_limit: crate::usage::DEFAULT_LIMIT,
        }
    }
}

#[derive(Clone)]
pub(crate) struct TenantKeys {
    pub(crate) current: u32,
    pub(crate) versions: HashMap<u32, Key256>,
}

impl TenantKeys {
    pub(crate) fn key(&self, version: u32) -> ApiResult<&Key256> {
        self.versions
            .get(&version)
            .ok_or_else(|| ApiError::Internal(format!("tenant key version {version} is missing")))
    }
}

/// A transit key's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KeyId {
    pub(crate) namespace: String,
    pub(crate) mount: String,
    pub(crate) name: String,
}

pub struct Core {
    /// The store through [`Guarded`]: rows that grant access are checked.
    pub(crate) store: Arc<dyn Store>,
    rows: Arc<Guarded>,
    pub(crate) clock: Clock,
    seal_config: RwLock<Option<SealConfig>>,
    cluster: RwLock<Option<ClusterInfo>>,
    unsealed: RwLock<Option<Arc<Unsealed>>>,
    progress: Mutex<Vec<Share>>,
    /// Serialises changes to keys, mounts, tokens and policies.
    pub(crate) write: tokio::sync::Mutex<()>,
    /// Reservations of encryptions in storage (see `usage`).
    pub(crate) usage: crate::usage::Usage,
    pub(crate) mounts: RwLock<Vec<MountRow>>,
    /// Unwrapped keyrings in use; bounded, wiped on eviction. Fill through [`Core::cache_key`].
    pub(crate) keys: Lru<KeyId, Arc<Keyring>>,
    /// Bumped by every seal, before the caches are cleared.
    seal_epoch: AtomicU64,
    /// Bumped after every stored change to keyrings or tenant keys, before the
    /// caches are updated: a cache fill whose store reads began earlier is dropped.
    generation: AtomicU64,
    /// Tenants by name (None: no such tenant), so path prefixes resolve without a query.
    pub(crate) namespaces: Lru<String, Option<NamespaceRow>>,
    pub(crate) options: CoreOptions,
    /// Parsed ACL policies by (namespace, name); dropped on write or delete.
    pub(crate) policies: RwLock<HashMap<(String, String), Arc<Policy>>>,
    pub(crate) auditor: Auditor,
    pub(crate) audit_store: Option<AuditStore>,
    /// Live tokens by id hash (unlimited-use ones only); cleared on any revocation.
    pub(crate) token_cache: RwLock<HashMap<Vec<u8>, TokenRow>>,
    /// ACLs by namespace and policy set; cleared on any policy change.
    pub(crate) acl_cache: RwLock<HashMap<String, Arc<Acl>>>,
    /// Bumped by every change to tokens or policies, before the caches are cleared.
    auth_generation: AtomicU64,
    /// Bumped by every change to a tenant's row, before its cache entry is dropped.
    ns_generation: AtomicU64,
    scrub_state: Arc<Mutex<ScrubState>>,
}

/// Scrubs still owed: changes that asked for one since the worker's last success.
#[derive(Default)]
pub(crate) struct ScrubState {
    wanted: u64,
    running: bool,
}

async fn scrub_until_done(store: Arc<dyn Store>, state: Arc<Mutex<ScrubState>>) {
    let lock = || state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        tokio::time::sleep(delay).await;
        let asked = lock().wanted;
        match store.scrub(std::time::Duration::from_millis(100)).await {
            Ok(true) => {
                let mut s = lock();
                if s.wanted == asked {
                    s.running = false;
                    tracing::info!("deleted rows scrubbed from the WAL");
                    return;
                }
                // Changes came after this scrub began: it may not cover them.
                delay = std::time::Duration::from_secs(1);
            }
            Ok(false) => delay = (delay * 2).min(std::time::Duration::from_secs(60)),
            Err(e) => {
                tracing::error!("WAL scrub failed: {e}");
                delay = (delay * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}

/// Entries a cache may hold before it is emptied (bounded memory, simply).
pub(crate) const CACHE_LIMIT: usize = 100_000;

/// What `sys/init` hands out exactly once.
pub(crate) struct InitOutput {
    pub(crate) shares: Vec<Share>,
    pub(crate) root_token: Zeroizing<String>,
}

pub(crate) struct SealStatus {
    pub(crate) initialized: bool,
    pub(crate) sealed: bool,
    pub(crate) shares: u32,
    pub(crate) threshold: u32,
    pub(crate) progress: u32,
    pub(crate) cluster: Option<ClusterInfo>,
}

fn random_id(prefix: &str, bytes: usize) -> ApiResult<String> {
    use base64::Engine;
    let raw = rand::bytes(bytes)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    ))
}

pub(crate) fn new_token_id() -> ApiResult<Zeroizing<String>> {
    Ok(Zeroizing::new(random_id("cf.", 24)?))
}

pub(crate) fn new_accessor() -> ApiResult<String> {
    random_id("", 18)
}

/// A v4 UUID from the process's DRBG: one per request, so no `getrandom`
/// system call each time (the OS source only if the DRBG fails).
pub(crate) fn new_uuid() -> String {
    let mut b = [0u8; 16];
    match rand::fill(&mut b) {
        Ok(()) => uuid::Builder::from_random_bytes(b).into_uuid().to_string(),
        Err(_) => uuid::Uuid::new_v4().to_string(),
    }
}

fn derive_token_key(root: &Key256) -> hmac::Key {
    derive_hmac_key(root, b"coffer token hash v1")
}

fn derive_settings_key(root: &Key256) -> hmac::Key {
    derive_hmac_key(root, b"coffer key settings mac v1")
}

pub(crate) fn derive_row_key(root: &Key256) -> hmac::Key {
    derive_hmac_key(root, b"coffer row mac v1")
}

fn derive_audit_hmac_key(root: &Key256) -> hmac::Key {
    derive_hmac_key(root, b"coffer audit hmac v1")
}

fn derive_hmac_key(root: &Key256, purpose: &[u8]) -> hmac::Key {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"coffer").extract(root.expose());
    let info = [purpose];
    let okm = prk
        .expand(&info, Len(32))
        .expect("32 bytes is within HKDF-SHA256 limits");
    let mut bytes = Zeroizing::new([0u8; 32]);
    okm.fill(&mut bytes[..]).expect("buffer length matches");
    hmac::Key::new(hmac::HMAC_SHA256, &bytes[..])
}

impl Core {
    /// Opens the server state over a store, without an audit trail. Call it
    /// within the tokio runtime that will serve it: it starts a task there.
    pub async fn open(store: Arc<dyn Store>, clock: Clock) -> ApiResult<Self> {
        Self::open_audited(store, clock, Auditor::disabled(), None).await
    }

    /// Opens the server state over a store, auditing every request; sealed until unsealed.
    pub async fn open_audited(
        store: Arc<dyn Store>,
        clock: Clock,
        auditor: Auditor,
        audit_store: Option<AuditStore>,
    ) -> ApiResult<Self> {
        if let Some(raw) = store.meta(META_AUDIT_KEYS).await? {
            let keys: AuditKeys =
                serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(format!("stored audit keys: {e}")))?;
            let public = hex::decode(&keys.record_public).map_err(|e| ApiError::Internal(e.to_string()))?;
            auditor.set_record_key(keys.record_version, public);
        }
        let seal_config = match store.meta(META_SEAL).await? {
            Some(raw) => Some(
                serde_json::from_slice(&raw)
                    .map_err(|e| ApiError::Internal(format!("stored seal configuration: {e}")))?,
            ),
            None => None,
        };
        let cluster = match store.meta(META_CLUSTER).await? {
            Some(raw) => serde_json::from_slice(&raw).ok(),
            None => None,
        };
        let rows = Arc::new(Guarded::new(store));
        let store: Arc<dyn Store> = rows.clone();
        let usage = crate::usage::Usage::start(store.clone());
        Ok(Core {
            store,
            rows,
            clock,
            seal_config: RwLock::new(seal_config),
            cluster: RwLock::new(cluster),
            unsealed: RwLock::new(None),
            progress: Mutex::new(Vec::new()),
            write: tokio::sync::Mutex::new(()),
            usage,
            mounts: RwLock::new(Vec::new()),
            keys: Lru::new(CoreOptions::default().key_cache),
            seal_epoch: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            namespaces: Lru::new(CoreOptions::default().tenant_cache),
            options: CoreOptions::default(),
            policies: RwLock::new(HashMap::new()),
            auditor,
            audit_store,
            token_cache: RwLock::new(HashMap::new()),
            acl_cache: RwLock::new(HashMap::new()),
            auth_generation: AtomicU64::new(0),
            ns_generation: AtomicU64::new(0),
            scrub_state: Arc::default(),
        })
    }

    /// Applies cache sizes and rotation policies (before the server starts).
    pub fn with_options(mut self, options: CoreOptions) -> Self {
        self.keys = Lru::new(options.key_cache);
        self.namespaces = Lru::new(options.tenant_cache);
        self.options = options;
        self
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn next_tenant_rotation(&self, from: i64) -> Option<i64> {
        let period = i64::try_from(self.options.tenant_rotation).unwrap_or(i64::MAX);
        (period > 0).then(|| from.saturating_add(period))
    }

    pub fn is_initialized(&self) -> bool {
        read(&self.seal_config).is_some()
    }

    pub fn is_sealed(&self) -> bool {
        read(&self.unsealed).is_none()
    }

    pub(crate) fn unsealed(&self) -> ApiResult<Arc<Unsealed>> {
        read(&self.unsealed).clone().ok_or(ApiError::Sealed)
    }

    pub(crate) fn seal_status(&self) -> SealStatus {
        let cfg = read(&self.seal_config).clone();
        let sealed = self.is_sealed();
        SealStatus {
            initialized: cfg.is_some(),
            sealed,
            shares: cfg.as_ref().map_or(0, |c| c.secret_shares),
            threshold: cfg.as_ref().map_or(0, |c| c.secret_threshold),
            progress: lock(&self.progress).len() as u32,
            cluster: if sealed { None } else { read(&self.cluster).clone() },
        }
    }

    /// Creates the root key, its shares, the root tenant key, the `transit/`
    /// mount and a root token. Leaves the server sealed, as Vault does.
    pub(crate) async fn init(&self, shares: u32, threshold: u32, root_token_id: Option<&str>) -> ApiResult<InitOutput> {
        let _w = self.write.lock().await;
        if self.is_initialized() {
            return Err(ApiError::bad("Vault is already initialized"));
        }
        shamir::check_parameters(shares, threshold)?;
        let now = self.now();
        let unseal_key = Key256::generate()?;
        let root = Key256::generate()?;
        let tenant = Key256::generate()?;
        let split = shamir::split(&unseal_key, shares, threshold)?;
        let root_token = match root_token_id {
            Some(t) => Zeroizing::new(t.to_owned()),
            None => new_token_id()?,
        };
        let config = SealConfig {
            kind: "shamir".into(),
            secret_shares: shares,
            secret_threshold: threshold,
        };
        let cluster = ClusterInfo {
            cluster_name: format!("coffer-cluster-{}", &new_uuid()[..8]),
            cluster_id: new_uuid(),
        };
        let token_key = derive_token_key(&root);
        let token_row = crate::tokens::root_token_row(&token_key, &root_token, now)?;
        let (record_pair, record_private) = RecordKeyPair::generate()?;
        let (signer, signing_seed) = Signer::generate()?;
        let audit_keys = AuditKeys {
            record_version: 1,
            record_public: hex::encode(record_pair.public_key()?),
            verify_key: hex::encode(signer.public_key()),
        };
        let ops = vec![
            Op::PutMeta {
                key: META_SEAL.into(),
                value: json_bytes(&config)?,
            },
            Op::PutMeta {
                key: META_CLUSTER.into(),
                value: json_bytes(&cluster)?,
            },
            Op::PutMeta {
                key: META_ROOT_KEY.into(),
                value: wrap::wrap_key(&unseal_key, &Label::root_v2(), &root)?.0,
            },
            Op::PutTenantKey(TenantKeyRow {
                namespace: ROOT_NS.into(),
                version: 1,
                created: now,
                wrapped: wrap::wrap_key(&root, &Label::tenant(ROOT_NS, 1), &tenant)?.0,
            }),
            Op::InsertMount(crate::mounts::mount_row(ROOT_NS, "transit/", "transit", "", now)?),
            Op::InsertNamespace(NamespaceRow {
                name: ROOT_NS.into(),
                id: "root".into(),
                created: now,
                disabled: false,
                next_rotation: self.next_tenant_rotation(now),
                mac: None,
            }),
            Op::InsertToken(token_row),
            Op::PutMeta {
                key: META_AUDIT_KEYS.into(),
                value: json_bytes(&audit_keys)?,
            },
            Op::PutMeta {
                key: meta_audit_record_private(1),
                value: wrap::wrap(&root, &Label::audit("record", 1), record_private.as_bytes())?.0,
            },
            Op::PutMeta {
                key: META_AUDIT_SIGNING.into(),
                value: wrap::wrap(&root, &Label::audit("signing", 1), signing_seed.as_bytes())?.0,
            },
        ];
        // Sealed still, so the rows are MACed with the key the unseal will derive.
        self.rows.apply_with(&derive_row_key(&root), ops).await?;
        *write(&self.seal_config) = Some(config);
        *write(&self.cluster) = Some(cluster);
        self.auditor.set_record_key(1, record_pair.public_key()?);
        Ok(InitOutput {
            shares: split,
            root_token,
        })
    }

    /// Adds one share; with enough, rebuilds the unseal key and loads the
    /// root key. A wrong set of shares resets the progress.
    pub(crate) async fn unseal(&self, share: Share) -> ApiResult<()> {
        let Some(config) = read(&self.seal_config).clone() else {
            return Err(ApiError::bad("Vault is not initialized"));
        };
        if !self.is_sealed() {
            return Ok(());
        }
        if share.len() != shamir::SHARE_LEN && !(config.secret_shares == 1 && share.len() == 32) {
            return Err(ApiError::bad("invalid unseal key: wrong length"));
        }
        let ready: Option<Vec<Share>> = {
            let mut progress = lock(&self.progress);
            if !progress.iter().any(|s| s[..] == share[..]) {
                progress.push(share);
            }
            if progress.len() as u32 >= config.secret_threshold {
                Some(std::mem::take(&mut *progress))
            } else {
                None
            }
        };
        let Some(shares) = ready else { return Ok(()) };
        let unseal_key =
            shamir::combine(&shares).map_err(|_| ApiError::bad("invalid unseal keys: they do not combine"))?;
        let wrapped = self
            .store
            .meta(META_ROOT_KEY)
            .await?
            .ok_or_else(|| ApiError::Internal("root key missing from storage".into()))?;
        // The GCM tag is the check value: wrong shares cannot unwrap the root key.
        if let Ok(root) = wrap::unwrap_key(&unseal_key, &Label::root_v2(), &wrapped) {
            return self.load(root, None).await;
        }
        let root = wrap::unwrap_key(&unseal_key, &Label::root(), &wrapped)
            .map_err(|_| ApiError::bad("invalid unseal keys: the combined key does not open the root key"))?;
        self.load(root, Some(&unseal_key)).await
    }

    /// Loads the unsealed state. `upgrade` (the unseal key) when the store is
    /// from before every row carried a MAC: rows without one get theirs, once.
    async fn load(&self, root: Key256, upgrade: Option<&Key256>) -> ApiResult<()> {
        let signer = match self.store.meta(META_AUDIT_SIGNING).await? {
            Some(w) => {
                let seed = wrap::unwrap(&root, &Label::audit("signing", 1), &w)
                    .map_err(|_| ApiError::Internal("the audit signing key fails to unwrap".into()))?;
                Some(Arc::new(Signer::from_seed(seed.as_bytes())?))
            }
            None => None,
        };
        let audit_hmac = derive_audit_hmac_key(&root);
        let tenants = Lru::new(self.options.tenant_cache);
        tenants.insert(ROOT_NS.to_owned(), self.load_tenant(&root, ROOT_NS).await?);
        let unsealed = Unsealed {
            token_key: derive_token_key(&root),
            settings_key: derive_settings_key(&root),
            root,
            tenants,
            epoch: self.seal_epoch.load(Ordering::SeqCst),
        };
        let row_key = derive_row_key(&unsealed.root);
        if let Some(unseal_key) = upgrade {
            self.mac_old_rows(&unsealed, &row_key, unseal_key).await?;
        }
        // Installed before the reads below, which check rows; taken back if they fail.
        self.rows.set_key(Some(row_key.clone()));
        if let Err(e) = self.load_rows().await {
            self.rows.set_key(None);
            return Err(e);
        }
        self.keys.clear();
        self.ns_generation.fetch_add(1, Ordering::SeqCst);
        self.namespaces.clear();
        // Last, once nothing above can fail: a failed unseal leaves no audit key in memory.
        self.auditor.set_unsealed(signer, Some(audit_hmac));
        // The row key again under the same lock as the state, which `seal` clears
        // together: a seal racing this unseal cannot leave one without the other.
        let mut state = write(&self.unsealed);
        self.rows.set_key(Some(row_key));
        *state = Some(Arc::new(unsealed));
        Ok(())
    }

    async fn load_rows(&self) -> ApiResult<()> {
        self.apply_tenant_rotation_period().await?;
        *write(&self.mounts) = self.store.mounts().await?;
        Ok(())
    }

    pub(crate) async fn load_tenant(&self, root: &Key256, namespace: &str) -> ApiResult<TenantKeys> {
        let rows = self.store.tenant_keys(namespace).await?;
        let mut versions = HashMap::new();
        for r in &rows {
            let k = wrap::unwrap_key(root, &Label::tenant(namespace, r.version), &r.wrapped)
                .map_err(|_| ApiError::Internal(format!("tenant key {namespace:?} v{} fails to unwrap", r.version)))?;
            versions.insert(r.version, k);
        }
        let current = rows
            .iter()
            .map(|r| r.version)
            .max()
            .ok_or_else(|| ApiError::Internal("no tenant key".into()))?;
        Ok(TenantKeys { current, versions })
    }

    /// Wipes the root key and every unwrapped key from memory.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// After a stored change to keyrings or tenant keys (callers hold `write`).
    pub(crate) fn keys_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Caches a keyring read from the store by reads that began at generation
    /// `seen`. A write, or a seal, may land between those reads and this insert
    /// (both bump their counter before touching the cache): the entry is then
    /// taken out again, so a stale or sealed-over keyring is never left cached.
    pub(crate) fn fill_key(&self, u: &Unsealed, id: &KeyId, ring: &Arc<Keyring>, seen: u64) {
        self.keys.insert(id.clone(), ring.clone());
        if self.generation() != seen || self.seal_epoch.load(Ordering::SeqCst) != u.epoch {
            self.keys.remove(id);
        }
    }

    /// Caches a keyring just stored (callers hold `write`).
    pub(crate) fn store_key(&self, u: &Unsealed, id: &KeyId, ring: &Arc<Keyring>) {
        self.keys_changed();
        self.keys.insert(id.clone(), ring.clone());
        if self.seal_epoch.load(Ordering::SeqCst) != u.epoch {
            self.keys.remove(id);
        }
    }

    pub(crate) fn seal(&self) {
        self.auditor.set_unsealed(None, None);
        {
            let mut state = write(&self.unsealed);
            *state = None;
            self.rows.set_key(None);
        }
        self.seal_epoch.fetch_add(1, Ordering::SeqCst);
        self.keys.clear();
        self.ns_generation.fetch_add(1, Ordering::SeqCst);
        self.namespaces.clear();
        write(&self.policies).clear();
        self.invalidate_auth();
        lock(&self.progress).clear();
    }

    /// A reader for the audit trail: unwraps every record key version.
    pub(crate) async fn audit_reader(&self, u: &Unsealed) -> ApiResult<Reader> {
        let mut pairs = HashMap::new();
        if let Some(raw) = self.store.meta(META_AUDIT_KEYS).await? {
            let keys: AuditKeys = serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?;
            for v in 1..=keys.record_version {
                if let Some(w) = self.store.meta(&meta_audit_record_private(v)).await? {
                    let private = wrap::unwrap(&u.root, &Label::audit("record", v), &w)
                        .map_err(|_| ApiError::Internal(format!("audit record key v{v} fails to unwrap")))?;
                    pairs.insert(v, RecordKeyPair::from_private(private.as_bytes())?);
                }
            }
        }
        Ok(Reader::new(pairs))
    }

    /// Starts a new audit record key version; new sessions use it.
    pub(crate) async fn rotate_audit_key(&self, u: &Unsealed) -> ApiResult<u32> {
        let _w = self.write.lock().await;
        let raw = self
            .store
            .meta(META_AUDIT_KEYS)
            .await?
            .ok_or_else(|| ApiError::Internal("no audit keys".into()))?;
        let mut keys: AuditKeys = serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (pair, private) = RecordKeyPair::generate()?;
        let v = keys.record_version + 1;
        keys.record_version = v;
        keys.record_public = hex::encode(pair.public_key()?);
        self.store
            .apply(vec![
                Op::PutMeta {
                    key: meta_audit_record_private(v),
                    value: wrap::wrap(&u.root, &Label::audit("record", v), private.as_bytes())?.0,
                },
                Op::PutMeta {
                    key: META_AUDIT_KEYS.into(),
                    value: json_bytes(&keys)?,
                },
            ])
            .await?;
        self.auditor.set_record_key(v, pair.public_key()?);
        Ok(v)
    }

    pub(crate) async fn audit_keys(&self) -> ApiResult<Option<AuditKeys>> {
        match self.store.meta(META_AUDIT_KEYS).await? {
            Some(raw) => Ok(Some(
                serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Forgets cached tokens and ACLs (after a revocation or a policy change).
    /// The generation moves first, so a cache fill whose store read began
    /// before the change does not put the old entry back (see `live_token`).
    pub(crate) fn invalidate_auth(&self) {
        self.auth_generation.fetch_add(1, Ordering::SeqCst);
        write(&self.token_cache).clear();
        write(&self.acl_cache).clear();
    }

    pub(crate) fn auth_generation(&self) -> u64 {
        self.auth_generation.load(Ordering::SeqCst)
    }

    pub(crate) fn reset_progress(&self) {
        lock(&self.progress).clear();
    }

    /// The tenant's keys, unwrapped on first use and kept in a bounded cache.
    pub(crate) async fn tenant_keys(&self, u: &Unsealed, namespace: &str) -> ApiResult<TenantKeys> {
        if let Some(t) = u.tenants.get(&namespace.to_owned()) {
            return Ok(t);
        }
        let seen = self.generation();
        let t = self.load_tenant(&u.root, namespace).await?;
        u.tenants.insert(namespace.to_owned(), t.clone());
        // A rotation that committed meanwhile must not leave its old key cached.
        if self.generation() != seen {
            u.tenants.remove(&namespace.to_owned());
        }
        Ok(t)
    }

    /// After the tenant's keys changed in the store (callers hold `write`).
    pub(crate) fn forget_tenant(&self, u: &Unsealed, namespace: &str) {
        self.keys_changed();
        u.tenants.remove(&namespace.to_owned());
    }

    pub(crate) fn root_key<'a>(&self, u: &'a Unsealed) -> &'a Key256 {
        &u.root
    }

    /// The tenant, from the cache or the store (None if there is none).
    pub(crate) async fn namespace(&self, name: &str) -> ApiResult<Option<NamespaceRow>> {
        if let Some(n) = self.namespaces.get(&name.to_owned()) {
            return Ok(n);
        }
        let seen = self.ns_generation.load(Ordering::SeqCst);
        let n = self.store.namespace(name).await?;
        // A shredded tenant's rows put back from a copy stay dead: its id has a tombstone.
        if let Some(row) = &n
            && self.store.is_tombstoned(&row.id).await?
        {
            tracing::error!(tenant = %row.name, id = %row.id, "a shredded tenant's rows are back in storage; refusing them");
            return Err(ApiError::Internal(format!(
                "tenant {:?} was shredded; its rows were restored from a copy",
                row.name
            )));
        }
        self.namespaces.insert(name.to_owned(), n.clone());
        // A change since the read (create, disable, shred): do not leave the old row cached.
        if self.ns_generation.load(Ordering::SeqCst) != seen {
            self.namespaces.remove(&name.to_owned());
        }
        Ok(n)
    }

    /// Scrubs deleted rows out of the store's files (after a shred, a
    /// deleted key or trimmed versions). The change itself has committed, so
    /// a reader that keeps old pages in use does not fail the request: one
    /// background worker retries (backing off to a minute, waiting briefly
    /// each time) until a scrub that began after every such change succeeds.
    pub(crate) async fn scrub(&self) -> ApiResult<()> {
        if self.store.scrub(std::time::Duration::from_secs(1)).await? {
            return Ok(());
        }
        let start = {
            let mut s = self
                .scrub_state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.wanted += 1;
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            tracing::warn!("deleted rows not yet scrubbed from the WAL: a reader holds old pages; retrying");
            tokio::spawn(scrub_until_done(self.store.clone(), self.scrub_state.clone()));
        }
        Ok(())
    }

    /// Whether `u` is still the key material in use: no seal since it was taken
    /// (a seal and a new unseal in between count as a seal).
    pub(crate) fn still_unsealed(&self, u: &Unsealed) -> bool {
        !self.is_sealed() && self.seal_epoch.load(Ordering::SeqCst) == u.epoch
    }

    /// Drops a tenant's cached row after a stored change (callers hold `write`).
    pub(crate) fn forget_namespace(&self, name: &str) {
        self.ns_generation.fetch_add(1, Ordering::SeqCst);
        self.namespaces.remove(&name.to_owned());
    }

    /// The store without the row checks, for what only deletes: an altered
    /// token or tenant can still be revoked or shredded.
    pub(crate) fn unchecked(&self) -> &Arc<dyn Store> {
        self.rows.inner()
    }

    /// The keyed hash under which a token id is stored.
    pub(crate) fn token_hash(&self, u: &Unsealed, token: &str) -> Vec<u8> {
        hash_token(&u.token_key, token)
    }
}

pub(crate) fn hash_token(key: &hmac::Key, token: &str) -> Vec<u8> {
    hmac::sign(key, token.as_bytes()).as_ref().to_vec()
}

pub(crate) fn token_key_of(u: &Unsealed) -> &hmac::Key {
    &u.token_key
}

/// The MAC over a key's stored settings: where it lives, its config, its next rotation.
pub(crate) fn settings_mac(u: &Unsealed, row: &TransitKeyRow) -> Vec<u8> {
    hmac::sign(&u.settings_key, &settings_message(row)).as_ref().to_vec()
}

/// Whether a stored row's settings are as the server wrote them.
pub(crate) fn settings_intact(u: &Unsealed, row: &TransitKeyRow) -> bool {
    row.config_mac
        .as_deref()
        .is_some_and(|mac| hmac::verify(&u.settings_key, &settings_message(row), mac).is_ok())
}

fn settings_message(row: &TransitKeyRow) -> Vec<u8> {
    let mut m = b"coffer/key-settings/v1".to_vec();
    for part in [&row.namespace, &row.mount, &row.name, &row.config] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    match row.next_rotation {
        Some(t) => {
            m.push(1);
            m.extend_from_slice(&t.to_be_bytes());
        }
        None => m.push(0),
    }
    m
}

impl Core {
    /// Brings every tenant's next rotation in line with the configured period:
    /// none when rotation is off, at most a period from now when it is on (so a
    /// period turned on, or shortened, reaches tenants made before it).
    async fn apply_tenant_rotation_period(&self) -> ApiResult<()> {
        let now = self.now();
        let latest = self.next_tenant_rotation(now);
        let _w = self.write.lock().await;
        // Whole rows as read (and checked), so the write needs no read per tenant.
        let ops: Vec<Op> = self
            .store
            .namespaces()
            .await?
            .into_iter()
            .filter_map(|n| {
                let wanted = match (latest, n.next_rotation) {
                    (None, _) => None,
                    (Some(l), Some(t)) => Some(t.min(l)),
                    (Some(l), None) => Some(l),
                };
                (wanted != n.next_rotation).then(|| Op::UpdateNamespace {
                    expect_mac: n.mac.clone(),
                    row: NamespaceRow {
                        next_rotation: wanted,
                        ..n
                    },
                })
            })
            .collect();
        if !ops.is_empty() {
            self.store.apply(ops).await?;
        }
        Ok(())
    }

    /// Once, on the first unseal of a store from before every row carried a
    /// MAC: MACs the key settings and the rows that grant access stored without
    /// one, and rewraps the root key under [`Label::root_v2`], all in one
    /// transaction. From then on a row without a MAC is an edit.
    async fn mac_old_rows(&self, u: &Unsealed, row_key: &hmac::Key, unseal_key: &Key256) -> ApiResult<()> {
        let raw = self.rows.inner();
        let _w = self.write.lock().await;
        let mut ops = Vec::new();
        // Stores since schema v5 filled in their settings MACs then, and said so.
        if raw.meta(META_SETTINGS_MACS).await?.is_none() {
            ops.extend(raw.transit_keys_without_mac().await?.into_iter().map(|mut row| {
                row.config_mac = Some(settings_mac(u, &row));
                Op::UpdateTransitKey(row)
            }));
        }
        ops.extend(
            raw.rows_without_mac()
                .await?
                .into_iter()
                .map(|row| Op::SetRowMac(crate::integrity::sign_old(row_key, row))),
        );
        tracing::warn!(
            rows = ops.len(),
            "first unseal of a store from before row MACs: MACing its rows as they are"
        );
        ops.push(Op::PutMeta {
            key: META_ROOT_KEY.into(),
            value: wrap::wrap_key(unseal_key, &Label::root_v2(), &u.root)?.0,
        });
        raw.apply(ops).await?;
        drop(_w);
        // The old wrapping must not stay in the files to be put back.
        self.scrub().await?;
        Ok(())
    }
}

fn json_bytes<T: Serialize>(v: &T) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()))
}

// A poisoned lock only means another request panicked mid-update of an
// in-memory cache; the data is still usable, so recover it.
pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_random_v4_uuids() {
        let a = uuid::Uuid::parse_str(&new_uuid()).unwrap();
        let b = uuid::Uuid::parse_str(&new_uuid()).unwrap();
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }

    /// An unsealed core over a fresh store, and the id of a key in it.
    async fn unsealed_core() -> (tempfile::TempDir, Core, Arc<Unsealed>, KeyId) {
        let dir = tempfile::tempdir().unwrap();
        let store = coffer_store::sqlite::SqliteStore::open(dir.path()).await.unwrap();
        let core = Core::open(Arc::new(store), Clock::default()).await.unwrap();
        crate::dev_init(&core, None).await.unwrap();
        let u = core.unsealed().unwrap();
        let id = KeyId {
            namespace: ROOT_NS.into(),
            mount: "transit".into(),
            name: "k".into(),
        };
        (dir, core, u, id)
    }

    fn ring(created: i64) -> Arc<Keyring> {
        Arc::new(
            Keyring::create("k", coffer_core::keyring::KeyType::Aes256Gcm96, created)
                .unwrap()
                .0,
        )
    }

    #[tokio::test]
    async fn a_keyring_unwrapped_before_a_seal_is_not_cached_after_it() {
        let (_dir, core, u, id) = unsealed_core().await;
        let ring = ring(0);
        let seen = core.generation();
        core.fill_key(&u, &id, &ring, seen);
        assert!(core.keys.get(&id).is_some());
        // A request that began unsealed finishes after the seal.
        core.seal();
        core.fill_key(&u, &id, &ring, seen);
        assert!(core.keys.get(&id).is_none());
        core.store_key(&u, &id, &ring);
        assert!(core.keys.get(&id).is_none());
    }

    #[tokio::test]
    async fn a_keyring_read_before_a_stored_change_is_not_left_cached() {
        let (_dir, core, u, id) = unsealed_core().await;
        // A request starts reading the key from the store...
        let seen = core.generation();
        let (stale, newer) = (ring(1), ring(2));
        // ...a rotation or trim stores and caches the new state meanwhile...
        core.store_key(&u, &id, &newer);
        // ...and the request's copy, read before it, must not replace it for good.
        core.fill_key(&u, &id, &stale, seen);
        assert!(core.keys.get(&id).is_none_or(|k| Arc::ptr_eq(&k, &newer)));
        // A fill whose reads began after the change is kept.
        let seen = core.generation();
        core.fill_key(&u, &id, &newer, seen);
        assert!(core.keys.get(&id).is_some_and(|k| Arc::ptr_eq(&k, &newer)));
    }
}
