//! The transit engine, Vault-compatible: named keyrings under a mount, and
//! encrypt / decrypt / rewrap / datakey / hmac / verify, each with
//! `batch_input`.
//!
//! Keyrings are unwrapped on first use and cached while unsealed; every
//! change is written to the store first and then swapped into the cache,
//! under `core.write`, so a failed write changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::aead::Nonces;
use coffer_core::keyring::{ConfigChange, HmacAlgorithm, KeyConfig, KeyType, Keyring, VersionKeys};
use coffer_core::wrap::{self, Label};
use coffer_core::{Plaintext, rand};
use coffer_store::{MountRow, Op, TransitKeyRow, TransitVersionRow};
use serde_json::{Value, json};

use crate::core::{Core, KeyId, TenantKeys, Unsealed};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};
use crate::params::Params;

fn key_id(mount: &MountRow, name: &str) -> KeyId {
    KeyId {
        namespace: mount.namespace.clone(),
        mount: mount.path.trim_end_matches('/').to_owned(),
        name: name.to_owned(),
    }
}

fn valid_key_name(name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 128
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::bad(format!(
            "invalid key name {name:?}: use 1-128 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// Whether a write to this path would create a key (needs `create`, not `update`).
pub(crate) async fn would_create(core: &Core, u: &Unsealed, mount: &MountRow, rest: &str) -> ApiResult<bool> {
    let name = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["keys", name] | ["encrypt", name] => *name,
        _ => return Ok(false),
    };
    if valid_key_name(name).is_err() {
        return Ok(false);
    }
    Ok(load(core, u, &key_id(mount, name)).await?.is_none())
}

/// The keyring, from the cache or unwrapped from the store.
async fn load(core: &Core, u: &Unsealed, id: &KeyId) -> ApiResult<Option<Arc<Keyring>>> {
    if let Some(k) = core.keys.get(id) {
        return Ok(Some(k));
    }
    let seen = core.generation();
    let Some(row) = core.store.transit_key(&id.namespace, &id.mount, &id.name).await? else {
        return Ok(None);
    };
    if !crate::core::settings_intact(u, &row) {
        return Err(ApiError::Internal(format!(
            "stored settings of key {} fail their check: storage was altered",
            id.name
        )));
    }
    let config: KeyConfig =
        serde_json::from_str(&row.config).map_err(|e| ApiError::Internal(format!("stored key {}: {e}", id.name)))?;
    let tenant = core.tenant_keys(u, &id.namespace).await?;
    let mut versions = BTreeMap::new();
    for v in core.store.transit_versions(&id.namespace, &id.mount, &id.name).await? {
        let label = Label::transit(&id.namespace, &id.mount, &id.name, v.version);
        let pt = wrap::unwrap(tenant.key(v.kek_version)?, &label, &v.wrapped).map_err(|_| {
            ApiError::Internal(format!(
                "stored key {} v{} fails to unwrap: storage was altered",
                id.name, v.version
            ))
        })?;
        versions.insert(v.version, VersionKeys::from_plaintext(&pt)?);
    }
    let ring = Arc::new(Keyring::from_parts(config, versions));
    core.fill_key(u, id, &ring, seen);
    Ok(Some(ring))
}

pub(crate) async fn require(core: &Core, u: &Unsealed, id: &KeyId) -> ApiResult<Arc<Keyring>> {
    load(core, u, id)
        .await?
        .ok_or_else(|| ApiError::bad(format!("encryption key not found: {}", id.name)))
}

pub(crate) fn config_row(u: &Unsealed, id: &KeyId, ring: &Keyring) -> ApiResult<TransitKeyRow> {
    let mut row = TransitKeyRow {
        namespace: id.namespace.clone(),
        mount: id.mount.clone(),
        name: id.name.clone(),
        config: serde_json::to_string(&ring.config).map_err(|e| ApiError::Internal(e.to_string()))?,
        next_rotation: next_rotation(ring),
        config_mac: None,
    };
    row.config_mac = Some(crate::core::settings_mac(u, &row));
    Ok(row)
}

/// When the key is due: its latest version's age reaching `auto_rotate_period`.
pub(crate) fn next_rotation(ring: &Keyring) -> Option<i64> {
    let c = &ring.config;
    let latest = c.version_created.get(&c.latest_version)?;
    let period = i64::try_from(c.auto_rotate_period).unwrap_or(i64::MAX);
    (period > 0).then(|| latest.saturating_add(period))
}

pub(crate) fn version_op(id: &KeyId, tenant: &TenantKeys, version: u32, keys: &VersionKeys) -> ApiResult<Op> {
    let label = Label::transit(&id.namespace, &id.mount, &id.name, version);
    let wrapped = wrap::wrap(tenant.key(tenant.current)?, &label, keys.to_plaintext().as_bytes())?;
    Ok(Op::PutTransitVersion(TransitVersionRow {
        namespace: id.namespace.clone(),
        mount: id.mount.clone(),
        name: id.name.clone(),
        version,
        kek_version: tenant.current,
        wrapped: wrapped.0,
    }))
}

/// Creates a key; `Ok(None)` if it already existed. Callers hold `core.write`.
async fn create_locked(core: &Core, u: &Unsealed, id: &KeyId, key_type: KeyType) -> ApiResult<Option<Arc<Keyring>>> {
    if load(core, u, id).await?.is_some() {
        return Ok(None);
    }
    let tenant = core.tenant_keys(u, &id.namespace).await?;
    let (mut ring, keys) = Keyring::create(&id.name, key_type, core.now())?;
    // The deployment's default rotation policy for this key type applies from birth.
    if let Some(p) = core.options.default_rotation.get(key_type.as_str()) {
        ring.configure(&ConfigChange {
            auto_rotate_period: Some(*p),
            ..Default::default()
        })?;
    }
    let ops = vec![
        Op::InsertTransitKey(config_row(u, id, &ring)?),
        version_op(id, &tenant, 1, &keys)?,
    ];
    core.store.apply(ops).await?;
    let ring = Arc::new(ring);
    core.store_key(u, id, &ring);
    Ok(Some(ring))
}

/// Applies a change to a copy of the keyring, stores it, then swaps it in.
pub(crate) async fn mutate<F>(core: &Core, u: &Unsealed, id: &KeyId, f: F) -> ApiResult<Arc<Keyring>>
where
    F: FnOnce(&mut Keyring, &TenantKeys, i64) -> ApiResult<Vec<Op>>,
{
    mutate_as(core, u, id, None, f).await
}

/// [`mutate`], for a rotation the server makes on its own (`why`): made only
/// if `f` still finds it due under the write lock, and recorded in the audit
/// trail first (no record, no change).
pub(crate) async fn mutate_as<F>(
    core: &Core,
    u: &Unsealed,
    id: &KeyId,
    why: Option<&str>,
    f: F,
) -> ApiResult<Arc<Keyring>>
where
    F: FnOnce(&mut Keyring, &TenantKeys, i64) -> ApiResult<Vec<Op>>,
{
    let _w = core.write.lock().await;
    let current = load(core, u, id)
        .await?
        .ok_or_else(|| ApiError::bad(format!("no existing key named {} could be found", id.name)))?;
    let tenant = core.tenant_keys(u, &id.namespace).await?;
    let mut ring = (*current).clone();
    let mut ops = f(&mut ring, &tenant, core.now())?;
    if let Some(why) = why {
        if ops.is_empty() {
            return Ok(current);
        }
        let from = Some(current.config.latest_version);
        crate::audit_record::rotation(core, &id.namespace, Some(&id.name), from, why).await?;
    }
    ops.push(Op::UpdateTransitKey(config_row(u, id, &ring)?));
    core.store.apply(ops).await?;
    let ring = Arc::new(ring);
    core.store_key(u, id, &ring);
    Ok(ring)
}

fn key_data(ring: &Keyring) -> Value {
    let c = &ring.config;
    let keys: serde_json::Map<String, Value> = c
        .version_created
        .iter()
        .filter(|(v, _)| **v >= c.min_decryption_version && ring.version_keys(**v).is_some())
        .map(|(v, t)| (v.to_string(), json!(t)))
        .collect();
    json!({
        "name": c.name,
        "type": c.key_type.as_str(),
        "keys": keys,
        "latest_version": c.latest_version,
        "min_available_version": c.min_available_version,
        "min_decryption_version": c.min_decryption_version,
        "min_encryption_version": c.min_encryption_version,
        "deletion_allowed": c.deletion_allowed,
        "exportable": c.exportable,
        "allow_plaintext_backup": c.allow_plaintext_backup,
        "auto_rotate_period": c.auto_rotate_period,
        "derived": false,
        "convergent_encryption": false,
        "imported_key": false,
        "supports_encryption": true,
        "supports_decryption": true,
        "supports_derivation": false,
        "supports_signing": false,
    })
}

pub(crate) async fn handle(
    core: &Core,
    u: &Unsealed,
    mount: &MountRow,
    rest: &str,
    mut req: Request,
) -> ApiResult<Reply> {
    use Operation::*;
    let parts: Vec<&str> = rest.split('/').collect();
    match (parts.as_slice(), req.op) {
        (["keys"], List) => list_keys(core, mount, req.params.bool("overdue")?.unwrap_or(false)).await,
        (["keys", name], op) => {
            valid_key_name(name)?;
            let id = key_id(mount, name);
            match op {
                Read => Ok(Reply::Data(key_data(
                    &*load(core, u, &id).await?.ok_or(ApiError::NotFound)?,
                ))),
                Write => create_key(core, u, &id, &req.params).await,
                Delete => delete_key(core, u, &id).await,
                List => Err(ApiError::MethodNotAllowed),
            }
        }
        (["keys", name, action], Write) => {
            valid_key_name(name)?;
            let id = key_id(mount, name);
            let ring = match *action {
                "config" => configure(core, u, &id, &req.params).await?,
                "rotate" => mutate(core, u, &id, |r, t, now| Ok(vec![rotate_op(&id, r, t, now)?])).await?,
                "trim" => {
                    let min = req.params.u32("min_available_version")?;
                    let min = min.ok_or_else(|| ApiError::bad("missing min_available_version"))?;
                    let trimmed = mutate(core, u, &id, |r, _, _| {
                        r.trim(min)?;
                        Ok(vec![Op::DeleteTransitVersionsBelow {
                            namespace: id.namespace.clone(),
                            mount: id.mount.clone(),
                            name: id.name.clone(),
                            below: min,
                        }])
                    })
                    .await?;
                    // The trimmed versions' wrapped bytes must not linger in the WAL.
                    core.scrub().await?;
                    trimmed
                }
                _ => return Err(ApiError::UnsupportedPath),
            };
            Ok(Reply::Data(key_data(&ring)))
        }
        (["encrypt", name], Write) => encrypt(core, u, mount, name, &mut req.params).await,
        (["decrypt", name], Write) => decrypt(core, u, mount, name, &mut req.params).await,
        (["rewrap", name], Write) => rewrap(core, u, mount, name, &mut req.params).await,
        (["datakey", kind, name], Write) => datakey(core, u, mount, kind, name, &req.params).await,
        (["hmac", name], Write) => hmac(core, u, mount, name, None, &mut req.params).await,
        (["hmac", name, algo], Write) => hmac(core, u, mount, name, Some(algo), &mut req.params).await,
        (["verify", name], Write) => verify(core, u, mount, name, None, &mut req.params).await,
        (["verify", name, algo], Write) => verify(core, u, mount, name, Some(algo), &mut req.params).await,
        (["random"], Write) => random(None, None, &req.params),
        (["random", a], Write) => match a.parse::<u64>() {
            Ok(_) => random(None, Some(a), &req.params),
            Err(_) => random(Some(a), None, &req.params),
        },
        (["random", source, n], Write) => random(Some(source), Some(n), &req.params),
        (["hash"], Write) => hash(None, &req.params),
        (["hash", algo], Write) => hash(Some(algo), &req.params),
        (
            [
                "keys" | "encrypt" | "decrypt" | "rewrap" | "datakey" | "hmac" | "verify" | "random" | "hash",
                ..,
            ],
            _,
        ) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::UnsupportedPath),
    }
}

/// Most bytes `random` returns at once (as Vault).
const RANDOM_MAX: u64 = 128 * 1024;

/// `random(/:source)(/:bytes)`: bytes from the platform's generator (every source is that one here).
fn random(source: Option<&str>, n: Option<&str>, p: &Params) -> ApiResult<Reply> {
    let source = source.or(p.str("source")?).unwrap_or("platform");
    if !matches!(source, "platform" | "seal" | "all") {
        return Err(ApiError::bad(format!("unsupported entropy source {source:?}")));
    }
    let n = match n {
        Some(n) => n
            .parse::<u64>()
            .map_err(|_| ApiError::bad(format!("invalid number of bytes {n:?}")))?,
        None => p.u64("bytes")?.unwrap_or(32),
    };
    if n == 0 || n > RANDOM_MAX {
        return Err(ApiError::bad(format!("bytes must be 1 to {RANDOM_MAX}")));
    }
    let bytes = zeroize::Zeroizing::new(rand::bytes(n as usize)?);
    let out = match p.str("format")?.unwrap_or("base64") {
        "base64" => STANDARD.encode(&*bytes),
        "hex" => hex::encode(&*bytes),
        other => return Err(ApiError::bad(format!("unsupported encoding format {other:?}"))),
    };
    Ok(Reply::Data(json!({ "random_bytes": out })))
}

/// `hash(/:algorithm)`: a digest of `input`; keyless, so it needs no key.
fn hash(algo: Option<&str>, p: &Params) -> ApiResult<Reply> {
    use aws_lc_rs::digest;
    let algo = algo.or(p.str("algorithm")?).unwrap_or("sha2-256");
    let alg = match algo {
        "sha2-224" => &digest::SHA224,
        "sha2-256" => &digest::SHA256,
        "sha2-384" => &digest::SHA384,
        "sha2-512" => &digest::SHA512,
        "sha3-256" => &digest::SHA3_256,
        "sha3-384" => &digest::SHA3_384,
        "sha3-512" => &digest::SHA3_512,
        other => return Err(ApiError::bad(format!("unsupported hash algorithm {other:?}"))),
    };
    let input = p
        .base64("input")?
        .ok_or_else(|| ApiError::bad("missing input to hash"))?;
    let sum = digest::digest(alg, &input);
    let out = match p.str("format")?.unwrap_or("hex") {
        "hex" => hex::encode(sum.as_ref()),
        "base64" => STANDARD.encode(sum.as_ref()),
        other => return Err(ApiError::bad(format!("unsupported encoding format {other:?}"))),
    };
    Ok(Reply::Data(json!({ "sum": out })))
}

async fn list_keys(core: &Core, mount: &MountRow, overdue: bool) -> ApiResult<Reply> {
    let mount_name = mount.path.trim_end_matches('/');
    let names: Vec<String> = if overdue {
        core.store
            .transit_keys_due_in(&mount.namespace, mount_name, core.now())
            .await?
    } else {
        core.store.transit_key_names(&mount.namespace, mount_name).await?
    };
    if names.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Reply::Data(json!({ "keys": names })))
}

