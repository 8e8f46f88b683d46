//! `sys/audit/*`: read, verify and export the trail (sudo), list alerts,
//! rotate the record key. Also the offline verifier behind
//! `coffer audit verify --config`.

use serde_json::{Value, json};

use coffer_core::audit::{self, Finding, Report, Tamper};
use coffer_store::audit::AuditStore;

use crate::audit::{to_checkpoint, to_row};
use crate::core::{Core, Unsealed};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};

/// Records read per page.
const PAGE: u32 = 5000;

fn store(core: &Core) -> ApiResult<&AuditStore> {
    core.audit_store
        .as_ref()
        .ok_or_else(|| ApiError::bad("this server runs without an audit trail"))
}

/// `rest` follows `sys/audit`.
pub(crate) async fn handle(core: &Core, u: &Unsealed, rest: &str, req: Request) -> ApiResult<Reply> {
    match (rest.trim_start_matches('/'), req.op) {
        ("", Operation::Read) => Ok(Reply::SysData(json!({
            "coffer/": { "type": "coffer", "path": "coffer/", "local": false, "options": {},
                         "description": "hash-chained, encrypted, always on" }
        }))),
        ("tail", Operation::Read) => {
            let n = req.params.u32("n")?.unwrap_or(20).clamp(1, PAGE);
            let s = store(core)?;
            let after = match req.params.u64("after")? {
                Some(a) => a,
                None => s.last_record().await?.map_or(0, |r| r.seq.saturating_sub(u64::from(n))),
            };
            let rows = s.records_after(after, n).await?;
            let sessions = s.sessions().await?;
            let mut reader = core.audit_reader(u).await?;
            let records: Vec<Value> = rows.iter().map(|r| reader.open(&sessions, r)).collect();
            Ok(Reply::Data(json!({ "records": records })))
        }
        ("export", Operation::Read) => {
            let kind = req.params.str("kind")?.map(str::to_owned);
            let page = scan(core, u, &Scan::of(&req, kind.as_deref())?).await?;
            Ok(Reply::Data(
                json!({ "records": page.records, "next_after": page.next_after }),
            ))
        }
        ("alerts", Operation::Read) => {
            let page = scan(core, u, &Scan::of(&req, Some("alert"))?).await?;
            Ok(Reply::Data(
                json!({ "alerts": page.records, "next_after": page.next_after }),
            ))
        }
        ("verify", Operation::Read) => {
            let key = core
                .audit_keys()
                .await?
                .ok_or_else(|| ApiError::bad("not initialised"))?;
            let pk = hex::decode(&key.verify_key).map_err(|e| ApiError::Internal(e.to_string()))?;
            let mut report = verify_store(store(core)?, &pk).await?;
            if let Some(f) = report.finding.as_mut()
                && f.kind == Tamper::Edited
                && let Some(next) = edited_link(core, u, f.seq).await
            {
                f.seq = next;
            }
            // Unsealed, the server also holds the record keys: every record must open.
            if report.finding.is_none() {
                report.finding = first_unreadable(core, u).await?.map(|seq| Finding {
                    seq,
                    kind: Tamper::Unreadable,
                });
            }
            Ok(Reply::Data(report_json(&report)))
        }
        ("rotate", Operation::Write) => {
            let v = core.rotate_audit_key(u).await?;
            Ok(Reply::Data(json!({ "record_key_version": v })))
        }
        _ => Err(ApiError::UnsupportedPath),
    }
}

fn since_param(req: &Request) -> ApiResult<i64> {
    match req.params.str("since")? {
        None => Ok(0),
        Some(s) => {
            parse_time(s).ok_or_else(|| ApiError::bad(format!("since: {s:?} is neither unix seconds nor RFC 3339")))
        }
    }
}

pub(crate) fn parse_time(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Records one export call returns unless asked for fewer; the client pages with `after`.
const EXPORT_DEFAULT: u64 = 10_000;
/// A page also ends once its records reach this size as JSON.
const EXPORT_PAGE_BYTES: usize = 8 << 20;

/// What `export` and `alerts` ask for: records after `after`, newer than
/// `since`, of one kind, at most `limit` of them.
struct Scan<'a> {
    since: i64,
    kind: Option<&'a str>,
    after: u64,
    limit: usize,
}

impl<'a> Scan<'a> {
    fn of(req: &Request, kind: Option<&'a str>) -> ApiResult<Self> {
        let limit = req.params.u64("limit")?.unwrap_or(EXPORT_DEFAULT);
        if limit == 0 || limit > EXPORT_DEFAULT {
            return Err(ApiError::bad(format!("limit must be 1 to {EXPORT_DEFAULT}")));
        }
        Ok(Scan {
            since: since_param(req)?,
            kind,
            after: req.params.u64("after")?.unwrap_or(0),
            limit: limit as usize,
        })
    }
}

