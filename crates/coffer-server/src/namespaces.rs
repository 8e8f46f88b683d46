//! Tenants as namespaces (`sys/namespaces/*`): creation with a fresh
//! tenant key, disable/enable, tenant key rotation with online rewrap of
//! every named key, and crypto-shredding.

use coffer_core::Key256;
use coffer_core::wrap::{self, Label};
use coffer_store::{NamespaceRow, Op, TenantKeyRow, TombstoneRow, TransitVersionRow};
use serde_json::{Value, json};

use crate::core::{Core, ROOT_NS, Unsealed, new_uuid, read};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};
use crate::tokens::Caller;

/// Names that would be ambiguous as a path prefix.
const RESERVED: [&str; 6] = ["sys", "auth", "transit", "root", "identity", "cubbyhole"];

fn valid_name(name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 64
        || RESERVED.contains(&name)
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(ApiError::bad(format!(
            "invalid namespace name {name:?}: use 1-64 letters, digits, '-' or '_' (nested namespaces are not supported)"
        )));
    }
    Ok(())
}

fn describe(n: &NamespaceRow) -> Value {
    json!({ "id": n.id, "path": format!("{}/", n.name), "custom_metadata": {}, "disabled": n.disabled })
}

/// `rest` follows `sys/namespaces`.
pub(crate) async fn handle(core: &Core, u: &Unsealed, caller: &Caller, rest: &str, req: Request) -> ApiResult<Reply> {
    if req.namespace != ROOT_NS {
        return Err(ApiError::bad(
            "tenants are managed from the root namespace; nested namespaces are not supported",
        ));
    }
    let rest = rest.trim_start_matches('/');
    let (name, action) = match rest.split_once('/') {
        Some((n, a)) => (n, Some(a)),
        None => (rest, None),
    };
    match (name, action, req.op) {
        ("", None, Operation::List | Operation::Read) => list(core).await,
        (_, None, Operation::Read) => {
            let n = core
                .store
                .namespace(name)
                .await?
                .filter(|n| !n.name.is_empty())
                .ok_or(ApiError::NotFound)?;
            Ok(Reply::Data(describe(&n)))
        }
        (_, None, Operation::Write) => create(core, u, name).await,
        (_, None, Operation::Delete) => shred(core, u, caller, name).await,
        (_, Some("disable"), Operation::Write) => set_disabled(core, name, true).await,
        (_, Some("enable"), Operation::Write) => set_disabled(core, name, false).await,
        (_, Some("rotate"), Operation::Write) => {
            valid_name(name)?;
            let v = rotate_tenant_key(core, u, name).await?;
            Ok(Reply::Data(json!({ "tenant_key_version": v })))
        }
        ("tombstones", None, Operation::List) => {
            let t: Vec<Value> = core
                .store
                .tombstones()
                .await?
                .into_iter()
                .map(|t| json!({ "name": t.name, "id": t.id, "shredded": t.shredded, "by": t.by_who }))
                .collect();
            Ok(Reply::Data(json!({ "tombstones": t })))
        }
        _ => Err(ApiError::UnsupportedPath),
    }
}

async fn list(core: &Core) -> ApiResult<Reply> {
    let all: Vec<NamespaceRow> = core
        .store
        .namespaces()
        .await?
        .into_iter()
        .filter(|n| !n.name.is_empty())
        .collect();
    if all.is_empty() {
        return Err(ApiError::NotFound);
    }
    let keys: Vec<String> = all.iter().map(|n| format!("{}/", n.name)).collect();
    let info: serde_json::Map<String, Value> = all.iter().map(|n| (format!("{}/", n.name), describe(n))).collect();
    Ok(Reply::Data(json!({ "keys": keys, "key_info": info })))
}

async fn create(core: &Core, u: &Unsealed, name: &str) -> ApiResult<Reply> {
    valid_name(name)?;
    let _w = core.write.lock().await;
    if let Some(n) = core.store.namespace(name).await? {
        // Creating an existing namespace reports it, as Vault does.
        return Ok(Reply::Data(describe(&n)));
    }
    // `name/...` would then mean both the mount and the tenant, in paths and in policies.
    let prefix = format!("{name}/");
    if read(&core.mounts)
        .iter()
        .any(|m| m.namespace == ROOT_NS && m.path.starts_with(&prefix))
    {
        return Err(ApiError::bad(format!("path is already in use at {prefix}")));
    }
    let now = core.now();
    let row = NamespaceRow {
        name: name.to_owned(),
        id: new_uuid(),
        created: now,
        disabled: false,
        next_rotation: core.next_tenant_rotation(now),
        mac: None,
    };
    let tenant_key = Key256::generate()?;
    let wrapped = wrap::wrap_key(core.root_key(u), &Label::tenant(name, 1), &tenant_key)?;
    core.store
        .apply(vec![
            Op::InsertNamespace(row.clone()),
            Op::PutTenantKey(TenantKeyRow {
                namespace: name.to_owned(),
                version: 1,
                created: now,
                wrapped: wrapped.0,
            }),
        ])
        .await?;
    core.forget_namespace(name);
    core.forget_tenant(u, name);
    Ok(Reply::Data(describe(&row)))
}