fn refuse_unsupported(p: &Params) -> ApiResult<()> {
    if p.bool("derived")?.unwrap_or(false) || p.bool("convergent_encryption")?.unwrap_or(false) {
        return Err(ApiError::bad("derived and convergent keys are not supported"));
    }
    if p.str("context")?.is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::bad(
            "context is only used with derived keys, which are not supported",
        ));
    }
    Ok(())
}

fn key_type_param(p: &Params) -> ApiResult<KeyType> {
    match p.0.get("type") {
        None | Some(Value::Null) => Ok(KeyType::Aes256Gcm96),
        Some(Value::String(s)) => Ok(KeyType::parse(s)?),
        Some(_) => Err(ApiError::bad("field \"type\" must be a string")),
    }
}

async fn create_key(core: &Core, u: &Unsealed, id: &KeyId, p: &Params) -> ApiResult<Reply> {
    refuse_unsupported(p)?;
    let key_type = key_type_param(p)?;
    let change = ConfigChange {
        exportable: p.bool("exportable")?,
        allow_plaintext_backup: p.bool("allow_plaintext_backup")?,
        auto_rotate_period: p.duration("auto_rotate_period")?,
        ..Default::default()
    };
    let _w = core.write.lock().await;
    // Creating an existing key is a no-op that reports the key, as in Vault.
    let Some(created) = create_locked(core, u, id, key_type).await? else {
        return Ok(Reply::Data(key_data(&*require(core, u, id).await?)));
    };
    if change.exportable.is_none() && change.allow_plaintext_backup.is_none() && change.auto_rotate_period.is_none() {
        return Ok(Reply::Data(key_data(&created)));
    }
    let mut ring = (*created).clone();
    if let Err(e) = ring.configure(&change) {
        // Undo the creation so a refused request changes nothing.
        core.store
            .apply(vec![Op::DeleteTransitKey {
                namespace: id.namespace.clone(),
                mount: id.mount.clone(),
                name: id.name.clone(),
            }])
            .await?;
        core.keys_changed();
        core.keys.remove(id);
        return Err(e.into());
    }
    core.store
        .apply(vec![Op::UpdateTransitKey(config_row(u, id, &ring)?)])
        .await?;
    let ring = Arc::new(ring);
    core.store_key(u, id, &ring);
    Ok(Reply::Data(key_data(&ring)))
}

