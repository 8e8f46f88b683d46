//! HTTP plumbing: turns an axum request into a [`Request`], finds who is
//! calling and what they may do, dispatches by path, and writes Vault's
//! response envelope or `{"errors": [...]}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use coffer_core::policy::Capability;
use http_body_util::BodyExt;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::audit_record::AuditRecord;
use crate::config::Limits;
use crate::core::{Core, ROOT_NS, new_uuid};
use crate::error::{ApiError, ApiResult};
use crate::hygiene::{Wiped, WipingWriter, extend_wiped, wipe_value};
use crate::limits::{Budget, RateLimiter, Share};
use crate::params::Params;
use crate::serve::ConnInfo;
use crate::tokens::Caller;
use crate::{cert_auth, mounts, sys, tokens, transit};

/// What every request handler shares.
pub(crate) struct AppState {
    pub(crate) core: Arc<Core>,
    pub(crate) limits: Limits,
    pub(crate) limiter: RateLimiter,
    pub(crate) budget: Budget,
}

impl AppState {
    pub(crate) fn new(core: Arc<Core>, limits: Limits) -> Self {
        AppState {
            limiter: RateLimiter::new(&limits),
            budget: Budget::new(&limits),
            core,
            limits,
        }
    }
}

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
    /// The client certificate chain the TLS layer verified (mTLS), leaf first.
    pub(crate) peer: Option<Arc<[CertificateDer<'static>]>>,
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
    /// 200 with a Prometheus text exposition.
    Text(String),
    /// A batch's results, with their status (200, or the partial-failure code).
    Batch(transit::BatchResults),
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(entry).with_state(state)
}

async fn entry(State(app): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    let started = Instant::now();
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let tls = conn.as_ref().is_some_and(|c| c.tls);
    let request_id = new_uuid();
    let result = handle(app, req, conn, request_id.clone()).await;
    let mut resp = match result {
        Ok(reply) => frame(reply, &request_id),
        Err(e) => {
            if e.status().is_server_error() && e.status() != StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(request_id, error = %e, "request failed");
            }
            let mut r = json_response(e.status(), json!({ "errors": e.messages() }));
            if let Some(secs) = e.retry_after() {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    };
    security_headers(resp.headers_mut(), tls);
    crate::telemetry::get().request(resp.status().as_u16(), started.elapsed());
    resp
}

/// Headers on every response; HSTS only over TLS, where browsers honour it.
fn security_headers(h: &mut HeaderMap, tls: bool) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

async fn handle(
    app: Arc<AppState>,
    req: axum::extract::Request,
    conn: Option<ConnInfo>,
    request_id: String,
) -> ApiResult<Reply> {
    let timeout = app.limits.request_timeout;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let (parts, body) = req.into_parts();
    let remote = conn.as_ref().map(|c| c.remote);
    // Every answer below leaves after its record: a refusal before the handler runs gets one here.
    let refuse = |e: ApiError| refused(&app, &request_id, &parts, remote, e);
    // Held until the answer: the body, then the JSON parsed from it.
    let mut share = app.budget.share();
    let read = read_body(body, &parts.headers, app.limits.max_request_bytes, &mut share);
    let body = match within(deadline, read).await {
        Some(Ok(body)) => body,
        Some(Err(e)) => return refuse(e).await,
        None => return refuse(ApiError::Timeout(timeout)).await,
    };
    // Parsed JSON takes several times its text: bound the values before parsing, and hold room for them.
    let values = json_values_bound(&body);
    let most = app.limits.max_batch_items.saturating_mul(16).max(MIN_JSON_VALUES);
    if values > most {
        return refuse(ApiError::TooManyValues { limit: most }).await;
    }
    if let Err(e) = share.cover(body.capacity().saturating_add(values.saturating_mul(JSON_VALUE_BYTES))) {
        return refuse(e).await;
    }
    let parsed = parse_request(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        request_id.clone(),
        conn,
    )
    .and_then(|req| match req.params.0.get("batch_input") {
        Some(Value::Array(items)) if items.len() > app.limits.max_batch_items => Err(ApiError::BatchTooLarge {
            items: items.len(),
            limit: app.limits.max_batch_items,
        }),
        _ => Ok(req),
    });
    drop(body);
    let req = match parsed {
        Ok(req) => req,
        Err(e) => return refuse(e).await,
    };
    // The handler runs to completion in its own task even if the client's
    // deadline passes first, so a store write and the cache update after it
    // never come apart; it records its own outcome then. Boxed: the task
    // would otherwise move the handler's whole state (some 8 KiB) several times.
    let task = tokio::spawn(Box::pin({
        let app = app.clone();
        async move {
            // The parsed request lives here until the handler ends, past a deadline too.
            let _share = share;
            audited(&app, req).await
        }
    }));
    match within(deadline, task).await {
        Some(Ok(result)) => result,
        Some(Err(e)) => refuse(ApiError::Internal(format!("request handler failed: {e}"))).await,
        None => refuse(ApiError::Timeout(timeout)).await,
    }
}

/// Runs `work` until `deadline`, if there is one; `None` when it passed first.
async fn within<F: Future>(deadline: Option<tokio::time::Instant>, work: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, work).await.ok(),
        None => Some(work.await),
    }
}

