//! HTTP plumbing: turns an axum request into a [`Request`], finds who is
//! calling and what they may do, dispatches by path, and writes Vault's
//! response envelope or `{"errors": [...]}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use coffer_core::policy::Capability;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::audit_record::AuditRecord;
use crate::core::{Core, ROOT_NS, new_uuid};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::tokens::Caller;
use crate::{mounts, sys, tokens, transit};

/// Largest request body accepted, as Vault's default `max_request_size`.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What the client asked to do, in Vault's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Read,
    List,
    /// POST or PUT; whether it is a create or an update is decided per path.
    Write,
    Delete,
}

pub(crate) struct Request {
    pub(crate) op: Operation,
    /// Relative to the namespace, without `/v1/` or a leading slash.
    pub(crate) path: String,
    pub(crate) namespace: String,
    pub(crate) params: Params,
    pub(crate) query: HashMap<String, String>,
    pub(crate) token: Option<Zeroizing<String>>,
    pub(crate) request_id: String,
    #[allow(dead_code)]
    pub(crate) remote: Option<SocketAddr>,
}

/// A handler's answer before it is framed.
pub(crate) enum Reply {
    /// 200 with the envelope's `data`.
    Data(Value),
    /// 200 with the envelope's `data` also copied to the top level (Vault's legacy sys shape).
    SysData(Value),
    /// 200 with the envelope's `auth`.
    Auth(Value),
    /// 204.
    NoContent,
    /// A status and body written as is (health, seal status, init).
    Raw(StatusCode, Value),
    /// The envelope's `data` with a status other than 200 (partial batch failures).
    DataWithStatus(StatusCode, Value),
}

pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .fallback(entry)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(core)
}

async fn entry(
    State(core): State<Arc<Core>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = new_uuid();
    let result = match parse_request(&method, &uri, &headers, &body, request_id.clone(), Some(remote)) {
        Ok(req) => audited(&core, req).await,
        Err(e) => {
            let rec = crate::audit_record::unparsed(&core, &request_id, method.as_str(), uri.path(), remote, &e);
            match core.auditor.record(&rec, core.is_initialized()).await {
                Ok(()) => Err(e),
                Err(a) => Err(ApiError::AuditUnavailable(a.to_string())),
            }
        }
    };
    let mut resp = match result {
        Ok(reply) => frame(reply, &request_id),
        Err(e) => {
            if e.status().is_server_error() && e.status() != StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(request_id, error = %e, "request failed");
            }
            (e.status(), axum::Json(json!({ "errors": e.messages() }))).into_response()
        }
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn frame(reply: Reply, request_id: &str) -> Response {
    let envelope = |data: Value, auth: Value| {
        json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": null,
            "auth": auth,
        })
    };
    match reply {
        Reply::Data(d) => (StatusCode::OK, axum::Json(envelope(d, Value::Null))).into_response(),
        Reply::DataWithStatus(s, d) => (s, axum::Json(envelope(d, Value::Null))).into_response(),
        Reply::SysData(d) => {
            let mut body = envelope(d.clone(), Value::Null);
            if let (Value::Object(top), Value::Object(data)) = (&mut body, d) {
                for (k, v) in data {
                    top.entry(k).or_insert(v);
                }
            }
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Reply::Auth(a) => (StatusCode::OK, axum::Json(envelope(Value::Null, a))).into_response(),
        Reply::NoContent => StatusCode::NO_CONTENT.into_response(),
        Reply::Raw(s, v) => (s, axum::Json(v)).into_response(),
    }
}

fn parse_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: String,
    remote: Option<SocketAddr>,
) -> ApiResult<Request> {
    let raw = uri.path();
    let path = raw.strip_prefix("/v1/").ok_or(ApiError::UnsupportedPath)?;
    if path.is_empty()
        || path.len() > 1024
        || path.starts_with('/')
        || path.split('/').any(|s| s == "." || s == "..")
        || path.contains("//")
    {
        return Err(ApiError::UnsupportedPath);
    }
    let query: HashMap<String, String> = match uri.query() {
        None => HashMap::new(),
        Some(q) => serde_urlencoded::from_str(q).map_err(|_| ApiError::bad("malformed query string"))?,
    };
    let list_query = query.get("list").is_some_and(|v| v == "true" || v == "1");
    let op = match method.as_str() {
        "GET" | "HEAD" if list_query => Operation::List,
        "GET" | "HEAD" => Operation::Read,
        "LIST" => Operation::List,
        "POST" | "PUT" | "PATCH" => Operation::Write,
        "DELETE" => Operation::Delete,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let mut params = if op == Operation::Write || op == Operation::Delete {
        Params::from_body(body)?
    } else {
        Params::default()
    };
    if op == Operation::Read || op == Operation::List {
        for (k, v) in &query {
            if k != "list" {
                params.insert(k, Value::String(v.clone()));
            }
        }
    }
    let token = header_str(headers, "x-vault-token")?
        .or(header_str(headers, "authorization")?.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned)))
        .filter(|t| !t.is_empty())
        .map(Zeroizing::new);
    let namespace = header_str(headers, "x-vault-namespace")?.unwrap_or_default();
    let namespace = namespace.trim_matches('/').to_owned();
    let path = path.trim_end_matches('/').to_owned();
    Ok(Request {
        op,
        path,
        namespace,
        params,
        query,
        token,
        request_id,
        remote,
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> ApiResult<Option<String>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|_| ApiError::bad(format!("header {name} is not valid text"))),
    }
}

