//! The mount table: which engine serves which path prefix (`transit/`,
//! `transit2/`...), and `sys/mounts`.

use coffer_store::{MountRow, Op};
use serde_json::{Value, json};

use crate::core::{Core, new_uuid, read, write};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};

/// Mount paths nobody may take.
const RESERVED: [&str; 5] = ["sys/", "auth/", "cubbyhole/", "identity/", "audit/"];

pub(crate) fn mount_row(namespace: &str, path: &str, kind: &str, description: &str, now: i64) -> ApiResult<MountRow> {
    Ok(MountRow {
        namespace: namespace.to_owned(),
        path: path.to_owned(),
        kind: kind.to_owned(),
        description: description.to_owned(),
        accessor: format!("{kind}_{}", &new_uuid()[..8]),
        created: now,
        mac: None,
    })
}

/// Every tenant has `transit/` built in, so a million tenants cost no mount rows.
pub(crate) fn builtin_transit(namespace: &str) -> MountRow {
    MountRow {
        namespace: namespace.to_owned(),
        path: "transit/".into(),
        kind: "transit".into(),
        description: "built in".into(),
        accessor: "transit_builtin".into(),
        created: 0,
        mac: None,
    }
}

/// The mount serving `path`, and the rest of the path below it.
pub(crate) fn resolve(core: &Core, namespace: &str, path: &str) -> Option<(MountRow, String)> {
    let found = resolve_stored(core, namespace, path);
    if found.is_some() || namespace.is_empty() {
        return found;
    }
    let rest = path.strip_prefix("transit")?;
    match rest.strip_prefix('/') {
        Some(r) => Some((builtin_transit(namespace), r.to_owned())),
        None if rest.is_empty() => Some((builtin_transit(namespace), String::new())),
        None => None,
    }
}

fn resolve_stored(core: &Core, namespace: &str, path: &str) -> Option<(MountRow, String)> {
    let mounts = read(&core.mounts);
    mounts
        .iter()
        .filter(|m| m.namespace == namespace)
        .filter_map(|m| {
            let base = m.path.trim_end_matches('/');
            let rest = path.strip_prefix(base)?;
            match rest.strip_prefix('/') {
                Some(r) => Some((m, r)),
                None if rest.is_empty() => Some((m, "")),
                None => None,
            }
        })
        .max_by_key(|(m, _)| m.path.len())
        .map(|(m, r)| (m.clone(), r.to_owned()))
}

fn normalise(path: &str) -> ApiResult<String> {
    let p = path.trim_matches('/');
    if p.is_empty()
        || p.len() > 128
        || !p.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
    {
        return Err(ApiError::bad(format!("invalid mount path {path:?}")));
    }
    Ok(format!("{p}/"))
}

fn describe(m: &MountRow) -> Value {
    json!({
        "type": m.kind,
        "description": m.description,
        "accessor": m.accessor,
        "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false },
        "options": null,
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "uuid": m.accessor,
        "plugin_version": "",
        "running_plugin_version": "",
    })
}

/// `rest` is what follows `sys/mounts`.
pub(crate) async fn handle(core: &Core, rest: &str, req: Request) -> ApiResult<Reply> {
    let ns = req.namespace.clone();
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        if req.op != Operation::Read {
            return Err(ApiError::MethodNotAllowed);
        }
        let mut data = serde_json::Map::new();
        if !ns.is_empty() {
            data.insert("transit/".into(), describe(&builtin_transit(&ns)));
        }
        for m in read(&core.mounts).iter().filter(|m| m.namespace == ns) {
            data.insert(m.path.clone(), describe(m));
        }
        data.insert(
            "sys/".into(),
            json!({ "type": "system", "description": "system endpoints used for control, policy and debugging",
                    "accessor": "system", "config": {}, "options": null, "local": false, "seal_wrap": true }),
        );
        return Ok(Reply::SysData(Value::Object(data)));
    }
    let path = normalise(rest)?;
    match req.op {
        Operation::Read => {
            let mounts = read(&core.mounts);
            let m = mounts
                .iter()
                .find(|m| m.namespace == ns && m.path == path)
                .ok_or(ApiError::NotFound)?;
            Ok(Reply::Data(describe(m)))
        }
        Operation::Write => {
            let kind = req.params.str("type")?.unwrap_or("");
            if kind != "transit" {
                return Err(ApiError::bad(if kind.is_empty() {
                    "missing type of secrets engine".to_owned()
                } else {
                    format!("unsupported secrets engine type {kind:?}: this server offers \"transit\"")
                }));
            }
            if RESERVED.iter().any(|r| path.starts_with(r)) {
                return Err(ApiError::bad(format!("cannot mount at reserved path {path:?}")));
            }
            let description = req.params.str("description")?.unwrap_or("").to_owned();
            let _w = core.write.lock().await;
            // A root mount may not share its first segment with a tenant's name.
            let first = path.split('/').next().unwrap_or_default();
            if ns.is_empty() && core.store.namespace(first).await?.is_some() {
                return Err(ApiError::bad(format!(
                    "path is already in use at {first}/: a namespace"
                )));
            }
            let builtin = !ns.is_empty() && (path.starts_with("transit/") || "transit/".starts_with(&path));
            let clash = builtin
                || read(&core.mounts)
                    .iter()
                    .any(|m| m.namespace == ns && (path.starts_with(&m.path) || m.path.starts_with(&path)));
            if clash {
                return Err(ApiError::bad(format!("path is already in use at {path}")));
            }
            let row = mount_row(&ns, &path, kind, &description, core.now())?;
            core.store
                .apply(vec![Op::InsertMount(row.clone())])
                .await
                .map_err(|e| match e {
                    coffer_store::StoreError::Conflict(_) => ApiError::bad(format!("path is already in use at {path}")),
                    other => other.into(),
                })?;
            write(&core.mounts).push(row);
            Ok(Reply::NoContent)
        }
        Operation::Delete => {
            if !ns.is_empty() && path == "transit/" {
                return Err(ApiError::bad(
                    "a tenant's transit/ mount is built in; shred the tenant to remove it",
                ));
            }
            let _w = core.write.lock().await;
            core.store
                .apply(vec![Op::DeleteMount {
                    namespace: ns.clone(),
                    path: path.clone(),
                }])
                .await?;
            write(&core.mounts).retain(|m| !(m.namespace == ns && m.path == path));
            let mount = path.trim_end_matches('/').to_owned();
            core.keys_changed();
            core.keys.retain(|id| !(id.namespace == ns && id.mount == mount));
            // Its keys' wrapped bytes must not linger in the WAL.
            core.scrub().await?;
            Ok(Reply::NoContent)
        }
        Operation::List => Err(ApiError::MethodNotAllowed),
    }
}