/// Records a request answered without its handler's own record (unparsable,
/// too large, too slow, or its handler failed), then answers with `e`.
async fn refused(
    app: &AppState,
    request_id: &str,
    parts: &axum::http::request::Parts,
    remote: Option<SocketAddr>,
    e: ApiError,
) -> ApiResult<Reply> {
    let core = &app.core;
    let rec = crate::audit_record::unparsed(core, request_id, parts.method.as_str(), parts.uri.path(), remote, &e);
    match core.auditor.record(&rec, core.is_initialized()).await {
        Ok(()) => Err(e),
        Err(a) => Err(ApiError::AuditUnavailable(a.to_string())),
    }
}

/// JSON values allowed in a body at least, whatever `max_batch_items` says.
const MIN_JSON_VALUES: usize = 100_000;
/// Room held per JSON value for its parsed form (a `Value`, a map entry, a small string).
const JSON_VALUE_BYTES: usize = 96;
/// Room taken up front for a body of declared length; more as it arrives.
const BODY_PRESIZE_MAX: usize = 64 * 1024;

/// Reads the body into a buffer that is wiped after use, refusing more than
/// `limit` bytes, and holding its size in `share` as it grows.
async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    limit: usize,
    share: &mut Share,
) -> ApiResult<Zeroizing<Vec<u8>>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // A declared length is only a claim: take room for it as the bytes come.
    let presize = declared.map_or(0, |n| (n as usize).min(BODY_PRESIZE_MAX));
    share.cover(presize)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(presize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad("failed to read the request body"))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let need = buf.len() + data.len();
            if need > buf.capacity() {
                // Growing doubles the buffer at least, and the old one lives until copied.
                share.cover(buf.capacity() + need.max(buf.capacity() * 2))?;
            }
            extend_wiped(&mut buf, &data);
        }
    }
    Ok(buf)
}

