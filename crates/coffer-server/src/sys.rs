//! `sys/`: initialisation, seal and unseal, health, mounts, policies.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::core::{Core, SealStatus, Unsealed};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};
use crate::tokens::Caller;
use crate::{mounts, policies};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn seal_status_json(s: &SealStatus) -> Value {
    let mut v = json!({
        "type": "shamir",
        "initialized": s.initialized,
        "sealed": s.sealed,
        "t": s.threshold,
        "n": s.shares,
        "progress": s.progress,
        "nonce": "",
        "version": VERSION,
        "build_date": "",
        "migration": false,
        "recovery_seal": false,
        "storage_type": "sqlite",
    });
    if let Some(c) = &s.cluster {
        v["cluster_name"] = json!(c.cluster_name);
        v["cluster_id"] = json!(c.cluster_id);
    }
    v
}

/// Endpoints that need no token and work while sealed.
pub(crate) async fn public(core: &Core, req: Request) -> ApiResult<Reply> {
    match (req.path.as_str(), req.op) {
        ("sys/health", Operation::Read) => health(core, &req),
        ("sys/seal-status", Operation::Read) => Ok(Reply::Raw(StatusCode::OK, seal_status_json(&core.seal_status()))),
        ("sys/leader", Operation::Read) => Ok(Reply::Raw(
            StatusCode::OK,
            json!({ "ha_enabled": false, "is_self": true, "leader_address": "", "leader_cluster_address": "" }),
        )),
        ("sys/init", Operation::Read) => Ok(Reply::Raw(
            StatusCode::OK,
            json!({ "initialized": core.is_initialized() }),
        )),
        ("sys/init", Operation::Write) => init(core, &req).await,
        ("sys/unseal", Operation::Write) => unseal(core, &req).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn health(core: &Core, req: &Request) -> ApiResult<Reply> {
    // Like Vault, a code that is not a number is a 400; a 1xx is too, as it is not a final answer.
    // Standby and replication codes never apply here but are checked the same way.
    let mut codes = [
        ("uninitcode", 501),
        ("sealedcode", 503),
        ("activecode", 200),
        ("standbycode", 429),
        ("performancestandbycode", 473),
        ("drsecondarycode", 472),
    ];
    for (name, code) in &mut codes {
        if let Some(v) = req.query.get(*name) {
            *code = v
                .parse::<u16>()
                .ok()
                .filter(|c| (200..=599).contains(c))
                .ok_or_else(|| ApiError::bad(format!("bad code for {name} parameter: want 200-599")))?;
        }
    }
    let s = core.seal_status();
    let code = match (s.initialized, s.sealed) {
        (false, _) => codes[0].1,
        (true, true) => codes[1].1,
        (true, false) => codes[2].1,
    };
    let status = StatusCode::from_u16(code).map_err(|_| ApiError::bad("bad code"))?;
    let now = core.now();
    let mut body = json!({
        "initialized": s.initialized,
        "sealed": s.sealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now,
        "version": VERSION,
    });
    if let Some(c) = &s.cluster {
        body["cluster_name"] = json!(c.cluster_name);
        body["cluster_id"] = json!(c.cluster_id);
    }
    Ok(Reply::Raw(status, body))
}

async fn init(core: &Core, req: &Request) -> ApiResult<Reply> {
    let p = &req.params;
    // Before anything is made: a trail that cannot take init's record would cost its shares.
    if !core.is_initialized() {
        core.auditor
            .probe()
            .await
            .map_err(|e| ApiError::AuditUnavailable(e.to_string()))?;
    }
    if p.str("pgp_keys")?.is_some() || p.str("root_token_pgp_key")?.is_some_and(|k| !k.is_empty()) {
        return Err(ApiError::bad("PGP-encrypted shares are not supported"));
    }
    if p.u32("stored_shares")?.is_some_and(|n| n > 0) || p.u32("recovery_shares")?.is_some_and(|n| n > 0) {
        return Err(ApiError::bad(
            "stored and recovery shares need an auto-unseal seal, which is not configured",
        ));
    }
    let shares = p
        .u32("secret_shares")?
        .ok_or_else(|| ApiError::bad("missing secret_shares"))?;
    let threshold = p
        .u32("secret_threshold")?
        .ok_or_else(|| ApiError::bad("missing secret_threshold"))?;
    let out = core.init(shares, threshold, None).await?;
    let keys: Vec<String> = out.shares.iter().map(|s| hex::encode(&s[..])).collect();
    let keys_b64: Vec<String> = out.shares.iter().map(|s| STANDARD.encode(&s[..])).collect();
    Ok(Reply::Raw(
        StatusCode::OK,
        json!({ "keys": keys, "keys_base64": keys_b64, "root_token": out.root_token.as_str() }),
    ))
}

/// Accepts a share as hex (Vault's `keys`) or base64 (`keys_base64`).
fn decode_share(s: &str) -> ApiResult<Zeroizing<Vec<u8>>> {
    let s = s.trim();
    if let Ok(b) = hex::decode(s) {
        return Ok(Zeroizing::new(b));
    }
    STANDARD
        .decode(s)
        .map(Zeroizing::new)
        .map_err(|_| ApiError::bad("invalid unseal key: not hex or base64"))
}

async fn unseal(core: &Core, req: &Request) -> ApiResult<Reply> {
    let p = &req.params;
    if p.bool("reset")?.unwrap_or(false) {
        core.reset_progress();
        return Ok(Reply::Raw(StatusCode::OK, seal_status_json(&core.seal_status())));
    }
    let key = p.str("key")?.ok_or_else(|| ApiError::bad("missing key"))?;
    if !core.is_initialized() {
        return Err(ApiError::bad("Vault is not initialized"));
    }
    core.unseal(decode_share(key)?).await?;
    Ok(Reply::Raw(StatusCode::OK, seal_status_json(&core.seal_status())))
}

/// Prometheus text (Vault's `sys/metrics?format=prometheus`; the only format served).
fn metrics(req: &Request) -> ApiResult<Reply> {
    match req.query.get("format").map(String::as_str) {
        None | Some("prometheus") => {}
        Some(other) => {
            return Err(ApiError::bad(format!(
                "unsupported metrics format {other:?}: only \"prometheus\""
            )));
        }
    }
    crate::telemetry::get()
        .render()
        .map(Reply::Text)
        .ok_or_else(|| ApiError::Internal("metrics are not available in this process".into()))
}

/// Authenticated `sys/` paths; `rest` follows `sys/`.
pub(crate) async fn handle(core: &Core, u: &Unsealed, caller: &Caller, rest: &str, req: Request) -> ApiResult<Reply> {
    let tenant_path = rest == "mounts"
        || rest.starts_with("mounts/")
        || rest == "policy"
        || rest.starts_with("policy/")
        || rest == "policies/acl"
        || rest.starts_with("policies/acl/")
        || rest == "capabilities-self";
    if !req.namespace.is_empty() && !tenant_path {
        return Err(ApiError::bad(format!(
            "sys/{rest} is only available in the root namespace"
        )));
    }
    match rest {
        _ if rest == "namespaces" || rest.starts_with("namespaces/") => {
            let r = rest["namespaces".len()..].to_owned();
            crate::namespaces::handle(core, u, caller, &r, req).await
        }
        _ if rest == "audit" || rest.starts_with("audit/") => {
            let r = rest["audit".len()..].to_owned();
            crate::audit_api::handle(core, u, &r, req).await
        }
        "metrics" if req.op == Operation::Read => metrics(&req),
        "seal" if req.op == Operation::Write => {
            core.seal();
            tracing::warn!("sealed by request {}", req.request_id);
            Ok(Reply::NoContent)
        }
        "capabilities-self" if req.op == Operation::Write => capabilities_self(caller, &req),
        _ if rest == "mounts" || rest.starts_with("mounts/") => {
            let r = rest["mounts".len()..].to_owned();
            mounts::handle(core, &r, req).await
        }
        _ if rest == "policy" || rest.starts_with("policy/") => {
            let r = rest["policy".len()..].to_owned();
            policies::handle(core, &r, req, true).await
        }
        _ if rest == "policies/acl" || rest.starts_with("policies/acl/") => {
            let r = rest["policies/acl".len()..].to_owned();
            policies::handle(core, &r, req, false).await
        }
        _ => Err(ApiError::UnsupportedPath),
    }
}

fn capabilities_self(caller: &Caller, req: &Request) -> ApiResult<Reply> {
    let paths = match req.params.str_list("paths")? {
        Some(p) => p,
        None => vec![req.params.required_str("path")?.to_owned()],
    };
    let mut data = serde_json::Map::new();
    let mut last = Vec::new();
    for p in &paths {
        let names = match crate::http::acl_path(caller, req, p.trim_start_matches('/')) {
            _ if caller.is_root() => vec!["root"],
            Some(path) => caller.acl.capabilities(&path).names(),
            None => Vec::new(),
        };
        let names = if names.is_empty() { vec!["deny"] } else { names };
        last = names.clone();
        data.insert(p.clone(), json!(names));
    }
    if paths.len() == 1 {
        data.insert("capabilities".into(), json!(last));
    }
    Ok(Reply::SysData(Value::Object(data)))
}