async fn delete_key(core: &Core, u: &Unsealed, id: &KeyId) -> ApiResult<Reply> {
    let _w = core.write.lock().await;
    let ring = load(core, u, id)
        .await?
        .ok_or_else(|| ApiError::bad("could not delete key; not found"))?;
    if !ring.config.deletion_allowed {
        return Err(ApiError::bad("deletion is not allowed for this key"));
    }
    core.store
        .apply(vec![Op::DeleteTransitKey {
            namespace: id.namespace.clone(),
            mount: id.mount.clone(),
            name: id.name.clone(),
        }])
        .await?;
    core.keys_changed();
    core.keys.remove(id);
    // The deleted key's wrapped bytes must not linger in the WAL.
    core.scrub().await?;
    Ok(Reply::NoContent)
}

async fn configure(core: &Core, u: &Unsealed, id: &KeyId, p: &Params) -> ApiResult<Arc<Keyring>> {
    let change = ConfigChange {
        min_decryption_version: p.u32("min_decryption_version")?,
        min_encryption_version: p.u32("min_encryption_version")?,
        deletion_allowed: p.bool("deletion_allowed")?,
        exportable: p.bool("exportable")?,
        allow_plaintext_backup: p.bool("allow_plaintext_backup")?,
        auto_rotate_period: p.duration("auto_rotate_period")?,
    };
    mutate(core, u, id, |r, _, _| {
        r.configure(&change)?;
        Ok(Vec::new())
    })
    .await
}

