//! The harness end to end on a tiny run (not timed): Coffer with audit on
//! and off, every scenario, and OpenBao too when `BAO_BIN` is set.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The coffer binary: `COFFER_BIN`, else built next to this harness
/// (`cargo build -p coffer` in the same target directory and profile; a
/// no-op under `cargo test --workspace`, which has built it already).
fn coffer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("COFFER_BIN") {
        return p.into();
    }
    let harness = Path::new(env!("CARGO_BIN_EXE_coffer-bench"));
    let profile_dir = harness.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "coffer", "--bin", "coffer", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let status = cmd.status().expect("run cargo build -p coffer");
    assert!(status.success(), "cargo build -p coffer failed");
    let bin = profile_dir.join("coffer");
    assert!(bin.is_file(), "{} not built; set COFFER_BIN", bin.display());
    bin
}

/// The cells of the table row named `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"));
    line.trim_matches('|').split('|').map(str::trim).skip(1).collect()
}

fn number(cell: &str) -> f64 {
    cell.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

#[test]
fn tiny_run_prints_the_table() {
    let coffer = coffer_bin();
    let with_bao = std::env::var_os("BAO_BIN").is_some();
    if !with_bao {
        eprintln!("BAO_BIN is not set: this run covers Coffer only (./scripts/test sets it)");
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer-bench"));
    cmd.arg("--coffer-bin")
        .arg(&coffer)
        .args(["--audit", "both", "--duration", "0.5", "--warmup", "0", "--rounds", "2"])
        .args(["--connections", "2", "--sweep", "4,1,2", "--threads", "1", "--out"])
        .arg(out.path());
    if !with_bao {
        cmd.args(["--only", "coffer"]);
    }
    let run = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "harness failed:\n{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.path()).unwrap(),
        stdout,
        "--out differs from stdout"
    );

    let header = stdout.lines().find(|l| l.starts_with("| metric |")).unwrap();
    assert!(header.contains("| Coffer |"), "{header}");
    assert!(header.contains("| Coffer (audit off) |"), "{header}");
    assert!(header.contains("audit on ÷ off"), "{header}");
    assert!(stdout.contains("- Command: `"), "{stdout}");
    assert!(stdout.contains("- Machine: "), "{stdout}");
    let disk = stdout.lines().find(|l| l.starts_with("- Disk: ")).expect("a Disk line");
    assert!(disk.contains(" µs (median; p90 ") && disk.contains(" after."), "{disk}");
    assert!(
        stdout.contains(", 2 rounds; each target's median round is shown"),
        "{stdout}"
    );
    // Both rounds ran, for every target and scenario.
    assert_eq!(
        stderr.matches("(round 2/2)").count(),
        stderr.matches("(round 1/2)").count()
    );
    assert!(
        stderr.contains("encrypt    Coffer ") && stderr.contains("(round 2/2)"),
        "{stderr}"
    );
    let off = if with_bao { 3 } else { 1 };

    for s in ["encrypt", "decrypt", "batch100", "batch1000"] {
        let rps = row(&stdout, &format!("{s}: req/s"));
        assert!(number(rps[0]) > 0.0, "Coffer {s}: {rps:?}");
        assert!(number(rps[off]) > 0.0, "Coffer audit off {s}: {rps:?}");
        for r in ["p50 ms", "p99 ms", "server CPU µs/request"] {
            row(&stdout, &format!("{s}: {r}"));
        }
        assert_eq!(row(&stdout, &format!("{s}: errors"))[0], "0", "{stdout}");
        let audit = row(&stdout, &format!("{s}: audit bytes/request"));
        assert!(number(audit[0]) > 0.0, "{audit:?}");
        // "off", or what the server still wrote (the report then says the flag had no effect).
        assert!(
            audit[off] == "off" || audit[off].replace(',', "").parse::<f64>().is_ok(),
            "{audit:?}"
        );
        // From Coffer's sys/metrics: its own time per request, audit on and off.
        let server = row(&stdout, &format!("{s}: server time µs/request (mean)"));
        assert!(number(server[0]) > 0.0 && number(server[off]) > 0.0, "{server:?}");
        if with_bao {
            assert_eq!(server[1], "—", "OpenBao has no such figure: {server:?}");
        }
        // From Coffer's sys/metrics: commits happened, each with at least one record.
        assert!(
            number(row(&stdout, &format!("{s}: audit commit ms (mean)"))[0]) > 0.0,
            "{stdout}"
        );
        let per_commit = number(row(&stdout, &format!("{s}: audit records per commit"))[0]);
        assert!(per_commit >= 1.0, "{s}: {per_commit} records per commit");
        assert_eq!(row(&stdout, &format!("{s}: audit records per commit"))[off], "off");
        // Commit time over the run's wall time: a share, so above 0 and (one writer) at most 1.
        let busy = row(&stdout, &format!("{s}: audit writer committing, share of the time"));
        assert!(number(busy[0]) > 0.0 && number(busy[0]) <= 1.0, "{busy:?}");
        assert_eq!(busy[off], "off", "{busy:?}");
        if with_bao {
            // Batches of 1,000 too: its JSON limits are raised for them.
            assert!(number(rps[1]) > 0.0, "OpenBao {s}: {rps:?}");
            // Its answers (chunked when large) all read back as 2xx.
            assert_eq!(row(&stdout, &format!("{s}: errors"))[1], "0", "{stdout}");
        }
    }
    // The sweep: audit-on Coffer (and OpenBao) at 1, 2 and 4 connections; 2 reuses the scenario's run.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| scenario | connections |"))
        .expect("a sweep table");
    assert!(!header.contains("audit off"), "{header}");
    assert_eq!(header.contains("| OpenBao req/s |"), with_bao, "{header}");
    let targets = if with_bao { 2 } else { 1 };
    for n in [1, 4] {
        assert_eq!(
            stderr.matches(&format!("({n} connections)")).count(),
            2 * 2 * targets,
            "encrypt and decrypt, 2 rounds each:\n{stderr}"
        );
    }
    for s in ["encrypt", "decrypt"] {
        let mut rates = Vec::new();
        for n in ["1", "2", "4"] {
            let cells = row(&stdout, &format!("{s} | {n}"));
            assert_eq!(cells[0], n, "{cells:?}");
            for t in 0..targets {
                assert!(number(cells[1 + 3 * t]) > 0.0, "{s} at {n}: {cells:?}");
                assert_eq!(cells[3 + 3 * t], "0", "{s} at {n}: errors {cells:?}");
            }
            rates.push(cells[1].to_owned());
        }
        assert_eq!(
            rates[1],
            row(&stdout, &format!("{s}: req/s"))[0],
            "2 connections is the scenario's run"
        );
        let best = row(&stdout, &format!("{s} | **best**"));
        let top = rates.iter().max_by(|a, b| number(a).total_cmp(&number(b))).unwrap();
        assert!(best[1].starts_with(&format!("**{top}** (at ")), "{best:?} {rates:?}");
        if with_bao {
            assert!(best[7].ends_with("×**"), "{best:?}");
        }
    }
    let items = row(&stdout, "batch100: items/s");
    let reqs = row(&stdout, "batch100: req/s");
    assert!(
        (number(items[0]) - number(reqs[0]) * 100.0).abs() <= 50.0,
        "{items:?} {reqs:?}"
    );
    // Coffer writes one record per transit request (no intent record: encrypt changes nothing).
    let records = number(row(&stdout, "audit records (log lines)/request")[0]);
    assert!((0.9..=1.1).contains(&records), "{records}");
    for r in ["idle RSS after init, MiB", "peak RSS over the run (VmHWM), MiB"] {
        assert!(number(row(&stdout, r)[0]) > 0.0, "{r}");
    }
}

#[test]
fn an_interrupted_run_stops_its_servers_and_removes_its_work_directory() {
    let coffer = coffer_bin();
    let tmp = tempfile::tempdir().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_coffer-bench"))
        .env("TMPDIR", tmp.path())
        .arg("--coffer-bin")
        .arg(&coffer)
        .args(["--only", "coffer", "--scenarios", "encrypt", "--duration", "600"])
        .args(["--connections", "2", "--sweep", "2", "--threads", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    // The server is up and noted in the work directory: stop the run.
    let started = std::time::Instant::now();
    let (addr, pids) = loop {
        let log = std::fs::read_to_string(err.path()).unwrap();
        let addr = log
            .lines()
            .find(|l| l.starts_with("== setting up Coffer"))
            .and_then(|l| l.rsplit(" on ").next())
            .map(str::to_owned);
        let noted = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join(".servers")).ok())
            .next()
            .unwrap_or_default();
        if let Some(addr) = addr.filter(|_| !noted.is_empty()) {
            let pids: Vec<String> = noted
                .lines()
                .filter_map(|l| l.split(' ').next())
                .map(str::to_owned)
                .collect();
            break (addr, pids);
        }
        assert!(run.try_wait().unwrap().is_none(), "harness ended early:\n{log}");
        assert!(started.elapsed().as_secs() < 120, "no server after 2 minutes:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(pids.len(), 1, "one server: {pids:?}");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "one work directory");

    let kill = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = run.wait().unwrap();
    let log = std::fs::read_to_string(err.path()).unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{log}");
    assert!(log.contains("stopped by SIGTERM"), "{log}");
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}/stat")).exists(),
            "server {pid} still runs"
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        std::net::TcpStream::connect(addr.as_str()).is_err(),
        "the server at {addr} still answers"
    );
}
