//! What goes into an audit record, taken from a request and its answer.
//! Never plaintext or key material; sensitive values (ciphertexts, AAD,
//! token ids) only as HMAC-SHA256 under the audit key.

use std::net::SocketAddr;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::core::Core;
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};
use crate::mounts;
use crate::tokens::Caller;
use crate::transit::ItemOut;

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
    hm: BTreeMap<&'static str, String>,
    batch: usize,
}

/// One record as written to the trail (typed: built and serialised per request).
#[derive(Serialize)]
///
/// Kept short, as a trail grows by one per request: `kind` is left out for a
/// response (the most common), and the node is its writer session's (see
/// `Reader::open`, which puts both back).
pub(crate) struct Record<'a> {
    v: u8,
    #[serde(skip_serializing_if = "is_response")]
    kind: &'static str,
    t: i64,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    who: Option<&'a str>,
    ns: &'a str,
    op: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    src: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    hm: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "is_zero")]
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    err: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    st: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ver: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<Item>>,
}

/// A batch item's outcome: its key version, or its error.
#[derive(Serialize)]
#[serde(untagged)]
enum Item {
    Failed { e: String },
    Done { v: u64 },
}

fn is_response(kind: &&str) -> bool {
    *kind == "response"
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
        let mut hm = BTreeMap::new();
        for field in SENSITIVE {
            if let Some(h) = req
                .params
                .str(field)
                .ok()
                .flatten()
                .and_then(|v| core.auditor.hmac(v.as_bytes()))
            {
                hm.insert(field, h);
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

    fn base<'a>(&'a self, core: &'a Core, kind: &'static str, who: Option<&'a str>) -> Record<'a> {
        Record {
            v: 1,
            kind,
            t: core.now(),
            id: &self.id,
            who,
            ns: &self.ns,
            op: self.op,
            path: &self.path,
            key: self.key.as_deref(),
            src: self.source(),
            hm: self.hm.clone(),
            n: self.batch,
            err: None,
            st: None,
            ver: None,
            items: None,
        }
    }

    /// Before a change: the intent must be durable, or nothing happens.
    pub(crate) async fn intent(&self, core: &Core, caller: &Caller, mutating: bool) -> ApiResult<()> {
        if !mutating || !core.auditor.enabled() {
            return Ok(());
        }
        let rec = self.base(core, "request", Some(&caller.token.accessor));
        core.auditor
            .record(&rec, true)
            .await
            .map_err(|e| ApiError::AuditUnavailable(e.to_string()))
    }

    /// The outcome record, and for decrypts each item's success (for analytics).
    pub(crate) fn finish<'a>(
        &'a self,
        core: &'a Core,
        result: &'a ApiResult<Reply>,
        who: Option<&'a str>,
    ) -> (Record<'a>, Option<Vec<bool>>) {
        let mut m = self.base(core, "response", who);
        let (status, data, auth) = match result {
            Ok(Reply::Data(d)) | Ok(Reply::SysData(d)) => (StatusCode::OK, Some(d), None),
            Ok(Reply::Auth(a)) => (StatusCode::OK, None, Some(a)),
            Ok(Reply::NoContent) => (StatusCode::NO_CONTENT, None, None),
            Ok(Reply::Raw(s, _)) => (*s, None, None),
            Ok(Reply::Text(_)) => (StatusCode::OK, None, None),
            Ok(Reply::Batch(b)) => (b.status, None, None),
            Err(e) => {
                m.err = Some(clip(&e.to_string()));
                (e.status(), None, None)
            }
        };
        m.st = Some(status.as_u16());
        if let Some(d) = data {
            m.ver = d.get("key_version");
            if let Some(h) = d
                .get("ciphertext")
                .and_then(Value::as_str)
                .and_then(|c| core.auditor.hmac(c.as_bytes()))
            {
                m.hm.insert("ciphertext_out", h);
            }
        }
        let token = auth.and_then(|a| a.get("client_token")).and_then(Value::as_str);
        if let Some(h) = token.and_then(|t| core.auditor.hmac(t.as_bytes())) {
            m.hm.insert("token_out", h);
        }
        m.items = match result {
            Ok(Reply::Batch(b)) => Some(
                b.items
                    .iter()
                    .map(|it| match &it.out {
                        Err(e) => Item::Failed { e: clip(e) },
                        Ok(ItemOut::Ciphertext { key_version, .. }) => Item::Done {
                            v: u64::from(*key_version),
                        },
                        // Decrypt, HMAC and verify results carry no version.
                        Ok(_) => Item::Done { v: 1 },
                    })
                    .collect(),
            ),
            _ => None,
        };
        let decrypts = (self.action.as_deref() == Some("decrypt")).then(|| match &m.items {
            Some(items) => items.iter().map(|i| matches!(i, Item::Done { .. })).collect(),
            None => vec![status.is_success()],
        });
        (m, decrypts)
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
        "v": 1, "t": core.now(), "id": id,
        "op": clip(method), "path": clip(path), "src": remote.map(|r| r.ip().to_string()).unwrap_or_default(),
        "st": err.status().as_u16(), "err": clip(&err.to_string()),
    })
}

/// A change the server makes on its own (a scheduled rotation, or a key
/// version at its encryption limit), recorded durably before it is made:
/// if the trail cannot take it, the change is not made.
pub(crate) async fn rotation(core: &Core, ns: &str, key: Option<&str>, from: Option<u32>, why: &str) -> ApiResult<()> {
    if !core.auditor.enabled() {
        return Ok(());
    }
    let mut rec = serde_json::Map::new();
    rec.insert("v".into(), json!(1));
    rec.insert("kind".into(), json!("rotation"));
    rec.insert("t".into(), json!(core.now()));
    rec.insert("ns".into(), json!(ns));
    if let Some(k) = key {
        rec.insert("key".into(), json!(k));
    }
    if let Some(v) = from {
        rec.insert("ver".into(), json!(v));
    }
    rec.insert("why".into(), json!(why));
    core.auditor
        .record(&rec, true)
        .await
        .map_err(|e| ApiError::AuditUnavailable(e.to_string()))
}