pub(crate) fn rotate_op(id: &KeyId, ring: &mut Keyring, tenant: &TenantKeys, now: i64) -> ApiResult<Op> {
    let (v, keys) = ring.rotate(now)?;
    version_op(id, tenant, v, &keys)
}

/// One item's answer. Batches serialise these straight into the response
/// (sorted keys, as Vault's JSON), without a JSON tree per item.
pub(crate) enum ItemOut {
    Ciphertext { ciphertext: String, key_version: u32 },
    Plaintext(zeroize::Zeroizing<String>),
    Hmac(String),
    Valid(bool),
}

impl ItemOut {
    /// The `data` of a single (non-batch) request.
    fn into_value(self) -> Value {
        match self {
            ItemOut::Ciphertext {
                ciphertext,
                key_version,
            } => {
                json!({ "ciphertext": ciphertext, "key_version": key_version })
            }
            // Moved, not copied: the response's JSON is wiped once written.
            ItemOut::Plaintext(mut p) => json!({ "plaintext": std::mem::take(&mut *p) }),
            ItemOut::Hmac(hmac) => json!({ "hmac": hmac }),
            ItemOut::Valid(valid) => json!({ "valid": valid }),
        }
    }
}

/// A batch's `batch_results`, in request order.
pub(crate) struct BatchResults {
    pub(crate) status: StatusCode,
    pub(crate) items: Vec<BatchItem>,
    /// Decrypt: a failed item also carries `"plaintext": ""`, as Vault's does.
    empty_plaintext_on_error: bool,
}