async fn set_disabled(core: &Core, name: &str, disabled: bool) -> ApiResult<Reply> {
    valid_name(name)?;
    let _w = core.write.lock().await;
    core.store
        .namespace(name)
        .await?
        .ok_or_else(|| ApiError::bad(format!("namespace {name:?} does not exist")))?;
    core.store
        .apply(vec![Op::SetNamespaceDisabled {
            name: name.to_owned(),
            disabled,
        }])
        .await?;
    core.forget_namespace(name);
    Ok(Reply::NoContent)
}

/// Destroys the tenant key and everything under it; leaves a tombstone.
async fn shred(core: &Core, u: &Unsealed, caller: &Caller, name: &str) -> ApiResult<Reply> {
    valid_name(name)?;
    let _w = core.write.lock().await;
    // Unchecked: an altered tenant must still be shreddable.
    let Some(n) = core.unchecked().namespace(name).await? else {
        return Ok(Reply::NoContent);
    };
    let tomb = TombstoneRow {
        name: n.name.clone(),
        id: n.id,
        shredded: core.now(),
        by_who: caller.token.accessor.clone(),
    };
    core.store.apply(vec![Op::ShredNamespace(tomb)]).await?;
    // The caches go first: a failed scrub must not leave the tenant usable on this node.
    core.forget_namespace(name);
    core.forget_tenant(u, name);
    core.keys_changed();
    core.keys.retain(|id| id.namespace != name);
    crate::core::write(&core.mounts).retain(|m| m.namespace != name);
    core.invalidate_auth();
    crate::core::write(&core.policies).retain(|(ns, _), _| ns != name);
    tracing::warn!(tenant = name, by = %caller.token.accessor, "tenant shredded");
    core.scrub().await?;
    Ok(Reply::NoContent)
}

/// A new tenant key version; every named key of the tenant is rewrapped
/// under it and the old versions are destroyed, in one transaction.
pub(crate) async fn rotate_tenant_key(core: &Core, u: &Unsealed, name: &str) -> ApiResult<u32> {
    let _w = core.write.lock().await;
    let n = core
        .store
        .namespace(name)
        .await?
        .ok_or_else(|| ApiError::bad(format!("namespace {name:?} does not exist")))?;
    let old = core.tenant_keys(u, name).await?;
    let v = old.current + 1;
    let now = core.now();
    let new_key = Key256::generate()?;
    let mut ops = vec![Op::PutTenantKey(TenantKeyRow {
        namespace: name.to_owned(),
        version: v,
        created: now,
        wrapped: wrap::wrap_key(core.root_key(u), &Label::tenant(name, v), &new_key)?.0,
    })];
    for k in core.store.transit_keys_of(name).await? {
        for row in core.store.transit_versions(name, &k.mount, &k.name).await? {
            let label = Label::transit(name, &k.mount, &k.name, row.version);
            let pt = wrap::unwrap(old.key(row.kek_version)?, &label, &row.wrapped)
                .map_err(|_| ApiError::Internal(format!("stored key {} v{} fails to unwrap", k.name, row.version)))?;
            ops.push(Op::RewrapTransitVersion(TransitVersionRow {
                kek_version: v,
                wrapped: wrap::wrap(&new_key, &label, pt.as_bytes())?.0,
                ..row
            }));
        }
    }
    ops.push(Op::DeleteTenantKeysBelow {
        namespace: name.to_owned(),
        below: v,
    });
    ops.push(Op::SetNamespaceRotation {
        name: n.name.clone(),
        next_rotation: core.next_tenant_rotation(now),
    });
    core.store.apply(ops).await?;
    // The caches go first: a failed scrub must not leave the old tenant key current here.
    core.forget_tenant(u, name);
    core.forget_namespace(name);
    core.scrub().await?;
    Ok(v)
}

/// Creates many tenants in a few transactions (bulk provisioning). Existing
/// names are refused as a whole batch; nothing is created then.
pub(crate) async fn provision(core: &Core, u: &Unsealed, names: &[String]) -> ApiResult<()> {
    const CHUNK: usize = 10_000;
    let _w = core.write.lock().await;
    for chunk in names.chunks(CHUNK) {
        let now = core.now();
        let mut ops = Vec::with_capacity(chunk.len() * 2);
        for name in chunk {
            valid_name(name)?;
            let key = Key256::generate()?;
            ops.push(Op::InsertNamespace(NamespaceRow {
                name: name.clone(),
                id: new_uuid(),
                created: now,
                disabled: false,
                next_rotation: core.next_tenant_rotation(now),
                mac: None,
            }));
            ops.push(Op::PutTenantKey(TenantKeyRow {
                namespace: name.clone(),
                version: 1,
                created: now,
                wrapped: wrap::wrap_key(core.root_key(u), &Label::tenant(name, 1), &key)?.0,
            }));
        }
        core.store.apply(ops).await.map_err(|e| match e {
            coffer_store::StoreError::Conflict(_) => ApiError::bad("a tenant in the batch already exists"),
            other => other.into(),
        })?;
        for name in chunk {
            core.forget_namespace(name);
        }
    }
    Ok(())
}
