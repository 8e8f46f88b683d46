//! Tokens (`auth/token/*`): creation, lookup, renewal and revocation, and
//! turning a request's token into a [`Caller`] with its ACL.
//!
//! Token ids are stored only as an HMAC under a key derived from the root
//! key, so a copy of the database does not reveal or let anyone test them.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lc_rs::hmac;
use coffer_core::policy::{Acl, Capability, DEFAULT_POLICY, Policy};
use coffer_store::{Op, TokenRow};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::core::{CACHE_LIMIT, Core, Unsealed, hash_token, new_accessor, new_token_id, read, token_key_of, write};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};

/// Vault's default and maximum token TTL: 768 hours.
pub(crate) const DEFAULT_TTL: i64 = 768 * 3600;

/// Who is calling, and what their policies allow.
pub(crate) struct Caller {
    pub(crate) token: TokenRow,
    pub(crate) policies: Vec<String>,
    pub(crate) acl: Arc<Acl>,
    pub(crate) token_id: Zeroizing<String>,
    /// Set when a client certificate, not a token, identifies the caller.
    pub(crate) cert_role: Option<String>,
}

impl Caller {
    pub(crate) fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }
}

pub(crate) fn root_token_row(key: &hmac::Key, id: &str, now: i64) -> ApiResult<TokenRow> {
    Ok(TokenRow {
        accessor: new_accessor()?,
        hash: hash_token(key, id),
        namespace: String::new(),
        parent: None,
        policies: json!(["root"]).to_string(),
        display_name: "root".into(),
        created: now,
        ttl: 0,
        expires: None,
        max_expires: None,
        num_uses: 0,
        renewable: false,
        meta: "{}".into(),
        mac: None,
    })
}

fn policies_of(row: &TokenRow) -> Vec<String> {
    serde_json::from_str(&row.policies).unwrap_or_default()
}

/// Finds the token, checks it is alive, spends a use, and builds its ACL.
pub(crate) async fn authenticate(core: &Core, u: &Unsealed, req: &Request) -> ApiResult<Caller> {
    let token_id = req.token.clone().ok_or(ApiError::PermissionDenied)?;
    let row = live_token(core, u, &token_id)
        .await?
        .ok_or(ApiError::PermissionDenied)?;
    if row.num_uses > 0 {
        match core.store.consume_token_use(&row.accessor, None).await? {
            None => return Err(ApiError::PermissionDenied),
            // The last use removed the token; its children go with it, as in Vault.
            Some(0) => {
                let _w = core.write.lock().await;
                revoke_tree(core, &row.accessor).await?;
            }
            Some(_) => {}
        }
    }
    let policies = policies_of(&row);
    let acl = acl_for(core, &row.namespace, &policies).await?;
    Ok(Caller {
        token: row,
        policies,
        acl,
        token_id,
        cert_role: None,
    })
}

/// The token with this id, if it exists and has not expired.
async fn live_token(core: &Core, u: &Unsealed, id: &str) -> ApiResult<Option<TokenRow>> {
    let hash = core.token_hash(u, id);
    let cached = read(&core.token_cache).get(&hash).cloned();
    let row = match cached {
        Some(r) => r,
        None => {
            let seen = core.auth_generation();
            let Some(row) = core.store.token_by_hash(&hash).await? else {
                return Ok(None);
            };
            // Limited-use tokens are counted in the store on every use, so never cached.
            if row.num_uses == 0 {
                let mut cache = write(&core.token_cache);
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                // A revocation since the read: do not put the old row back.
                if core.auth_generation() == seen {
                    cache.insert(hash, row.clone());
                }
            }
            row
        }
    };
    if row.expires.is_some_and(|e| e <= core.now()) {
        let _w = core.write.lock().await;
        revoke_tree(core, &row.accessor).await?;
        return Ok(None);
    }
    Ok(Some(row))
}

pub(crate) async fn acl_for(core: &Core, namespace: &str, names: &[String]) -> ApiResult<Arc<Acl>> {
    let key = format!("{namespace}\0{}", names.join("\0"));
    if let Some(a) = read(&core.acl_cache).get(&key) {
        return Ok(a.clone());
    }
    let seen = core.auth_generation();
    let acl = Arc::new(build_acl(core, namespace, names).await?);
    let mut cache = write(&core.acl_cache);
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    if core.auth_generation() == seen {
        cache.insert(key, acl.clone());
    }
    Ok(acl)
}