pub(crate) struct BatchItem {
    /// The answer, or the error message of a refused item.
    pub(crate) out: Result<ItemOut, String>,
    reference: String,
}

impl serde::Serialize for BatchResults {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Items<'a>(&'a BatchResults);
        struct One<'a>(&'a BatchItem, bool);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.items.len()))?;
                for it in &self.0.items {
                    seq.serialize_element(&One(it, self.0.empty_plaintext_on_error))?;
                }
                seq.end()
            }
        }
        impl serde::Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (it, empty_plaintext) = (self.0, self.1);
                let mut m = s.serialize_map(None)?;
                match &it.out {
                    Ok(ItemOut::Ciphertext {
                        ciphertext,
                        key_version,
                    }) => {
                        m.serialize_entry("ciphertext", ciphertext)?;
                        m.serialize_entry("key_version", key_version)?;
                        m.serialize_entry("reference", &it.reference)?;
                    }
                    Ok(ItemOut::Plaintext(p)) => {
                        m.serialize_entry("plaintext", p.as_str())?;
                        m.serialize_entry("reference", &it.reference)?;
                    }
                    Ok(ItemOut::Hmac(h)) => {
                        m.serialize_entry("hmac", h)?;
                        m.serialize_entry("reference", &it.reference)?;
                    }
                    Ok(ItemOut::Valid(v)) => {
                        m.serialize_entry("reference", &it.reference)?;
                        m.serialize_entry("valid", v)?;
                    }
                    Err(e) => {
                        m.serialize_entry("error", e)?;
                        if empty_plaintext {
                            m.serialize_entry("plaintext", "")?;
                        }
                        m.serialize_entry("reference", &it.reference)?;
                    }
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("batch_results", &Items(self))?;
        m.end()
    }
}

