//! ACL policy storage and its API: `sys/policies/acl/:name` and the legacy
//! `sys/policy/:name`, one store behind both.

use std::sync::Arc;

use coffer_core::policy::{DEFAULT_POLICY, Policy};
use coffer_store::{Op, PolicyRow};
use serde_json::json;

use crate::core::{Core, read, write};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};

/// A stored policy, parsed once and cached until it changes.
pub(crate) async fn load(core: &Core, namespace: &str, name: &str) -> ApiResult<Option<Arc<Policy>>> {
    let key = (namespace.to_owned(), name.to_owned());
    if let Some(p) = read(&core.policies).get(&key) {
        return Ok(Some(p.clone()));
    }
    let seen = core.auth_generation();
    let Some(row) = core.store.policy(namespace, name).await? else {
        return Ok(None);
    };
    let parsed =
        Arc::new(Policy::parse(name, &row.body).map_err(|e| ApiError::Internal(format!("stored policy {name}: {e}")))?);
    let mut cache = write(&core.policies);
    // A policy write since the read: do not put the old text back.
    if core.auth_generation() == seen {
        cache.insert(key, parsed.clone());
    }
    Ok(Some(parsed))
}

fn valid_name(name: &str) -> ApiResult<String> {
    let lower = name.to_ascii_lowercase();
    // Vault folds the case after the ACL check; refusing instead keeps an exact
    // deny on `sys/policies/acl/admin` from being passed by `.../ADMIN`.
    if lower != name {
        return Err(ApiError::bad(format!("policy names are lowercase: use {lower:?}")));
    }
    if lower.is_empty()
        || lower.len() > 128
        || !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err(ApiError::bad(format!("invalid policy name {name:?}")));
    }
    Ok(lower)
}

async fn names(core: &Core, namespace: &str) -> ApiResult<Vec<String>> {
    let mut all = vec!["default".to_owned()];
    all.extend(core.store.policy_names(namespace).await?);
    all.push("root".to_owned());
    Ok(all)
}

async fn body_of(core: &Core, namespace: &str, name: &str) -> ApiResult<Option<String>> {
    match name {
        "default" => Ok(Some(DEFAULT_POLICY.trim_start().to_owned())),
        "root" => Ok(Some(String::new())),
        other => Ok(core.store.policy(namespace, other).await?.map(|p| p.body)),
    }
}

/// `rest` is what follows `sys/policy` or `sys/policies/acl`; `legacy` picks the response shape.
pub(crate) async fn handle(core: &Core, rest: &str, req: Request, legacy: bool) -> ApiResult<Reply> {
    let ns = req.namespace.clone();
    let name = rest.trim_start_matches('/');
    if name.is_empty() {
        return match (req.op, legacy) {
            (Operation::Read | Operation::List, true) => {
                let n = names(core, &ns).await?;
                Ok(Reply::SysData(json!({ "keys": n, "policies": n })))
            }
            (Operation::List, false) => Ok(Reply::Data(json!({ "keys": names(core, &ns).await? }))),
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    let name = valid_name(name)?;
    match req.op {
        Operation::Read => {
            let body = body_of(core, &ns, &name).await?.ok_or(ApiError::NotFound)?;
            if legacy {
                Ok(Reply::SysData(json!({ "name": name, "rules": body })))
            } else {
                Ok(Reply::Data(json!({ "name": name, "policy": body })))
            }
        }
        Operation::Write => {
            if name == "root" || name == "default" {
                return Err(ApiError::bad(format!("cannot update the {name} policy")));
            }
            let text = match (req.params.str("policy")?, req.params.str("rules")?) {
                (Some(t), _) | (None, Some(t)) => t.to_owned(),
                (None, None) => return Err(ApiError::bad("'policy' parameter not supplied or empty")),
            };
            if text.trim().is_empty() {
                return Err(ApiError::bad("'policy' parameter not supplied or empty"));
            }
            Policy::parse(&name, &text)?;
            let _w = core.write.lock().await;
            core.store
                .apply(vec![Op::PutPolicy(PolicyRow {
                    namespace: ns.clone(),
                    name: name.clone(),
                    body: text,
                    mac: None,
                })])
                .await?;
            core.invalidate_auth();
            write(&core.policies).remove(&(ns, name));
            Ok(Reply::NoContent)
        }
        Operation::Delete => {
            if name == "root" || name == "default" {
                return Err(ApiError::bad(format!("cannot delete the {name} policy")));
            }
            let _w = core.write.lock().await;
            core.store
                .apply(vec![Op::DeletePolicy {
                    namespace: ns.clone(),
                    name: name.clone(),
                }])
                .await?;
            core.invalidate_auth();
            write(&core.policies).remove(&(ns, name));
            Ok(Reply::NoContent)
        }
        Operation::List => Err(ApiError::MethodNotAllowed),
    }
}
