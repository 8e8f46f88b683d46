//! What goes into an audit record, taken from a request and its answer.
//! Never plaintext or key material; sensitive values (ciphertexts, AAD,
//! token ids) only as HMAC-SHA256 under the audit key.

use std::net::SocketAddr;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::core::Core;
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};
use crate::mounts;
use crate::tokens::Caller;

/// Request fields recorded only as an HMAC.
const SENSITIVE: [&str; 4] = ["ciphertext", "associated_data", "token", "hmac"];

pub(crate) struct AuditRecord {
    id: String,
    op: &'static str,
    path: String,
    ns: String,
    src: Option<SocketAddr>,
    action: Option<String>,
    key: Option<String>,
    health: bool,
    hm: Map<String, Value>,
    batch: usize,
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Read => "read",
        Operation::List => "list",
        Operation::Write => "write",
        Operation::Delete => "delete",
    }
}

fn clip(s: &str) -> String {
    s.chars().take(256).collect()
}

impl AuditRecord {
    pub(crate) fn begin(core: &Core, req: &Request) -> Self {
        let mut hm = Map::new();
        for field in SENSITIVE {
            if let Some(h) = req
                .params
                .str(field)
                .ok()
                .flatten()
                .and_then(|v| core.auditor.hmac(v.as_bytes()))
            {
                hm.insert(field.to_owned(), json!(h));
            }
        }
        let (action, key) = match mounts::resolve(core, &req.namespace, &req.path) {
            Some((_, rest)) => {
                let mut parts = rest.split('/');
                let action = parts.next().map(str::to_owned);
                let key = match action.as_deref() {
                    Some("datakey") => parts.nth(1),
                    _ => parts.next(),
                };
                (action, key.map(str::to_owned))
            }
            None => (None, None),
        };
        AuditRecord {
            id: req.request_id.clone(),
            op: op_name(req.op),
            path: clip(&req.path),
            ns: req.namespace.clone(),
            src: req.remote,
            action,
            key,
            health: matches!(req.path.as_str(), "sys/health" | "sys/seal-status" | "sys/leader"),
            hm,
            batch: req.params.array("batch_input").ok().flatten().map_or(0, Vec::len),
        }
    }

    pub(crate) fn source(&self) -> String {
        self.src.map(|s| s.ip().to_string()).unwrap_or_default()
    }

    /// Health checks never wait (they must answer while the trail is stuck),
    /// and nothing can be sealed for the trail before initialisation.
    pub(crate) fn must_wait(&self, core: &Core) -> bool {
        core.is_initialized() && !self.health
    }

    fn base(&self, core: &Core, kind: &str, who: Option<&str>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("v".into(), json!(1));
        m.insert("kind".into(), json!(kind));
        m.insert("t".into(), json!(core.now()));
        m.insert("id".into(), json!(self.id));
        m.insert("node".into(), json!(core.auditor.node));
        if let Some(w) = who {
            m.insert("who".into(), json!(w));
        }
        m.insert("ns".into(), json!(self.ns));
        m.insert("op".into(), json!(self.op));
        m.insert("path".into(), json!(self.path));
        if let Some(k) = &self.key {
            m.insert("key".into(), json!(k));
        }
        m.insert("src".into(), json!(self.source()));
        if !self.hm.is_empty() {
            m.insert("hm".into(), Value::Object(self.hm.clone()));
        }
        if self.batch > 0 {
            m.insert("n".into(), json!(self.batch));
        }
        m
    }

    /// Before a change: the intent must be durable, or nothing happens.
    pub(crate) async fn intent(&self, core: &Core, caller: &Caller, mutating: bool) -> ApiResult<()> {
        if !mutating || !core.auditor.enabled() {
            return Ok(());
        }
        let rec = Value::Object(self.base(core, "request", Some(&caller.token.accessor)));
        core.auditor
            .record(&rec, true)
            .await
            .map_err(|e| ApiError::AuditUnavailable(e.to_string()))
    }

    /// The outcome record, and for decrypts each item's success (for analytics).
    pub(crate) fn finish(
        &self,
        core: &Core,
        result: &ApiResult<Reply>,
        who: Option<&str>,
    ) -> (Value, Option<Vec<bool>>) {
        let mut m = self.base(core, "response", who);
        let (status, data, auth) = match result {
            Ok(Reply::Data(d)) | Ok(Reply::SysData(d)) => (StatusCode::OK, Some(d), None),
            Ok(Reply::DataWithStatus(s, d)) => (*s, Some(d), None),
            Ok(Reply::Auth(a)) => (StatusCode::OK, None, Some(a)),
            Ok(Reply::NoContent) => (StatusCode::NO_CONTENT, None, None),
            Ok(Reply::Raw(s, _)) => (*s, None, None),
            Err(e) => {
                m.insert("err".into(), json!(clip(&e.to_string())));
                (e.status(), None, None)
            }
        };
        m.insert("st".into(), json!(status.as_u16()));
        let mut out_hm = Map::new();
        if let Some(d) = data {
            if let Some(v) = d.get("key_version") {
                m.insert("ver".into(), v.clone());
            }
            if let Some(h) = d
                .get("ciphertext")
                .and_then(Value::as_str)
                .and_then(|c| core.auditor.hmac(c.as_bytes()))
            {
                out_hm.insert("ciphertext_out".into(), json!(h));
            }
        }
        let token = auth.and_then(|a| a.get("client_token")).and_then(Value::as_str);
        if let Some(h) = token.and_then(|t| core.auditor.hmac(t.as_bytes())) {
            out_hm.insert("token_out".into(), json!(h));
        }
        if !out_hm.is_empty() {
            let hm = m.entry("hm").or_insert_with(|| json!({}));
            if let Value::Object(h) = hm {
                h.extend(out_hm);
            }
        }
        let items: Option<Vec<Value>> = data
            .and_then(|d| d.get("batch_results"))
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .map(|r| match r.get("error").and_then(Value::as_str) {
                        Some(e) => json!({ "e": clip(e) }),
                        None => json!({ "v": r.get("key_version").cloned().unwrap_or(json!(1)) }),
                    })
                    .collect()
            });
        let decrypts = (self.action.as_deref() == Some("decrypt")).then(|| match &items {
            Some(items) => items.iter().map(|i| i.get("e").is_none()).collect(),
            None => vec![status.is_success()],
        });
        if let Some(items) = items {
            m.insert("items".into(), Value::Array(items));
        }
        (Value::Object(m), decrypts)
    }
}

/// A request that could not even be parsed still leaves a record.
pub(crate) fn unparsed(
    core: &Core,
    id: &str,
    method: &str,
    path: &str,
    remote: Option<SocketAddr>,
    err: &ApiError,
) -> Value {
    json!({
        "v": 1, "kind": "response", "t": core.now(), "id": id, "node": core.auditor.node,
        "op": clip(method), "path": clip(path), "src": remote.map(|r| r.ip().to_string()).unwrap_or_default(),
        "st": err.status().as_u16(), "err": clip(&err.to_string()),
    })
}
