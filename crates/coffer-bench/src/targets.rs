//! The servers under test: Coffer (`coffer server --config`, embedded
//! storage, audit on unless told otherwise) and OpenBao (`bao server
//! -config`, raft storage, a declarative file audit device), each
//! initialised, unsealed and given a transit key `bench` through the API.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hyper::Method;
use serde_json::{Value, json};

use crate::http::{call, call_ok};
use crate::workdir::WorkDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Coffer { audit: bool },
    OpenBao,
}

pub(crate) struct Target {
    pub(crate) label: String,
    pub(crate) kind: Kind,
    pub(crate) version: String,
    child: Child,
    pub(crate) addr: SocketAddr,
    /// The root token: set-up, audit marks and metrics only.
    pub(crate) token: String,
    /// The load's token: a policy allowing encrypt and decrypt with the bench key and nothing else.
    pub(crate) load_token: String,
    /// Coffer's data directory, or OpenBao's work directory (holding `audit.log`).
    pub(crate) dir: PathBuf,
    pub(crate) log: PathBuf,
    /// A ciphertext of the benchmark plaintext, for the decrypt scenario.
    pub(crate) ciphertext: String,
}

/// What the load's token may do: encrypt and decrypt with the bench key.
const LOAD_POLICY: &str = r#"path "transit/encrypt/bench" { capabilities = ["update"] }
path "transit/decrypt/bench" { capabilities = ["update"] }
"#;