fn default_policy() -> ApiResult<Arc<Policy>> {
    static DEFAULT: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();
    if let Some(p) = DEFAULT.get() {
        return Ok(p.clone());
    }
    let p = Arc::new(Policy::parse("default", DEFAULT_POLICY)?);
    Ok(DEFAULT.get_or_init(|| p).clone())
}

async fn build_acl(core: &Core, namespace: &str, names: &[String]) -> ApiResult<Acl> {
    let mut root = false;
    let mut parsed: Vec<Arc<Policy>> = Vec::new();
    for name in names {
        match name.as_str() {
            "root" => root = true,
            "default" => parsed.push(default_policy()?),
            // A policy that does not exist grants nothing, as in Vault.
            other => {
                if let Some(p) = crate::policies::load(core, namespace, other).await? {
                    parsed.push(p);
                }
            }
        }
    }
    Ok(Acl::new(parsed.iter().map(|p| p.as_ref()), root))
}

/// A token named by id or accessor is out of reach outside its tenant; the
/// root namespace reaches every tenant's, as a parent namespace does in Vault.
fn in_scope(req: &Request, row: &TokenRow) -> bool {
    req.namespace.is_empty() || row.namespace == req.namespace
}

pub(crate) async fn handle(core: &Core, u: &Unsealed, caller: &Caller, rest: &str, req: Request) -> ApiResult<Reply> {
    use Operation::*;
    let scoped = |row: Option<TokenRow>| row.filter(|r| in_scope(&req, r));
    match (rest, req.op) {
        ("create" | "create-orphan", Write) => create(core, u, caller, &req, rest == "create-orphan").await,
        ("lookup-self", Read | Write) => Ok(Reply::Data(lookup_data(core, &caller.token, Some(&caller.token_id)))),
        ("lookup", Read | Write) => {
            let id = req.params.required_str("token")?;
            let row = scoped(live_token(core, u, id).await?).ok_or(ApiError::PermissionDenied)?;
            Ok(Reply::Data(lookup_data(core, &row, Some(id))))
        }
        ("lookup-accessor", Write) => {
            let acc = req.params.required_str("accessor")?;
            let row =
                scoped(core.store.token_by_accessor(acc).await?).ok_or_else(|| ApiError::bad("invalid accessor"))?;
            Ok(Reply::Data(lookup_data(core, &row, None)))
        }
        ("renew-self", Write) => renew(core, &caller.token, &caller.token_id, &req).await,
        ("renew", Write) => {
            let id = req.params.required_str("token")?;
            let row = scoped(live_token(core, u, id).await?).ok_or(ApiError::PermissionDenied)?;
            renew(core, &row, id, &req).await
        }
        ("revoke-self", Write) => {
            let _w = core.write.lock().await;
            revoke_tree(core, &caller.token.accessor).await?;
            Ok(Reply::NoContent)
        }
        ("revoke", Write) => {
            let id = req.params.required_str("token")?;
            let _w = core.write.lock().await;
            // Unchecked: revoking grants nothing, so an altered token can be revoked.
            if let Some(row) = scoped(core.unchecked().token_by_hash(&core.token_hash(u, id)).await?) {
                revoke_tree(core, &row.accessor).await?;
            }
            Ok(Reply::NoContent)
        }
        ("revoke-accessor", Write) => {
            let acc = req.params.required_str("accessor")?;
            let _w = core.write.lock().await;
            if scoped(core.unchecked().token_by_accessor(acc).await?).is_some() {
                revoke_tree(core, acc).await?;
            }
            Ok(Reply::NoContent)
        }
        ("revoke-orphan", Write) => {
            let id = req.params.required_str("token")?;
            let _w = core.write.lock().await;
            if let Some(row) = scoped(core.unchecked().token_by_hash(&core.token_hash(u, id)).await?) {
                core.store
                    .apply(vec![
                        Op::OrphanChildren {
                            parent: row.accessor.clone(),
                        },
                        Op::DeleteToken { accessor: row.accessor },
                    ])
                    .await?;
                core.invalidate_auth();
            }
            Ok(Reply::NoContent)
        }
        (
            "create" | "create-orphan" | "lookup-self" | "lookup" | "lookup-accessor" | "renew-self" | "renew"
            | "revoke-self" | "revoke" | "revoke-accessor" | "revoke-orphan",
            _,
        ) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::UnsupportedPath),
    }
}