/// Runs `one` on the request, or on each `batch_input` item, which it takes
/// out of `p` (moved, not copied: each is wiped once handled), and frames
/// the results as Vault does. `fail_status` is the HTTP status when an item
/// fails.
fn batch<F>(p: &mut Params, fail_status: Option<StatusCode>, mut one: F) -> ApiResult<Reply>
where
    F: FnMut(&Params) -> ApiResult<ItemOut>,
{
    if p.array("batch_input")?.is_none() {
        return one(p).map(|out| Reply::Data(out.into_value()));
    }
    let fail_code = match fail_status {
        Some(_) => partial_failure_code(p)?,
        None => None,
    };
    let items = p.take_array("batch_input");
    if items.is_empty() {
        return Err(ApiError::bad("missing batch input to process"));
    }
    let (mut failed, mut succeeded) = (false, false);
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let mut item = Params::from_object(item)?;
        let reference = item.take_str("reference")?.unwrap_or_default();
        let out = match one(&item) {
            Ok(v) => {
                succeeded = true;
                Ok(v)
            }
            Err(e @ (ApiError::BadRequest(_) | ApiError::NotFound)) => {
                failed = true;
                Err(e.to_string())
            }
            Err(e) => return Err(e),
        };
        results.push(BatchItem { out, reference });
    }
    // As Vault: the client's code is for a partial failure; when every item failed it is the default.
    let status = match (failed, succeeded, fail_status) {
        (true, true, Some(default)) => fail_code.unwrap_or(default),
        (true, false, Some(default)) => default,
        _ => StatusCode::OK,
    };
    Ok(Reply::Batch(BatchResults {
        status,
        items: results,
        empty_plaintext_on_error: false,
    }))
}

/// `partial_failure_response_code`: a final status (hyper answers a 1xx as 500).
fn partial_failure_code(p: &Params) -> ApiResult<Option<StatusCode>> {
    let Some(code) = p.u32("partial_failure_response_code")? else {
        return Ok(None);
    };
    u16::try_from(code)
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad("partial_failure_response_code must be an HTTP status from 200 to 599"))
}

/// What `batch` refuses as a whole, checked before an upsert creates a key.
fn batch_shape(p: &Params) -> ApiResult<()> {
    let Some(items) = p.array("batch_input")? else {
        return Ok(());
    };
    partial_failure_code(p)?;
    for item in items {
        Params::from_object(item.clone())?.str("reference")?;
    }
    Ok(())
}

/// How many items a request carries (1 unless it has `batch_input`).
fn batch_len(p: &Params) -> ApiResult<usize> {
    Ok(p.array("batch_input")?.map_or(1, Vec::len))
}

fn aad(p: &Params) -> ApiResult<zeroize::Zeroizing<Vec<u8>>> {
    Ok(p.base64("associated_data")?.unwrap_or_default())
}

fn plaintext_b64(pt: &Plaintext) -> String {
    STANDARD.encode(pt.as_bytes())
}

/// How many of a request's items seal under each version of `ring`: an
/// item's own `key_version`, else `top`, else the latest, resolved as the
/// items themselves are. One whose version does not parse or resolve counts
/// against the latest (it fails on its own; counting more is safe).
fn version_counts(ring: &Keyring, p: &Params, top: Option<u32>) -> ApiResult<Vec<(u32, u64)>> {
    let resolve = |requested: Option<u32>| ring.encryption_version(requested).unwrap_or(ring.config.latest_version);
    let mut counts: Vec<(u32, u64)> = Vec::with_capacity(1);
    let mut add = |v: u32| match counts.iter_mut().find(|c| c.0 == v) {
        Some(c) => c.1 += 1,
        None => counts.push((v, 1)),
    };
    match p.array("batch_input")? {
        None => add(resolve(p.u32("key_version").ok().flatten().or(top))),
        Some(items) => {
            for item in items {
                let own = match item.get("key_version") {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                add(resolve(own.and_then(|v| u32::try_from(v).ok()).or(top)));
            }
        }
    }
    Ok(counts)
}

/// One encrypt item's inputs, checked before anything is created.
fn encrypt_input(item: &Params) -> ApiResult<(Plaintext, zeroize::Zeroizing<Vec<u8>>, Option<u32>)> {
    refuse_unsupported(item)?;
    let mut decoded = item
        .base64("plaintext")?
        .ok_or_else(|| ApiError::bad("missing plaintext to encrypt"))?;
    let pt = Plaintext::new(std::mem::take(&mut *decoded));
    Ok((pt, aad(item)?, item.u32("key_version")?))
}

/// Whether an upsert would encrypt at least one item: a new key is only
/// created for such a request, so a refused request creates nothing.
fn any_item_encrypts(p: &Params) -> ApiResult<bool> {
    // A fresh key has only version 1.
    let usable = |item: &Params| matches!(encrypt_input(item), Ok((_, _, None | Some(0 | 1))));
    Ok(match p.array("batch_input")? {
        None => usable(p),
        Some(items) => items
            .iter()
            .any(|v| Params::from_object(v.clone()).is_ok_and(|item| usable(&item))),
    })
}

async fn encrypt(core: &Core, u: &Unsealed, mount: &MountRow, name: &str, p: &mut Params) -> ApiResult<Reply> {
    valid_key_name(name)?;
    refuse_unsupported(p)?;
    let id = key_id(mount, name);
    let ring = match load(core, u, &id).await? {
        Some(r) => r,
        None => {
            // Upsert, as Vault: the ACL already required `create` here.
            let key_type = key_type_param(p)?;
            batch_shape(p)?;
            if !any_item_encrypts(p)? {
                return batch(p, Some(StatusCode::BAD_REQUEST), |item| {
                    encrypt_input(item)?;
                    Err(ApiError::bad(format!("encryption key not found: {name}")))
                });
            }
            let _w = core.write.lock().await;
            match create_locked(core, u, &id, key_type).await? {
                Some(r) => r,
                None => require(core, u, &id).await?,
            }
        }
    };
    let admitted = crate::usage::admitted(core, u, &id, ring, |r| version_counts(r, p, None)).await?;
    let ring = &admitted.ring;
    let mut nonces = Nonces::new(batch_len(p)?);
    batch(p, Some(StatusCode::BAD_REQUEST), |item| {
        let (pt, aad, version) = encrypt_input(item)?;
        admitted.check(ring.encryption_version(version)?)?;
        let (ciphertext, key_version) = ring.encrypt_with(&mut nonces, pt.as_bytes(), &aad, version)?;
        Ok(ItemOut::Ciphertext {
            ciphertext,
            key_version,
        })
    })
}

async fn decrypt(core: &Core, u: &Unsealed, mount: &MountRow, name: &str, p: &mut Params) -> ApiResult<Reply> {
    valid_key_name(name)?;
    refuse_unsupported(p)?;
    let ring = require(core, u, &key_id(mount, name)).await?;
    let reply = batch(p, Some(StatusCode::BAD_REQUEST), |item| {
        refuse_unsupported(item)?;
        let ct = item
            .str("ciphertext")?
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::bad("missing ciphertext to decrypt"))?;
        let (pt, _) = ring.decrypt(ct, &aad(item)?)?;
        Ok(ItemOut::Plaintext(zeroize::Zeroizing::new(plaintext_b64(&pt))))
    })?;
    // Vault reports a failed decrypt item with an empty plaintext beside the error.
    Ok(match reply {
        Reply::Batch(mut b) => {
            b.empty_plaintext_on_error = true;
            Reply::Batch(b)
        }
        other => other,
    })
}