struct ScanPage {
    records: Vec<Value>,
    /// The `after` that continues where this page stopped; `None` at the end.
    next_after: Option<u64>,
}

async fn scan(core: &Core, u: &Unsealed, q: &Scan<'_>) -> ApiResult<ScanPage> {
    let s = store(core)?;
    let sessions = s.sessions().await?;
    let mut reader = core.audit_reader(u).await?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut after = q.after;
    loop {
        let rows = s.records_after(after, PAGE).await?;
        if rows.is_empty() {
            return Ok(ScanPage {
                records: out,
                next_after: None,
            });
        }
        for r in &rows {
            after = r.seq;
            let rec = reader.open(&sessions, r);
            // A record that does not open has no time or kind to filter on, and must not vanish.
            let unreadable = rec.get("error").is_some();
            let recent = rec.get("t").and_then(Value::as_i64).is_some_and(|t| t >= q.since);
            let matches = q
                .kind
                .is_none_or(|k| rec.get("kind").and_then(Value::as_str) == Some(k));
            if unreadable || (recent && matches) {
                bytes += rec.to_string().len();
                out.push(rec);
                // A page ends at its count or its size, whichever comes first (batch records are large).
                if out.len() == q.limit || bytes >= EXPORT_PAGE_BYTES {
                    return Ok(ScanPage {
                        records: out,
                        next_after: Some(after),
                    });
                }
            }
        }
    }
}

/// The first record that does not decrypt under its session's key, if any.
async fn first_unreadable(core: &Core, u: &Unsealed) -> ApiResult<Option<u64>> {
    let s = store(core)?;
    let sessions = s.sessions().await?;
    let mut reader = core.audit_reader(u).await?;
    let mut after = 0;
    loop {
        let rows = s.records_after(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        if let Some(r) = rows.iter().find(|r| reader.open(&sessions, r).get("error").is_some()) {
            return Ok(Some(r.seq));
        }
    }
    Ok(None)
}

/// Where the chain breaks after record `seq`, offline verification cannot
/// tell an edit of `seq` from an edit of the next record's link to it. With
/// the record keys the server can, when `seq` is vouched for: it opens under
/// the session of the last signed record at or before it, which opens too
/// (a record sealed anew under a session the editor made would not be in
/// that one). Then the next record's link was edited. Any doubt, or error,
/// leaves the offline answer.
async fn edited_link(core: &Core, u: &Unsealed, seq: u64) -> Option<u64> {
    let s = store(core).ok()?;
    let rows = s.records_after(seq.saturating_sub(1), 2).await.ok()?;
    let [this, next] = rows.as_slice() else { return None };
    if this.seq != seq || next.seq != seq + 1 || next.prev.as_slice() == to_row(this).link().as_slice() {
        return None;
    }
    let signed = s
        .checkpoints()
        .await
        .ok()?
        .into_iter()
        .filter(|c| c.seq <= seq)
        .max_by_key(|c| c.seq)?;
    let anchor = s.records_after(signed.seq - 1, 1).await.ok()?.into_iter().next()?;
    if anchor.seq != signed.seq
        || to_row(&anchor).link().as_slice() != signed.head.as_slice()
        || anchor.session != this.session
    {
        return None;
    }
    let sessions = s.sessions().await.ok()?;
    let mut reader = core.audit_reader(u).await.ok()?;
    let mut opens = |r| reader.open(&sessions, r).get("error").is_none();
    (opens(&anchor) && opens(this)).then_some(next.seq)
}

/// Verifies every row and checkpoint in `store` against `public_key`.
pub(crate) async fn verify_store(store: &AuditStore, public_key: &[u8]) -> ApiResult<Report> {
    // Checkpoints first: on a live trail, one read after the rows could sign rows not read.
    let checkpoints: Vec<_> = store.checkpoints().await?.iter().map(to_checkpoint).collect();
    // Payloads are dropped page by page: only each row's place and links are kept.
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = store.records_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        rows.extend(page.iter().map(|r| audit::Linked::from(&to_row(r))));
    }
    Ok(audit::verify_linked(&rows, &checkpoints, public_key))
}

pub(crate) fn report_json(r: &Report) -> Value {
    json!({
        "intact": r.finding.is_none(),
        "records": r.records,
        "checkpoints": r.checkpoints,
        "unsigned_tail": r.unsigned_tail,
        "first_bad_seq": r.finding.as_ref().map(|f| f.seq),
        "kind": r.finding.as_ref().map(|f| f.kind.as_str()),
    })
}