async fn create(core: &Core, u: &Unsealed, caller: &Caller, req: &Request, orphan_path: bool) -> ApiResult<Reply> {
    let p = &req.params;
    if p.str("type")?.is_some_and(|t| t != "service" && t != "default") {
        return Err(ApiError::bad("only service tokens are supported"));
    }
    if p.duration("period")?.is_some_and(|d| d > 0) {
        return Err(ApiError::bad("periodic tokens are not supported"));
    }
    // As Vault: a use-limited token makes no children (they would outlive its uses).
    if caller.token.num_uses > 0 {
        return Err(ApiError::bad("restricted use token cannot generate child tokens"));
    }
    // From the root namespace into a tenant: the tenant's policy names are not the
    // caller's, so nothing is inherited, `root` is refused, and sudo is required (as Vault).
    let cross = caller.token.namespace != req.namespace;
    let sudo = caller.is_root()
        || crate::http::acl_path(caller, req, &req.path)
            .is_some_and(|path| caller.acl.capabilities(&path).contains(Capability::Sudo));
    if cross && !sudo {
        return Err(ApiError::bad("sudo is required to create a token in another namespace"));
    }
    let requested = p.str_list("policies")?;
    let mut set: BTreeSet<String> = match &requested {
        Some(list) => list.iter().cloned().collect(),
        None if cross => BTreeSet::new(),
        None => caller.policies.iter().cloned().collect(),
    };
    if cross && set.contains("root") {
        return Err(ApiError::bad("root tokens cannot be created in another namespace"));
    }
    if !caller.is_root() && !cross {
        let allowed: BTreeSet<&String> = caller.policies.iter().collect();
        if let Some(bad) = set.iter().find(|p| *p != "default" && !allowed.contains(p)) {
            return Err(ApiError::bad(format!(
                "child policies must be a subset of the parent's; {bad:?} is not"
            )));
        }
    }
    for name in &set {
        if name.is_empty() || name.len() > 128 {
            return Err(ApiError::bad("invalid policy name"));
        }
    }
    if !p.bool("no_default_policy")?.unwrap_or(false) && !set.contains("root") {
        set.insert("default".into());
    }
    let policies: Vec<String> = if set.contains("root") {
        vec!["root".into()]
    } else {
        set.into_iter().collect()
    };

    let custom_id = p.str("id")?;
    if custom_id.is_some() && !sudo {
        return Err(ApiError::bad("root or sudo privileges required to specify token id"));
    }
    // A certificate identity is not a token, so its children have no parent to die with.
    let no_parent = orphan_path || p.bool("no_parent")?.unwrap_or(false) || caller.cert_role.is_some();
    if no_parent && !orphan_path && !sudo && caller.cert_role.is_none() {
        return Err(ApiError::bad("root or sudo privileges required to create orphan token"));
    }
    let ttl = match p.duration("ttl")? {
        None | Some(0) => DEFAULT_TTL,
        Some(t) => i64::try_from(t).unwrap_or(i64::MAX).min(DEFAULT_TTL),
    };
    // Renewals never pass this, as in Vault: the system maximum, or less if asked.
    let max_ttl = match p.duration("explicit_max_ttl")? {
        Some(m) if m > 0 => i64::try_from(m).unwrap_or(i64::MAX).min(DEFAULT_TTL),
        _ => DEFAULT_TTL,
    };
    let ttl = ttl.min(max_ttl);
    let num_uses = i64::from(p.u32("num_uses")?.unwrap_or(0));
    let renewable = p.bool("renewable")?.unwrap_or(true);
    let meta = p.string_map("meta")?;
    let display = p.str("display_name")?.unwrap_or("");
    let display_name = if display.is_empty() {
        "token".to_owned()
    } else {
        format!("token-{display}")
    };
    let now = core.now();
    let id = match custom_id {
        Some("") => return Err(ApiError::bad("token id cannot be empty")),
        Some(id) => Zeroizing::new(id.to_owned()),
        None => new_token_id()?,
    };
    let row = TokenRow {
        accessor: new_accessor()?,
        hash: hash_token(token_key_of(u), &id),
        namespace: req.namespace.clone(),
        parent: if no_parent {
            None
        } else {
            Some(caller.token.accessor.clone())
        },
        policies: json!(policies).to_string(),
        display_name,
        created: now,
        ttl,
        expires: Some(now + ttl),
        max_expires: Some(now + max_ttl),
        num_uses,
        renewable,
        meta: Value::Object(meta.clone()).to_string(),
        mac: None,
    };
    {
        let _w = core.write.lock().await;
        // The parent may have been revoked (or used up) since it authenticated: no orphaned child.
        if let Some(parent) = &row.parent
            && core.store.token_by_accessor(parent).await?.is_none()
        {
            return Err(ApiError::PermissionDenied);
        }
        core.store
            .apply(vec![Op::InsertToken(row.clone())])
            .await
            .map_err(|e| match e {
                coffer_store::StoreError::Conflict(_) => ApiError::bad("cannot create a token with a duplicate id"),
                other => other.into(),
            })?;
    }
    Ok(Reply::Auth(json!({
        "client_token": id.as_str(),
        "accessor": row.accessor,
        "policies": policies,
        "token_policies": policies,
        "identity_policies": null,
        "metadata": if meta.is_empty() { Value::Null } else { Value::Object(meta) },
        "lease_duration": ttl,
        "renewable": renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": no_parent,
        "mfa_requirement": null,
        "num_uses": num_uses,
    })))
}