/// Unauthenticated paths, answered whether sealed or not.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "sys/init" | "sys/unseal" | "sys/seal-status" | "sys/health" | "sys/leader"
    )
}

/// Paths that also need `sudo`, as in Vault.
fn needs_sudo(path: &str) -> bool {
    matches!(
        path,
        "sys/seal" | "auth/token/create-orphan" | "auth/token/revoke-orphan"
    ) || path.starts_with("sys/mounts")
        || path.starts_with("sys/audit")
        || path.starts_with("sys/namespaces")
}

/// Runs a request between its audit records: an intent record before any
/// change (inside `dispatch`), and the outcome before the answer leaves.
async fn audited(core: &Arc<Core>, mut req: Request) -> ApiResult<Reply> {
    let resolved = if is_public(&req.path) {
        Ok(())
    } else {
        resolve_namespace(core, &mut req).await
    };
    let rec = AuditRecord::begin(core, &req);
    let mut who = None;
    let result = match resolved {
        Ok(()) => dispatch(core, req, &rec, &mut who).await,
        Err(e) => Err(e),
    };
    let (record, decrypts) = rec.finish(core, &result, who.as_deref());
    core.auditor
        .record(&record, rec.must_wait(core))
        .await
        .map_err(|e| ApiError::AuditUnavailable(e.to_string()))?;
    if let Some(outcomes) = decrypts {
        core.auditor
            .observe_decrypts(
                who.as_deref().unwrap_or("anonymous"),
                &rec.source(),
                core.now(),
                &outcomes,
            )
            .await;
    }
    result
}

async fn dispatch(core: &Arc<Core>, req: Request, rec: &AuditRecord, who: &mut Option<String>) -> ApiResult<Reply> {
    if is_public(&req.path) {
        return sys::public(core, req).await;
    }
    let u = core.unsealed()?;
    let caller = tokens::authenticate(core, &u, &req).await?;
    *who = Some(caller.token.accessor.clone());
    if let Some(rest) = req.path.strip_prefix("sys/") {
        let rest = rest.to_owned();
        authorize(&caller, &req, capability_for(req.op, false))?;
        rec.intent(core, &caller, req.op != Operation::Read && req.op != Operation::List)
            .await?;
        return sys::handle(core, &u, &caller, &rest, req).await;
    }
    if let Some(rest) = req.path.strip_prefix("auth/token/") {
        let rest = rest.to_owned();
        authorize(&caller, &req, capability_for(req.op, false))?;
        let mutating = req.op == Operation::Delete || (req.op == Operation::Write && !rest.starts_with("lookup"));
        rec.intent(core, &caller, mutating).await?;
        return tokens::handle(core, &u, &caller, &rest, req).await;
    }
    let (mount, rest) = mounts::resolve(core, &req.namespace, &req.path).ok_or(ApiError::UnsupportedPath)?;
    let creates = req.op == Operation::Write && transit::would_create(core, &u, &mount, &rest).await?;
    authorize(&caller, &req, capability_for(req.op, creates))?;
    let mutating = creates || req.op == Operation::Delete || (req.op == Operation::Write && rest.starts_with("keys/"));
    rec.intent(core, &caller, mutating).await?;
    transit::handle(core, &u, &mount, &rest, req).await
}

fn capability_for(op: Operation, creates: bool) -> Capability {
    match op {
        Operation::Read => Capability::Read,
        Operation::List => Capability::List,
        Operation::Write if creates => Capability::Create,
        Operation::Write => Capability::Update,
        Operation::Delete => Capability::Delete,
    }
}

/// Checks the caller's ACL. A token acts only in its own tenant; a root
/// namespace token reaches into a tenant through paths prefixed with it.
fn authorize(caller: &Caller, req: &Request, cap: Capability) -> ApiResult<()> {
    let acl_path = if caller.token.namespace == req.namespace {
        req.path.clone()
    } else if caller.token.namespace == ROOT_NS {
        format!("{}/{}", req.namespace, req.path)
    } else {
        return Err(ApiError::PermissionDenied);
    };
    let caps = caller.acl.capabilities(&acl_path);
    if !caps.contains(cap) || (needs_sudo(&req.path) && !caps.contains(Capability::Sudo)) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(())
}

/// Takes the tenant from the header, or from the path's first segment when
/// it names a tenant (`/v1/acme/transit/...`); refuses unknown or disabled ones.
async fn resolve_namespace(core: &Core, req: &mut Request) -> ApiResult<()> {
    if req.namespace.is_empty() {
        let Some((first, rest)) = req.path.split_once('/') else {
            return Ok(());
        };
        if matches!(first, "" | "sys" | "auth") || mounts::resolve(core, ROOT_NS, &req.path).is_some() {
            return Ok(());
        }
        if core.namespace(first).await?.is_none() {
            return Ok(());
        }
        req.namespace = first.to_owned();
        req.path = rest.to_owned();
    }
    match core.namespace(&req.namespace).await? {
        None => Err(ApiError::bad(format!("namespace {:?} does not exist", req.namespace))),
        Some(n) if n.disabled => Err(ApiError::TenantDisabled(n.name)),
        Some(_) => Ok(()),
    }
}