async fn rewrap(core: &Core, u: &Unsealed, mount: &MountRow, name: &str, p: &mut Params) -> ApiResult<Reply> {
    valid_key_name(name)?;
    refuse_unsupported(p)?;
    let id = key_id(mount, name);
    let ring = require(core, u, &id).await?;
    let top_version = p.u32("key_version")?;
    let admitted = crate::usage::admitted(core, u, &id, ring, |r| version_counts(r, p, top_version)).await?;
    let ring = &admitted.ring;
    let mut nonces = Nonces::new(batch_len(p)?);
    batch(p, None, |item| {
        refuse_unsupported(item)?;
        let ct = item
            .str("ciphertext")?
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::bad("missing ciphertext to rewrap"))?;
        let aad = aad(item)?;
        let (pt, _) = ring.decrypt(ct, &aad)?;
        let version = item.u32("key_version")?.or(top_version);
        admitted.check(ring.encryption_version(version)?)?;
        let (ciphertext, key_version) = ring.encrypt_with(&mut nonces, pt.as_bytes(), &aad, version)?;
        Ok(ItemOut::Ciphertext {
            ciphertext,
            key_version,
        })
    })
}

async fn datakey(core: &Core, u: &Unsealed, mount: &MountRow, kind: &str, name: &str, p: &Params) -> ApiResult<Reply> {
    let with_plaintext = match kind {
        "plaintext" => true,
        "wrapped" => false,
        other => {
            return Err(ApiError::bad(format!(
                "invalid type {other:?}: use plaintext or wrapped"
            )));
        }
    };
    valid_key_name(name)?;
    refuse_unsupported(p)?;
    let id = key_id(mount, name);
    let ring = require(core, u, &id).await?;
    let bits = p.u32("bits")?.unwrap_or(256);
    if !matches!(bits, 128 | 256 | 512) {
        return Err(ApiError::bad("invalid bits: use 128, 256 or 512"));
    }
    // One message, under the version named at the top (datakey takes no batch).
    let requested = p.u32("key_version")?;
    let one = |r: &Keyring| {
        Ok(vec![(
            r.encryption_version(requested).unwrap_or(r.config.latest_version),
            1,
        )])
    };
    let admitted = crate::usage::admitted(core, u, &id, ring, one).await?;
    let ring = &admitted.ring;
    admitted.check(ring.encryption_version(requested)?)?;
    let key = Plaintext::new(rand::bytes(bits as usize / 8)?);
    let (ct, v) = ring.encrypt(key.as_bytes(), &aad(p)?, requested)?;
    let mut data = json!({ "ciphertext": ct, "key_version": v });
    if with_plaintext {
        data["plaintext"] = json!(plaintext_b64(&key));
    }
    Ok(Reply::Data(data))
}