async fn renew(core: &Core, row: &TokenRow, token_id: &str, req: &Request) -> ApiResult<Reply> {
    if !row.renewable || row.expires.is_none() {
        return Err(ApiError::bad("lease is not renewable"));
    }
    let now = core.now();
    let cap = row.max_expires.unwrap_or(row.created.saturating_add(DEFAULT_TTL));
    let ttl = match req.params.duration("increment")? {
        None | Some(0) => row.ttl,
        Some(i) => i64::try_from(i).unwrap_or(i64::MAX),
    }
    .min(DEFAULT_TTL)
    .min(cap.saturating_sub(now));
    if ttl <= 0 {
        return Err(ApiError::bad(
            "the token has reached its maximum TTL and cannot be renewed",
        ));
    }
    {
        let _w = core.write.lock().await;
        core.store
            .apply(vec![Op::SetTokenExpiry {
                accessor: row.accessor.clone(),
                ttl,
                expires: Some(now + ttl),
            }])
            .await?;
        core.invalidate_auth();
    }
    let policies = policies_of(row);
    Ok(Reply::Auth(json!({
        "client_token": token_id,
        "accessor": row.accessor,
        "policies": policies,
        "token_policies": policies,
        "metadata": serde_json::from_str::<Value>(&row.meta).unwrap_or(Value::Null),
        "lease_duration": ttl,
        "renewable": true,
        "entity_id": "",
        "token_type": "service",
        "orphan": row.parent.is_none(),
        "num_uses": row.num_uses,
    })))
}

/// Deletes a token and all its descendants. Callers hold `core.write`.
pub(crate) async fn revoke_tree(core: &Core, accessor: &str) -> ApiResult<()> {
    let mut doomed = vec![accessor.to_owned()];
    let mut i = 0;
    while i < doomed.len() {
        for child in core.store.token_children(&doomed[i]).await? {
            if !doomed.contains(&child.accessor) {
                doomed.push(child.accessor);
            }
        }
        i += 1;
    }
    core.store
        .apply(
            doomed
                .into_iter()
                .map(|accessor| Op::DeleteToken { accessor })
                .collect(),
        )
        .await?;
    // After the delete commits, so no concurrent lookup can re-cache a revoked token.
    core.invalidate_auth();
    Ok(())
}

pub(crate) fn rfc3339(t: i64) -> Value {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn lookup_data(core: &Core, row: &TokenRow, id: Option<&str>) -> Value {
    let policies = policies_of(row);
    let now = core.now();
    let meta = serde_json::from_str::<Value>(&row.meta)
        .ok()
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()));
    json!({
        "accessor": row.accessor,
        "creation_time": row.created,
        "creation_ttl": row.ttl,
        "display_name": row.display_name,
        "entity_id": "",
        "expire_time": row.expires.map_or(Value::Null, rfc3339),
        "explicit_max_ttl": 0,
        "id": id.unwrap_or(""),
        "issue_time": rfc3339(row.created),
        "meta": meta,
        "num_uses": row.num_uses,
        "orphan": row.parent.is_none(),
        "path": if policies.iter().any(|p| p == "root") && row.expires.is_none() { "auth/token/root" } else { "auth/token/create" },
        "policies": policies,
        "renewable": row.renewable,
        "ttl": row.expires.map_or(0, |e| (e - now).max(0)),
        "type": "service",
    })
}

/// Whether the caller may use `cap` on `path` (for handlers that check a second path).
#[allow(dead_code)]
pub(crate) fn may(caller: &Caller, path: &str, cap: Capability) -> bool {
    caller.acl.allows(path, cap)
}