/// An upper bound on the values JSON text holds: one, plus one per separator
/// or opening outside strings. Not a parser; invalid JSON fails later.
fn json_values_bound(text: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (1usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b':' | b'[' | b'{' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// A JSON response whose body (and the value it came from) is wiped once sent.
fn json_response(status: StatusCode, mut v: Value) -> Response {
    // One pass; a growing buffer wipes what it leaves behind.
    let mut w = WipingWriter(Zeroizing::new(Vec::with_capacity(1024)));
    let _ = serde_json::to_writer(&mut w, &v);
    wipe_value(&mut v);
    bytes_response(status, std::mem::take(&mut *w.0))
}

/// A JSON body that is wiped once hyper has written it.
fn bytes_response(status: StatusCode, buf: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(Bytes::from_owner(Wiped(buf))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
        Reply::Data(d) => json_response(StatusCode::OK, envelope(d, Value::Null)),
        Reply::SysData(d) => {
            let mut body = envelope(d.clone(), Value::Null);
            if let (Value::Object(top), Value::Object(data)) = (&mut body, d) {
                for (k, v) in data {
                    top.entry(k).or_insert(v);
                }
            }
            json_response(StatusCode::OK, body)
        }
        Reply::Auth(a) => json_response(StatusCode::OK, envelope(Value::Null, a)),
        Reply::NoContent => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Reply::Raw(s, v) => json_response(s, v),
        Reply::Batch(b) => {
            // Fields in sorted order, as the envelopes built from a map serialise.
            #[derive(serde::Serialize)]
            struct Envelope<'a> {
                auth: (),
                data: &'a transit::BatchResults,
                lease_duration: u8,
                lease_id: &'static str,
                renewable: bool,
                request_id: &'a str,
                warnings: (),
                wrap_info: (),
            }
            let body = Envelope {
                auth: (),
                data: &b,
                lease_duration: 0,
                lease_id: "",
                renewable: false,
                request_id,
                warnings: (),
                wrap_info: (),
            };
            let mut w = WipingWriter(Zeroizing::new(Vec::with_capacity(64 + 96 * b.items.len())));
            let _ = serde_json::to_writer(&mut w, &body);
            bytes_response(b.status, std::mem::take(&mut *w.0))
        }
        Reply::Text(t) => {
            let mut r = Response::new(Body::from(t));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    }
}

fn parse_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: String,
    conn: Option<ConnInfo>,
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
        remote: conn.as_ref().map(|c| c.remote),
        peer: conn.and_then(|c| c.peer),
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
async fn audited(app: &AppState, mut req: Request) -> ApiResult<Reply> {
    let core = &app.core;
    let resolved = if is_public(&req.path) {
        Ok(())
    } else {
        resolve_namespace(core, &mut req).await
    };
    let rec = AuditRecord::begin(core, &req);
    let mut who = None;
    let result = match resolved {
        Ok(()) => dispatch(app, req, &rec, &mut who).await,
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

async fn dispatch(app: &AppState, req: Request, rec: &AuditRecord, who: &mut Option<String>) -> ApiResult<Reply> {
    let core = &app.core;
    if is_public(&req.path) {
        return sys::public(core, req).await;
    }
    let u = core.unsealed()?;
    if req.path == "auth/cert/login" {
        return cert_auth::login(core, &u, &req, &app.limiter).await;
    }
    // No token over mTLS: the client certificate's role is the identity.
    let caller = match (&req.token, &req.peer) {
        (None, Some(_)) => cert_auth::caller(core, &req).await?,
        _ => tokens::authenticate(core, &u, &req).await?,
    };
    *who = Some(caller.token.accessor.clone());
    if app.limiter.enabled() {
        app.limiter
            .check(&cert_auth::rate_key(&caller.token))
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    }
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
    if let Some(rest) = req.path.strip_prefix("auth/cert/") {
        let rest = rest.to_owned();
        authorize(&caller, &req, capability_for(req.op, false))?;
        rec.intent(core, &caller, matches!(req.op, Operation::Write | Operation::Delete))
            .await?;
        return cert_auth::handle(core, &rest, req).await;
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

/// The path `caller`'s policies name `path` by in `req`'s tenant: as is in
/// its own tenant, prefixed from the root namespace; `None` from another tenant.
pub(crate) fn acl_path(caller: &Caller, req: &Request, path: &str) -> Option<String> {
    if caller.token.namespace == req.namespace {
        Some(path.to_owned())
    } else if caller.token.namespace == ROOT_NS {
        Some(format!("{}/{}", req.namespace, path))
    } else {
        None
    }
}

/// Checks the caller's ACL. A token acts only in its own tenant; a root
/// namespace token reaches into a tenant through paths prefixed with it.
fn authorize(caller: &Caller, req: &Request, cap: Capability) -> ApiResult<()> {
    let acl_path = acl_path(caller, req, &req.path).ok_or(ApiError::PermissionDenied)?;
    let caps = if req.op == Operation::List {
        caller.acl.list_capabilities(&acl_path)
    } else {
        caller.acl.capabilities(&acl_path)
    };
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