/// Resident set sizes from /proc/PID/status, in bytes.
pub(crate) fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Notes the server in the work directory, or stops it: a run killed later
/// must not leave a server that the next run cannot find.
fn noted(workdir: &WorkDir, mut child: Child) -> anyhow::Result<Child> {
    if let Err(e) = workdir.note_server(&child) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(anyhow!("noting server {} in the work directory: {e}", child.id()));
    }
    Ok(child)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Target {
    /// Starts `coffer server --config` over a fresh data directory under `work`.
    pub(crate) fn start_coffer(bin: &Path, workdir: &WorkDir, audit: bool) -> anyhow::Result<Self> {
        let work = workdir.path();
        let name = if audit { "coffer" } else { "coffer-audit-off" };
        let data = work.join(name);
        let cfg = work.join(format!("{name}.toml"));
        let log = work.join(format!("{name}.log"));
        let mut text = format!(
            "[storage]\npath = {:?}\n[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n",
            data.display().to_string()
        );
        if !audit {
            text.push_str("[audit]\nenabled = false\n");
        }
        std::fs::write(&cfg, text)?;
        let child = Command::new(bin)
            .arg("server")
            .arg("--config")
            .arg(&cfg)
            .env("COFFER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut child = noted(workdir, child)?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut found = None;
        for line in lines.by_ref() {
            let line = line?;
            if line.contains("listening on") {
                found = Some(line);
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let Some(line) = found else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} exited before listening; its log:\n{}",
                bin.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        // "Coffer server 0.1.0 listening on http://127.0.0.1:PORT (not initialised)"
        let addr: SocketAddr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| anyhow!("no address in {line:?}"))?
            .parse()?;
        let version = line.split(" listening").next().unwrap_or("Coffer").to_owned();
        Ok(Target {
            label: if audit {
                "Coffer".into()
            } else {
                "Coffer (audit off)".into()
            },
            kind: Kind::Coffer { audit },
            version,
            child,
            addr,
            token: String::new(),
            load_token: String::new(),
            dir: data,
            log,
            ciphertext: String::new(),
        })
    }

    /// Starts `bao server -config` with raft storage and a file audit device under `work/openbao`.
    pub(crate) fn start_openbao(bin: &Path, workdir: &WorkDir) -> anyhow::Result<Self> {
        let work = workdir.path();
        let dir = work.join("openbao");
        std::fs::create_dir_all(dir.join("raft"))?;
        let version = Command::new(bin)
            .arg("version")
            .output()
            .with_context(|| format!("running {} version", bin.display()))?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        let (port, cluster) = loop {
            let (a, b) = (free_port()?, free_port()?);
            if a != b {
                break (a, b);
            }
        };
        let cfg = dir.join("bao.hcl");
        let log = work.join("openbao.log");
        std::fs::write(
            &cfg,
            format!(
                r#"# OpenBao 2.x: raft is the persistent storage backend.
storage "raft" {{
  path    = "{raft}"
  node_id = "bench-node"
  # default raft timeouts (x5) make a single node wait ~10 s to elect itself
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable     = true
  # OpenBao refuses a request of more than 1,000 JSON strings by default; a
  # batch of 1,000 items has 2,001, and Coffer takes up to 10,000 items.
  max_request_json_strings = 100000
  max_request_json_memory  = 268435456
}}
api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster}"
# declarative audit device (OpenBao only accepts audit devices from the config)
audit "file" "bench" {{
  options {{
    file_path = "{audit}"
  }}
}}
"#,
                raft = dir.join("raft").display(),
                audit = dir.join("audit.log").display(),
            ),
        )?;
        let child = Command::new(bin)
            .arg("server")
            .arg("-config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let child = noted(workdir, child)?;
        Ok(Target {
            label: "OpenBao".into(),
            kind: Kind::OpenBao,
            version,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            token: String::new(),
            load_token: String::new(),
            dir,
            log,
            ciphertext: String::new(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ({}):\n{}",
                self.label,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Waits until `sys/health` answers with one of `want` (any status when empty).
    async fn wait_health(&mut self, want: &[u16], limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.alive()?;
            if let Ok((st, _)) = call(self.addr, Method::GET, "/v1/sys/health", None, None).await
                && (want.is_empty() || want.contains(&st))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not healthy after {limit:?}; log:\n{}", self.label, tail(&self.log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// init, unseal, mount transit (OpenBao), create key `bench`, encrypt one plaintext.
    pub(crate) async fn setup(&mut self, plaintext_b64: &str) -> anyhow::Result<()> {
        self.wait_health(&[], Duration::from_secs(60)).await?;
        let init = call_ok(
            self.addr,
            Method::PUT,
            "/v1/sys/init",
            None,
            Some(&json!({ "secret_shares": 1, "secret_threshold": 1 })),
        )
        .await?;
        let key = init["keys"][0]
            .as_str()
            .ok_or_else(|| anyhow!("sys/init: no keys in {init}"))?
            .to_owned();
        self.token = init["root_token"]
            .as_str()
            .ok_or_else(|| anyhow!("sys/init: no root_token in {init}"))?
            .to_owned();
        let unseal = call_ok(
            self.addr,
            Method::PUT,
            "/v1/sys/unseal",
            None,
            Some(&json!({ "key": key })),
        )
        .await?;
        if unseal["sealed"] != Value::Bool(false) {
            bail!("{}: still sealed after unseal: {unseal}", self.label);
        }
        // OpenBao answers 429 (standby) until raft has elected this node.
        self.wait_health(&[200], Duration::from_secs(60)).await?;
        let token = self.token.clone();
        if self.kind == Kind::OpenBao {
            call_ok(
                self.addr,
                Method::POST,
                "/v1/sys/mounts/transit",
                Some(&token),
                Some(&json!({ "type": "transit" })),
            )
            .await?;
        }
        call_ok(
            self.addr,
            Method::POST,
            "/v1/transit/keys/bench",
            Some(&token),
            Some(&json!({ "type": "aes256-gcm96" })),
        )
        .await?;
        // The load runs with a non-root token, so each request's policy is really checked.
        call_ok(
            self.addr,
            Method::PUT,
            "/v1/sys/policies/acl/bench",
            Some(&token),
            Some(&json!({ "policy": LOAD_POLICY })),
        )
        .await?;
        let created = call_ok(
            self.addr,
            Method::POST,
            "/v1/auth/token/create",
            Some(&token),
            Some(&json!({ "policies": ["bench"], "no_default_policy": true, "ttl": "24h" })),
        )
        .await?;
        self.load_token = created["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| anyhow!("auth/token/create: no client_token in {created}"))?
            .to_owned();
        let token = self.load_token.clone();
        let enc = call_ok(
            self.addr,
            Method::POST,
            "/v1/transit/encrypt/bench",
            Some(&token),
            Some(&json!({ "plaintext": plaintext_b64 })),
        )
        .await?;
        self.ciphertext = enc["data"]["ciphertext"]
            .as_str()
            .ok_or_else(|| anyhow!("encrypt: no ciphertext in {enc}"))?
            .to_owned();
        let dec = call_ok(
            self.addr,
            Method::POST,
            "/v1/transit/decrypt/bench",
            Some(&token),
            Some(&json!({ "ciphertext": self.ciphertext })),
        )
        .await?;
        if dec["data"]["plaintext"].as_str() != Some(plaintext_b64) {
            bail!("{}: decrypt did not round-trip: {dec}", self.label);
        }
        Ok(())
    }

    /// A position in the audit trail, taken between scenarios: Coffer's last
    /// record sequence number (via `sys/audit/tail`, whose own record is the
    /// next one), OpenBao's audit.log size. None without an audit trail
    /// (Coffer with `[audit] enabled = false` may have none to tail).
    pub(crate) async fn audit_mark(&self) -> anyhow::Result<Option<u64>> {
        match self.kind {
            Kind::Coffer { audit } => {
                let (status, v) = call(
                    self.addr,
                    Method::GET,
                    "/v1/sys/audit/tail?n=1",
                    Some(&self.token),
                    None,
                )
                .await?;
                let seq = v["data"]["records"]
                    .as_array()
                    .map(|r| r.last().and_then(|r| r["seq"].as_u64()).unwrap_or(0));
                match seq {
                    Some(seq) if (200..300).contains(&status) => Ok(Some(seq)),
                    _ if !audit => Ok(None),
                    _ => bail!("sys/audit/tail: status {status}: {v}"),
                }
            }
            Kind::OpenBao => Ok(Some(std::fs::metadata(self.dir.join("audit.log"))?.len())),
        }
    }

    /// The size of Coffer's audit database as SQLite sees it (pages in use,
    /// WAL included): what the trail takes on disk, row and page overhead,
    /// checkpoints and sessions included. None for OpenBao or without a trail.
    pub(crate) fn audit_db_bytes(&self) -> anyhow::Result<Option<u64>> {
        let path = self.dir.join(coffer_store::audit::AUDIT_DB_FILE);
        if self.kind == Kind::OpenBao || !path.exists() {
            return Ok(None);
        }
        let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(Some(u64::try_from(pages.saturating_mul(size))?))
    }

    /// Coffer's request and audit commit totals from `sys/metrics` (None for OpenBao).
    pub(crate) async fn server_totals(&self) -> anyhow::Result<Option<ServerTotals>> {
        if self.kind == Kind::OpenBao {
            return Ok(None);
        }
        let (status, v) = call(self.addr, Method::GET, "/v1/sys/metrics", Some(&self.token), None).await?;
        let Value::String(text) = v else {
            bail!("sys/metrics: status {status}: not Prometheus text: {v}");
        };
        if !(200..300).contains(&status) {
            bail!("sys/metrics: status {status}: {text}");
        }
        Ok(Some(ServerTotals::parse(&text)?))
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub(crate) fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Coffer's audit records after the run: (records, bytes) with seq in `(after, upto]`
/// for each span, bytes counted as `prev + payload + 16` (seq and session columns).
pub(crate) async fn coffer_audit_spans(dir: &Path, spans: &[(u64, u64)]) -> anyhow::Result<Vec<(u64, u64)>> {
    if !dir.join(coffer_store::audit::AUDIT_DB_FILE).exists() {
        return Ok(vec![(0, 0); spans.len()]);
    }
    let store = coffer_store::audit::AuditStore::open(dir)
        .await
        .map_err(|e| anyhow!("opening {}/audit.db: {e}", dir.display()))?;
    let mut out = vec![(0u64, 0u64); spans.len()];
    let mut after = 0u64;
    loop {
        let page = store
            .records_after(after, 5000)
            .await
            .map_err(|e| anyhow!("reading audit records: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            let bytes = (r.prev.len() + r.payload.len() + 16) as u64;
            for (i, (lo, hi)) in spans.iter().enumerate() {
                if r.seq > *lo && r.seq <= *hi {
                    out[i].0 += 1;
                    out[i].1 += bytes;
                }
            }
        }
    }
    Ok(out)
}

/// Newlines (one per audit entry) in each byte span `[from, to)` of OpenBao's audit.log.
pub(crate) fn count_lines(path: &Path, spans: &[(u64, u64)]) -> anyhow::Result<Vec<u64>> {
    use std::io::Read;
    let mut f = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut out = vec![0u64; spans.len()];
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                let at = pos + i as u64;
                for (k, (from, to)) in spans.iter().enumerate() {
                    if at >= *from && at < *to {
                        out[k] += 1;
                    }
                }
            }
        }
        pos += n as u64;
    }
    Ok(out)
}

/// Running totals from Coffer's `sys/metrics`: requests and the time the
/// server spent on them, and audit commits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ServerTotals {
    pub(crate) requests: f64,
    pub(crate) request_seconds: f64,
    pub(crate) commits: f64,
    pub(crate) commit_seconds: f64,
    /// Commits that carried records (the others only sign a checkpoint).
    pub(crate) batches: f64,
    pub(crate) records: f64,
    /// Wall seconds the totals cover (0 for a reading; a difference gets its window).
    pub(crate) seconds: f64,
}

impl ServerTotals {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let find = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        };
        let get = |name: &str| find(name).ok_or_else(|| anyhow!("sys/metrics has no {name}"));
        // With audit off nothing is ever committed, and the exporter may leave these out.
        let audit = |name: &str| find(name).unwrap_or(0.0);
        Ok(ServerTotals {
            requests: get("coffer_request_duration_seconds_count")?,
            request_seconds: get("coffer_request_duration_seconds_sum")?,
            commits: audit("coffer_audit_commit_duration_seconds_count"),
            commit_seconds: audit("coffer_audit_commit_duration_seconds_sum"),
            batches: audit("coffer_audit_batch_records_count"),
            records: audit("coffer_audit_batch_records_sum"),
            seconds: 0.0,
        })
    }

    /// What happened between `before` and this reading, `seconds` apart.
    pub(crate) fn since(&self, before: &ServerTotals, seconds: f64) -> ServerTotals {
        ServerTotals {
            requests: self.requests - before.requests,
            request_seconds: self.request_seconds - before.request_seconds,
            commits: self.commits - before.commits,
            commit_seconds: self.commit_seconds - before.commit_seconds,
            batches: self.batches - before.batches,
            records: self.records - before.records,
            seconds,
        }
    }

    pub(crate) fn add(&mut self, other: &ServerTotals) {
        self.requests += other.requests;
        self.request_seconds += other.request_seconds;
        self.commits += other.commits;
        self.commit_seconds += other.commit_seconds;
        self.batches += other.batches;
        self.records += other.records;
        self.seconds += other.seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_totals_from_prometheus_text() {
        let text = "# TYPE coffer_audit_commit_duration_seconds histogram\n\
                    coffer_request_duration_seconds_sum 0.5\n\
                    coffer_request_duration_seconds_count 1000\n\
                    coffer_audit_commit_duration_seconds_bucket{le=\"0.001\"} 3\n\
                    coffer_audit_commit_duration_seconds_sum 0.0042\n\
                    coffer_audit_commit_duration_seconds_count 7\n\
                    coffer_audit_batch_records_sum 40\n\
                    coffer_audit_batch_records_count 6\n";
        let c = ServerTotals::parse(text).unwrap();
        assert_eq!(
            c,
            ServerTotals {
                requests: 1000.0,
                request_seconds: 0.5,
                commits: 7.0,
                commit_seconds: 0.0042,
                batches: 6.0,
                records: 40.0,
                seconds: 0.0,
            }
        );
        // A difference covers its window: the writer committed 0.0042 s of 2 s.
        let d = c.since(&ServerTotals::default(), 2.0);
        assert_eq!((d.commits, d.commit_seconds / d.seconds), (7.0, 0.0021));
        // Audit off: no commit series, requests still counted.
        let off =
            ServerTotals::parse("coffer_request_duration_seconds_sum 0.25\ncoffer_request_duration_seconds_count 10\n")
                .unwrap();
        assert_eq!((off.requests, off.commits), (10.0, 0.0));
        assert!(ServerTotals::parse("coffer_audit_batch_records_sum 1\n").is_err());
    }
}
