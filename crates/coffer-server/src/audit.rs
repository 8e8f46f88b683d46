//! The audit trail at run time: every request becomes a record that is
//! durable before the response leaves (fail closed, within a deadline),
//! written by one task that group-commits batches, chains them, seals them
//! under the session key and signs the head. Also decryption analytics,
//! alerts (records plus a webhook) and the `sys/audit/*` API.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::analytics::{Alert, Analyzer, Event, Rules};
use coffer_core::audit::{self, Checkpoint, RecordKeyPair, Row, Signer};
use coffer_core::{Key256, aead};
use coffer_store::audit::{AuditAppender, AuditCheckpointRow, AuditRecordRow, AuditSessionRow, AuditStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::core::{Clock, lock, read, write};

/// `[audit]` in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit every request (default). Turning it off is for benchmarks; the server warns loudly.
    pub enabled: bool,
    /// How long a request waits for its record to be durable before it fails with 503.
    pub deadline_ms: u64,
    /// Optional extra sink: the same sealed rows, one JSON line each, fsynced.
    pub file: Option<PathBuf>,
    /// Where alerts are POSTed (retried; never blocks a request).
    pub webhook_url: Option<String>,
    pub rules: Rules,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            deadline_ms: 2000,
            file: None,
            webhook_url: None,
            rules: Rules::default(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    #[error("audit log did not confirm the record within {0} ms")]
    Deadline(u64),
}

struct Job {
    record: Vec<u8>,
    ack: Option<oneshot::Sender<Result<u64, AuditError>>>,
}

enum Msg {
    Record(Job),
    /// Sign the records not yet under a checkpoint, then answer.
    Flush(oneshot::Sender<()>),
    /// Answer whether the file sink can be written now.
    Probe(oneshot::Sender<Result<(), String>>),
}

/// Key material the writer uses; the signer and HMAC key only while unsealed.
#[derive(Default)]
struct Keys {
    record_public: Option<(u32, Vec<u8>)>,
    signer: Option<Arc<Signer>>,
    hmac: Option<hmac::Key>,
}

pub struct Auditor {
    tx: Option<SyncSender<Msg>>,
    deadline: Duration,
    keys: Arc<RwLock<Keys>>,
    analyzer: Mutex<Analyzer>,
    webhook: Option<mpsc::Sender<Alert>>,
    recent_alerts: Mutex<VecDeque<Alert>>,
}

/// Queue depth before new records are refused outright (never waited on).
const QUEUE: usize = 65_536;
const MAX_BATCH: usize = 1024;
/// Checkpoints are signed at most this often under load (an Ed25519
/// signature per commit would cost more than the commit's records), and a
/// tail left unsigned is signed once the writer has been idle this long.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

impl Auditor {
    /// An auditor that records nothing (embedded uses and fuzzing only).
    pub fn disabled() -> Self {
        Auditor {
            tx: None,
            deadline: Duration::from_millis(0),
            keys: Arc::default(),
            analyzer: Mutex::new(Analyzer::new(Rules::default())),
            webhook: None,
            recent_alerts: Mutex::default(),
        }
    }

    /// Starts the writer over `store`.
    pub async fn start(store: AuditStore, cfg: &AuditConfig, clock: Clock, node: String) -> Result<Self, AuditError> {
        let keys: Arc<RwLock<Keys>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let state = ChainState::resume(&store).await?;
        let writer = Writer {
            appender: store.appender().map_err(|e| AuditError::Unavailable(e.to_string()))?,
            keys: keys.clone(),
            sink: cfg.file.clone().map(FileSink::new),
            clock,
            node,
            state,
            last_checkpoint: Instant::now(),
            unsigned: false,
        };
        // Its own thread: every request waits on this loop's commits, so it
        // must not queue behind request tasks nor hop threads per statement.
        std::thread::Builder::new()
            .name("coffer-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::Unavailable(format!("starting the audit writer: {e}")))?;
        let webhook = cfg.webhook_url.clone().map(spawn_webhook);
        Ok(Auditor {
            tx: Some(tx),
            deadline: Duration::from_millis(cfg.deadline_ms.max(1)),
            keys,
            analyzer: Mutex::new(Analyzer::new(cfg.rules.clone())),
            webhook,
            recent_alerts: Mutex::default(),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub(crate) fn set_record_key(&self, version: u32, public: Vec<u8>) {
        write(&self.keys).record_public = Some((version, public));
    }

    pub(crate) fn set_unsealed(&self, signer: Option<Arc<Signer>>, hmac_key: Option<hmac::Key>) {
        let mut k = write(&self.keys);
        k.signer = signer;
        k.hmac = hmac_key;
    }

    /// HMAC-SHA256 of a sensitive value under the audit key, as Vault does;
    /// None while sealed (nothing sensitive is recorded then).
    pub(crate) fn hmac(&self, value: &[u8]) -> Option<String> {
        read(&self.keys)
            .hmac
            .as_ref()
            .map(|k| STANDARD.encode(hmac::sign(k, value).as_ref()))
    }

    /// Queues a record and, if `wait`, returns once it is durable.
    pub(crate) async fn record<T: Serialize>(&self, record: &T, wait: bool) -> Result<(), AuditError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let bytes = serde_json::to_vec(record).map_err(|e| AuditError::Unavailable(e.to_string()))?;
        if !wait {
            // Best effort (health checks, alerts): never make a caller wait.
            let _ = tx.try_send(Msg::Record(Job {
                record: bytes,
                ack: None,
            }));
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        tx.try_send(Msg::Record(Job {
            record: bytes,
            ack: Some(ack),
        }))
        .map_err(|e| {
            AuditError::Unavailable(match e {
                TrySendError::Full(_) => "the audit queue is full".into(),
                TrySendError::Disconnected(_) => "the audit writer stopped".into(),
            })
        })?;
        match tokio::time::timeout(self.deadline, done).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(AuditError::Unavailable("the audit writer stopped".into())),
            Err(_) => Err(AuditError::Deadline(self.deadline.as_millis() as u64)),
        }
    }

    /// Signs a checkpoint over every record written so far (at shutdown).
    pub(crate) async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.try_send(Msg::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(self.deadline, wait).await;
        }
    }

    /// Whether the trail can take records now (its file sink opens and syncs).
    /// `sys/init` asks first: its own record can only be written after it has
    /// made the keys, and a refusal then would lose the unseal shares.
    pub(crate) async fn probe(&self) -> Result<(), AuditError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (done, answer) = oneshot::channel();
        tx.try_send(Msg::Probe(done))
            .map_err(|_| AuditError::Unavailable("the audit writer is not taking requests".into()))?;
        match tokio::time::timeout(self.deadline, answer).await {
            Ok(Ok(r)) => r.map_err(AuditError::Unavailable),
            _ => Err(AuditError::Unavailable(
                "the audit writer did not answer in time".into(),
            )),
        }
    }

    /// Feeds decrypt outcomes to the rules; alerts become records and webhook posts.
    pub(crate) async fn observe_decrypts(&self, identity: &str, source: &str, time: i64, outcomes: &[bool]) {
        let alerts: Vec<Alert> = {
            let mut a = lock(&self.analyzer);
            outcomes
                .iter()
                .flat_map(|ok| {
                    a.observe(&Event {
                        time,
                        identity,
                        source,
                        failed: !ok,
                    })
                })
                .collect()
        };
        for alert in alerts {
            tracing::warn!(rule = %alert.rule, identity = %alert.identity, "audit alert: {}", alert.detail);
            let rec = json!({ "v": 1, "kind": "alert", "t": time, "rule": alert.rule,
                              "who": alert.identity, "src": alert.source, "detail": alert.detail });
            let _ = self.record(&rec, false).await;
            {
                let mut recent = lock(&self.recent_alerts);
                if recent.len() >= 1000 {
                    recent.pop_front();
                }
                recent.push_back(alert.clone());
            }
            if let Some(w) = &self.webhook {
                let _ = w.try_send(alert);
            }
        }
    }
}

fn spawn_webhook(url: String) -> mpsc::Sender<Alert> {
    let (tx, mut rx) = mpsc::channel::<Alert>(1024);
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("audit webhook disabled: {e}");
                return;
            }
        };
        while let Some(alert) = rx.recv().await {
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=5 {
                match client.post(&url).json(&alert).send().await {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => tracing::warn!(attempt, status = %r.status(), "audit webhook refused an alert"),
                    // Without the URL: webhook paths often carry a secret.
                    Err(e) => tracing::warn!(attempt, "audit webhook unreachable: {}", e.without_url()),
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    });
    tx
}

struct ChainState {
    next_seq: u64,
    head: [u8; 32],
    next_session: u32,
    session: Option<(u32, u32, Key256)>,
    /// Records sealed under the current session key.
    session_records: u64,
}

/// Records one session key seals before the writer starts a new session:
/// AES-GCM with random nonces stays far below NIST's 2^32 messages per key.
const SESSION_RECORDS: u64 = 1 << 30;

/// Whether a batch of `batch` records needs a new session first.
fn needs_session(current: Option<u32>, key_version: u32, sealed: u64, batch: usize) -> bool {
    current != Some(key_version) || sealed.saturating_add(batch as u64) > SESSION_RECORDS
}

impl ChainState {
    async fn resume(store: &AuditStore) -> Result<Self, AuditError> {
        let unavailable = |e: coffer_store::StoreError| AuditError::Unavailable(e.to_string());
        let last = store.last_record().await.map_err(unavailable)?;
        let sessions = store.sessions().await.map_err(unavailable)?;
        let (next_seq, head) = match last {
            Some(r) => (r.seq + 1, to_row(&r).link()),
            None => (1, [0u8; 32]),
        };
        let next_session = sessions.iter().map(|s| s.id).max().unwrap_or(0).saturating_add(1);
        Ok(ChainState {
            next_seq,
            head,
            next_session,
            session: None,
            session_records: 0,
        })
    }
}

pub(crate) fn to_row(r: &AuditRecordRow) -> Row {
    let mut prev = [0u8; 32];
    if r.prev.len() == 32 {
        prev.copy_from_slice(&r.prev);
    }
    Row {
        seq: r.seq,
        session: r.session,
        prev,
        payload: r.payload.clone(),
    }
}

pub(crate) fn to_checkpoint(c: &AuditCheckpointRow) -> Checkpoint {
    let mut head = [0u8; 32];
    if c.head.len() == 32 {
        head.copy_from_slice(&c.head);
    }
    Checkpoint {
        seq: c.seq,
        head,
        time: c.time,
        signature: c.signature.clone(),
    }
}

/// An extra sink: the same rows as JSON lines in a file, fsynced per batch.
/// Lines it could not write are kept and written first next time, so a
/// sink that recovers has no gap.
struct FileSink {
    path: PathBuf,
    file: Option<std::fs::File>,
    pending: String,
    /// A failed write may have left part of a line: start the next on a fresh one.
    torn: bool,
}

/// Unwritten sink lines kept at most; beyond, they are replaced by a note (audit.db has them).
const SINK_PENDING_MAX: usize = 64 << 20;

impl FileSink {
    fn new(path: PathBuf) -> Self {
        FileSink {
            path,
            file: None,
            pending: String::new(),
            torn: false,
        }
    }

    /// Opens the file and writes what is pending (perhaps nothing), synced.
    fn write_pending(&mut self) -> Result<(), String> {
        self.write("")
    }

    /// Blocks the writer thread; if it never returns, requests still fail at their deadline.
    fn write(&mut self, lines: &str) -> Result<(), String> {
        use std::io::Write;
        if self.pending.len() + lines.len() > SINK_PENDING_MAX {
            let dropped = self.pending.lines().filter(|l| !l.is_empty()).count() + lines.lines().count();
            self.pending = format!(
                "{}\n",
                json!({ "sink_gap": dropped, "note": "lines this file could not take; audit.db holds every row" })
            );
        } else {
            self.pending.push_str(lines);
        }
        let path = &self.path;
        let f = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
        };
        // After a cut mid-line the next write starts on a fresh line; the fragment stays malformed.
        let mut out = Vec::with_capacity(self.pending.len() + 1);
        if self.torn {
            out.push(b'\n');
        }
        let head = out.len();
        out.extend_from_slice(self.pending.as_bytes());
        let mut written = 0;
        let result = loop {
            if written == out.len() {
                // A pipe or a character device cannot be synced (EINVAL); what was written is delivered.
                break match f.sync_data() {
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
                    other => other,
                };
            }
            match f.write(&out[written..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            self.file = None;
            if written > 0 {
                // Whole lines written are not written again; a line cut short is, in full.
                let done = &self.pending.as_bytes()[..written.saturating_sub(head).min(self.pending.len())];
                let whole = done.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                self.torn = done.len() > whole;
                self.pending.drain(..whole);
            }
            return Err(format!("{}: {e}", self.path.display()));
        }
        self.pending.clear();
        self.torn = false;
        Ok(())
    }
}

struct Writer {
    appender: AuditAppender,
    keys: Arc<RwLock<Keys>>,
    sink: Option<FileSink>,
    clock: Clock,
    node: String,
    state: ChainState,
    last_checkpoint: Instant,
    /// Records were committed after the last checkpoint.
    unsigned: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            // With records not yet under a checkpoint, wait only until one is due.
            let first = if self.unsigned {
                match rx.recv_timeout(CHECKPOINT_EVERY) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sign_tail();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            };
            let mut jobs = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next {
                match m {
                    Msg::Record(j) => jobs.push(j),
                    Msg::Flush(done) => flushes.push(done),
                    Msg::Probe(done) => {
                        let _ = done.send(self.sink.as_mut().map_or(Ok(()), FileSink::write_pending));
                    }
                }
                next = if jobs.len() < MAX_BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !jobs.is_empty() {
                let result = self.write_batch(&jobs);
                if let Err(e) = &result {
                    crate::telemetry::get().audit_failures.increment(1);
                    tracing::error!("audit write failed: {e}");
                }
                let last = self.state.next_seq - 1;
                for j in jobs {
                    if let Some(ack) = j.ack {
                        let _ = ack.send(result.clone().map(|_| last));
                    }
                }
            }
            if !flushes.is_empty() {
                self.sign_tail();
                flushes.into_iter().for_each(|done| {
                    let _ = done.send(());
                });
            }
        }
        self.sign_tail();
    }

    /// Commits a checkpoint over the records written since the last one.
    fn sign_tail(&mut self) {
        if !self.unsigned {
            return;
        }
        // While sealed nothing can be signed; the next checkpoint covers these records.
        self.unsigned = false;
        let Some(signer) = read(&self.keys).signer.clone() else {
            return;
        };
        let c = self.checkpoint(&signer);
        // On failure the next batch's checkpoint covers these records; no retry loop.
        if let Err(e) = self
            .commit(None, &[], Some(&c))
            .and_then(|()| self.copy_to_sink(&[], Some(&c)))
        {
            tracing::error!("audit checkpoint failed: {e}");
        }
    }

    fn checkpoint(&mut self, signer: &Signer) -> AuditCheckpointRow {
        self.last_checkpoint = Instant::now();
        let c = signer.checkpoint(self.state.next_seq - 1, self.state.head, self.clock.now());
        AuditCheckpointRow {
            seq: c.seq,
            head: c.head.to_vec(),
            time: c.time,
            signature: c.signature,
        }
    }

    fn write_batch(&mut self, jobs: &[Job]) -> Result<(), AuditError> {
        let (record_public, signer) = {
            let k = read(&self.keys);
            (k.record_public.clone(), k.signer.clone())
        };
        let Some((key_version, public)) = record_public else {
            return Err(AuditError::Unavailable(
                "no audit key yet: the server is not initialised".into(),
            ));
        };
        let saved = (self.state.next_seq, self.state.head, self.state.next_session);
        let mut new_session = None;
        let current = self.state.session.as_ref().map(|(_, v, _)| *v);
        if needs_session(current, key_version, self.state.session_records, jobs.len()) {
            let (session_public, key) =
                audit::start_session(&public, &self.node).map_err(|e| AuditError::Unavailable(e.to_string()))?;
            let id = self.state.next_session;
            self.state.next_session = id.saturating_add(1);
            new_session = Some((
                AuditSessionRow {
                    id,
                    key_version,
                    public: session_public,
                    started: self.clock.now(),
                    node: self.node.clone(),
                    kdf: 2,
                },
                (id, key_version, key),
            ));
        }
        let (session_id, session_key) = match (&new_session, &self.state.session) {
            (Some((_, (id, _, key))), _) | (None, Some((id, _, key))) => (*id, key),
            (None, None) => return Err(AuditError::Unavailable("no audit session".into())),
        };
        let cipher = aead::Cipher::new(aead::Algorithm::Aes256Gcm, session_key);
        let mut nonces = aead::Nonces::new(jobs.len());
        let mut rows = Vec::with_capacity(jobs.len());
        for j in jobs {
            let seq = self.state.next_seq;
            let payload = audit::seal_record(&cipher, &mut nonces, seq, session_id, &j.record)
                .map_err(|e| AuditError::Unavailable(e.to_string()))?;
            let row = Row {
                seq,
                session: session_id,
                prev: self.state.head,
                payload,
            };
            self.state.head = row.link();
            self.state.next_seq += 1;
            rows.push(AuditRecordRow {
                seq,
                session: session_id,
                prev: row.prev.to_vec(),
                payload: row.payload,
            });
        }
        let due = new_session.is_some() || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY;
        let checkpoint = signer.filter(|_| due).map(|s| self.checkpoint(&s));
        if let Err(e) = self.commit(new_session.as_ref().map(|(s, _)| s), &rows, checkpoint.as_ref()) {
            (self.state.next_seq, self.state.head, self.state.next_session) = saved;
            return Err(e);
        }
        self.unsigned = checkpoint.is_none();
        if let Some((_, session)) = new_session {
            self.state.session = Some(session);
            self.state.session_records = 0;
        }
        self.state.session_records += jobs.len() as u64;
        // The rows are stored and the chain has moved on; a failing sink still fails the batch.
        self.copy_to_sink(&rows, checkpoint.as_ref())
    }

    /// Appends to the store.
    fn commit(
        &mut self,
        session: Option<&AuditSessionRow>,
        rows: &[AuditRecordRow],
        checkpoint: Option<&AuditCheckpointRow>,
    ) -> Result<(), AuditError> {
        let m = crate::telemetry::get();
        let started = Instant::now();
        let appended = self.appender.append(session, rows, checkpoint);
        m.audit_commit_seconds.record(started.elapsed());
        appended.map_err(|e| AuditError::Unavailable(e.to_string()))?;
        if !rows.is_empty() {
            m.audit_batch_records.record(rows.len() as f64);
            m.audit_records.increment(rows.len() as u64);
        }
        Ok(())
    }

    /// Copies stored rows to the file sink, if there is one.
    fn copy_to_sink(
        &mut self,
        rows: &[AuditRecordRow],
        checkpoint: Option<&AuditCheckpointRow>,
    ) -> Result<(), AuditError> {
        if let Some(sink) = &mut self.sink {
            let mut lines = String::new();
            for r in rows {
                lines.push_str(
                    &json!({ "seq": r.seq, "session": r.session, "prev": hex::encode(&r.prev), "payload": STANDARD.encode(&r.payload) })
                        .to_string(),
                );
                lines.push('\n');
            }
            if let Some(c) = checkpoint {
                lines.push_str(
                    &json!({ "checkpoint": c.seq, "head": hex::encode(&c.head), "time": c.time, "signature": hex::encode(&c.signature) })
                        .to_string(),
                );
                lines.push('\n');
            }
            sink.write(&lines).map_err(AuditError::Unavailable)?;
        }
        Ok(())
    }
}

/// Decrypts records for `tail`/`export`: holds the record keys (unsealed only).
pub(crate) struct Reader {
    pairs: HashMap<u32, RecordKeyPair>,
    /// Each session's record key and node.
    sessions: HashMap<u32, (Key256, String)>,
}

impl Reader {
    pub(crate) fn new(pairs: HashMap<u32, RecordKeyPair>) -> Self {
        Reader {
            pairs,
            sessions: HashMap::new(),
        }
    }

    pub(crate) fn open(&mut self, sessions: &[AuditSessionRow], r: &AuditRecordRow) -> Value {
        if !self.sessions.contains_key(&r.session) {
            let key = sessions.iter().find(|s| s.id == r.session).and_then(|s| {
                // Only the two known derivations; any other value opens nothing.
                let node = match s.kdf {
                    1 => None,
                    2 => Some(s.node.as_str()),
                    _ => return None,
                };
                self.pairs
                    .get(&s.key_version)
                    .and_then(|p| p.session_key(&s.public, node).ok())
                    .map(|k| (k, s.node.clone()))
            });
            match key {
                Some(k) => {
                    self.sessions.insert(r.session, k);
                }
                None => return json!({ "seq": r.seq, "error": "no key for this record's session" }),
            }
        }
        let session = self.sessions.get(&r.session);
        let opened = session.map(|(k, _)| audit::open_record(k, &to_row(r)));
        match opened {
            Some(Ok(pt)) => match serde_json::from_slice::<Value>(pt.as_bytes()) {
                Ok(Value::Object(mut m)) => {
                    // What the stored record leaves out (see `audit_record::Record`).
                    m.entry("kind").or_insert_with(|| json!("response"));
                    if let Some((_, node)) = session {
                        m.entry("node").or_insert_with(|| json!(node));
                    }
                    m.insert("seq".into(), json!(r.seq));
                    Value::Object(m)
                }
                _ => json!({ "seq": r.seq, "error": "record is not JSON" }),
            },
            _ => json!({ "seq": r.seq, "error": "record does not decrypt: altered or foreign" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_is_retired_before_its_record_limit() {
        assert!(needs_session(None, 1, 0, 1), "no session yet");
        assert!(needs_session(Some(1), 2, 0, 1), "the audit key was rotated");
        assert!(!needs_session(Some(1), 1, 0, 1024));
        assert!(!needs_session(Some(1), 1, SESSION_RECORDS - 5, 5));
        assert!(needs_session(Some(1), 1, SESSION_RECORDS - 5, 6));
        assert!(needs_session(Some(1), 1, u64::MAX, 1));
    }
}