fn algorithm(url: Option<&str>, p: &Params) -> ApiResult<HmacAlgorithm> {
    let name = match url {
        Some(a) => a,
        None => p.str("algorithm")?.or(p.str("hash_algorithm")?).unwrap_or("sha2-256"),
    };
    Ok(HmacAlgorithm::parse(name)?)
}

async fn hmac(
    core: &Core,
    u: &Unsealed,
    mount: &MountRow,
    name: &str,
    url_algo: Option<&str>,
    p: &mut Params,
) -> ApiResult<Reply> {
    valid_key_name(name)?;
    let ring = require(core, u, &key_id(mount, name)).await?;
    let algo = algorithm(url_algo, p)?;
    let top_version = p.u32("key_version")?;
    batch(p, None, |item| {
        let input = item
            .base64("input")?
            .ok_or_else(|| ApiError::bad("missing input for HMAC"))?;
        let (mac, _) = ring.hmac(&input, algo, item.u32("key_version")?.or(top_version))?;
        Ok(ItemOut::Hmac(mac))
    })
}

async fn verify(
    core: &Core,
    u: &Unsealed,
    mount: &MountRow,
    name: &str,
    url_algo: Option<&str>,
    p: &mut Params,
) -> ApiResult<Reply> {
    valid_key_name(name)?;
    let ring = require(core, u, &key_id(mount, name)).await?;
    let algo = algorithm(url_algo, p)?;
    batch(p, None, |item| {
        if item.str("signature")?.is_some() {
            return Err(ApiError::bad(
                "signatures need a signing key; this key type cannot sign",
            ));
        }
        let input = item.base64("input")?.ok_or_else(|| ApiError::bad("missing input"))?;
        let mac = item.str("hmac")?.ok_or_else(|| ApiError::bad("missing hmac"))?;
        Ok(ItemOut::Valid(ring.verify_hmac(&input, mac, algo)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(out: Result<ItemOut, String>, reference: &str) -> BatchItem {
        BatchItem {
            out,
            reference: reference.into(),
        }
    }

    /// The typed results serialise as Vault's JSON did from a map per item:
    /// same keys, sorted, and an empty plaintext beside a failed decrypt.
    #[test]
    fn batch_results_serialise_as_vault_json() {
        let mut b = BatchResults {
            status: StatusCode::OK,
            items: vec![
                item(
                    Ok(ItemOut::Ciphertext {
                        ciphertext: "vault:v2:AAAA".into(),
                        key_version: 2,
                    }),
                    "r1",
                ),
                item(Ok(ItemOut::Plaintext(zeroize::Zeroizing::new("aGk=".into()))), ""),
                item(Ok(ItemOut::Hmac("vault:v1:mac".into())), "h"),
                item(Ok(ItemOut::Valid(false)), "v"),
                item(Err("bad \"input\"".into()), "e"),
            ],
            empty_plaintext_on_error: false,
        };
        let expected = r#"{"batch_results":[{"ciphertext":"vault:v2:AAAA","key_version":2,"reference":"r1"},{"plaintext":"aGk=","reference":""},{"hmac":"vault:v1:mac","reference":"h"},{"reference":"v","valid":false},{"error":"bad \"input\"","reference":"e"}]}"#;
        assert_eq!(serde_json::to_string(&b).unwrap(), expected);
        // The same results through a JSON tree (sorted keys) read back equal.
        let tree: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(serde_json::to_string(&tree).unwrap(), expected);
        b.empty_plaintext_on_error = true;
        assert!(
            serde_json::to_string(&b)
                .unwrap()
                .ends_with(r#"{"error":"bad \"input\"","plaintext":"","reference":"e"}]}"#)
        );
    }

    #[test]
    fn single_results_keep_their_data_shape() {
        let v = ItemOut::Ciphertext {
            ciphertext: "vault:v1:x".into(),
            key_version: 1,
        }
        .into_value();
        assert_eq!(v, json!({ "ciphertext": "vault:v1:x", "key_version": 1 }));
        let p = ItemOut::Plaintext(zeroize::Zeroizing::new("aGk=".into())).into_value();
        assert_eq!(p, json!({ "plaintext": "aGk=" }));
        assert_eq!(ItemOut::Valid(true).into_value(), json!({ "valid": true }));
        assert_eq!(ItemOut::Hmac("m".into()).into_value(), json!({ "hmac": "m" }));
    }
}
