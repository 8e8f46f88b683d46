//! The markdown report: machine, command, and one table with a column per
//! target and the ratios.

use std::fmt::Write as _;

use crate::cpu::Usage;
use crate::targets::{Kind, ServerTotals};
use crate::{Outcome, RunInfo, Scenario, TargetResult};

#[derive(Debug, Clone)]
enum Cell {
    Num(f64),
    Text(String),
    None,
}

#[derive(Clone, Copy)]
enum Fmt {
    Count,
    Millis,
    MiB,
    Ratio,
    /// Diagnostics (CPU elsewhere): two decimals, no ratio.
    Cores,
}

fn thousands(n: f64) -> String {
    let n = n.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn show(c: &Cell, f: Fmt) -> String {
    match c {
        Cell::None => "—".into(),
        Cell::Text(t) => t.clone(),
        // A figure without its base (a total over no time) is not a number to print.
        Cell::Num(v) if !v.is_finite() => "—".into(),
        Cell::Num(v) => match f {
            Fmt::Count => thousands(*v),
            Fmt::Millis if *v < 10.0 => format!("{v:.2}"),
            Fmt::Millis => format!("{v:.1}"),
            Fmt::MiB => format!("{:.1}", v / (1024.0 * 1024.0)),
            Fmt::Ratio | Fmt::Cores => format!("{v:.2}"),
        },
    }
}

fn ratio(a: &Cell, b: &Cell, f: Fmt) -> String {
    match (a, b) {
        _ if matches!(f, Fmt::Cores) => "—".into(),
        (Cell::Num(x), Cell::Num(y)) if *y > 0.0 => format!("{:.2}×", x / y),
        _ => "—".into(),
    }
}

fn measured(r: &TargetResult, s: Scenario) -> Option<&Outcome> {
    r.outcomes.iter().find(|(x, _)| *x == s).map(|(_, o)| o)
}

fn metric(r: &TargetResult, s: Scenario, f: impl Fn(&crate::load::Measured) -> f64) -> Cell {
    match measured(r, s) {
        Some(Outcome::Measured(m)) => Cell::Num(f(m)),
        Some(Outcome::Refused(_)) => Cell::Text("refused".into()),
        None => Cell::None,
    }
}

/// What to show for an audit figure that was not measured.
fn no_audit(r: &TargetResult) -> Cell {
    if r.kind == (Kind::Coffer { audit: false }) {
        Cell::Text("off".into())
    } else {
        Cell::None
    }
}

fn audit_bytes(r: &TargetResult, s: Scenario) -> Cell {
    if let Some(Outcome::Refused(_)) = measured(r, s) {
        return Cell::Text("refused".into());
    }
    match r.audit.iter().find(|a| a.0 == s) {
        Some(&(_, requests, _, bytes)) if requests > 0 => Cell::Num(bytes as f64 / requests as f64),
        _ => no_audit(r),
    }
}

/// Coffer's audit commits during a scenario's load (all rounds), from `sys/metrics`.
fn commits(r: &TargetResult, s: Scenario, f: impl Fn(&ServerTotals) -> f64) -> Cell {
    match r.totals.iter().find(|c| c.0 == s) {
        Some((_, c)) if c.commits > 0.0 => Cell::Num(f(c)),
        _ => no_audit(r),
    }
}

/// Coffer's own time per request during a scenario's load (all rounds): from
/// reading the request to the answer, audit wait included, TCP and client not.
fn server_micros(r: &TargetResult, s: Scenario) -> Cell {
    match r.totals.iter().find(|c| c.0 == s) {
        Some((_, c)) if c.requests > 0.0 => Cell::Num(c.request_seconds * 1e6 / c.requests),
        _ => Cell::None,
    }
}

fn records_per_request(r: &TargetResult) -> Cell {
    if r.audit.is_empty() {
        return no_audit(r);
    }
    let (mut req, mut rec, mut known) = (0u64, 0u64, false);
    for &(_, requests, records, _) in &r.audit {
        if let Some(n) = records {
            req += requests;
            rec += n;
            known = true;
        }
    }
    if known && req > 0 {
        Cell::Num(rec as f64 / req as f64)
    } else {
        Cell::None
    }
}

fn cell_for_missing(r: &TargetResult, s: Scenario) -> Cell {
    match measured(r, s) {
        Some(Outcome::Refused(_)) => Cell::Text("refused".into()),
        _ => Cell::None,
    }
}

/// CPU seconds over wall seconds, all runs of a target together.
fn cores(r: &TargetResult, f: impl Fn(&Usage) -> f64) -> Cell {
    let wall: f64 = r.cpu.iter().map(|c| c.1.wall).sum();
    if wall > 0.0 {
        Cell::Num(r.cpu.iter().map(|c| f(&c.1)).sum::<f64>() / wall)
    } else {
        Cell::None
    }
}

/// The worst single run of a target.
fn max_cores(r: &TargetResult, f: impl Fn(&Usage) -> f64) -> Cell {
    r.cpu
        .iter()
        .filter(|c| c.1.wall > 0.0)
        .map(|c| f(&c.1) / c.1.wall)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        .map_or(Cell::None, Cell::Num)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB RAM", kb / (1024.0 * 1024.0)))
        .unwrap_or_default()
}

/// How idle CPUs wait: it sets the cost of every wake-up in a latency-bound
/// run (a VM whose guest halts at once pays the hypervisor on each).
fn cpu_idle() -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned());
    match read("/sys/devices/system/cpu/cpuidle/current_driver") {
        Some(d) if d == "haltpoll" => {
            let ns = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns").unwrap_or_else(|| "?".into());
            format!(", cpuidle haltpoll (guest halt polling {ns} ns)")
        }
        Some(d) => format!(", cpuidle {d}"),
        None => String::new(),
    }
}

fn now() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "unknown date".into())
}

pub(crate) fn render(info: &RunInfo, scenarios: &[Scenario], results: &[TargetResult]) -> String {
    let coffer = results.iter().position(|r| r.kind == Kind::Coffer { audit: true });
    let coffer_off = results.iter().position(|r| r.kind == Kind::Coffer { audit: false });
    let bao = results.iter().position(|r| r.kind == Kind::OpenBao);
    // Column layout: the primary Coffer, OpenBao, Coffer ÷ OpenBao, then audit-off and on ÷ off.
    let primary = coffer.or(coffer_off);
    let mut head = vec!["metric".to_owned()];
    if let Some(p) = primary {
        head.push(results[p].label.clone());
    }
    if let Some(b) = bao {
        head.push(results[b].label.clone());
    }
    if primary.is_some() && bao.is_some() {
        head.push(format!("{} ÷ OpenBao", results[primary.unwrap_or(0)].label));
    }
    let both = coffer.is_some() && coffer_off.is_some();
    if both && let Some(off) = coffer_off {
        head.push(results[off].label.clone());
        head.push("audit on ÷ off".into());
    }

    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |name: String, f: Fmt, cell: &dyn Fn(&TargetResult) -> Cell| {
        let mut line = vec![name];
        let p = primary.map(|p| cell(&results[p]));
        let b = bao.map(|b| cell(&results[b]));
        if let Some(p) = &p {
            line.push(show(p, f));
        }
        if let Some(b) = &b {
            line.push(show(b, f));
        }
        if let (Some(p), Some(b)) = (&p, &b) {
            line.push(ratio(p, b, f));
        }
        if both && let (Some(on), Some(off)) = (coffer, coffer_off) {
            let (on, off) = (cell(&results[on]), cell(&results[off]));
            line.push(show(&off, f));
            line.push(ratio(&on, &off, f));
        }
        rows.push(line);
    };
    for &s in scenarios {
        let n = s.name();
        let items = s.items() as f64;
        if s.items() > 1 {
            row(format!("{n}: items/s"), Fmt::Count, &|r| {
                metric(r, s, |m| m.per_second() * items)
            });
        }
        row(format!("{n}: req/s"), Fmt::Count, &|r| metric(r, s, |m| m.per_second()));
        row(format!("{n}: p50 ms"), Fmt::Millis, &|r| {
            metric(r, s, |m| m.p50.as_secs_f64() * 1e3)
        });
        row(format!("{n}: p99 ms"), Fmt::Millis, &|r| {
            metric(r, s, |m| m.p99.as_secs_f64() * 1e3)
        });
        row(format!("{n}: errors"), Fmt::Count, &|r| {
            metric(r, s, |m| m.errors as f64)
        });
        row(format!("{n}: audit bytes/request"), Fmt::Count, &|r| audit_bytes(r, s));
        row(format!("{n}: server time µs/request (mean)"), Fmt::Count, &|r| {
            server_micros(r, s)
        });
        row(format!("{n}: audit commit ms (mean)"), Fmt::Cores, &|r| {
            commits(r, s, |c| c.commit_seconds * 1e3 / c.commits)
        });
        row(format!("{n}: audit records per commit"), Fmt::Cores, &|r| {
            commits(r, s, |c| c.records / c.batches.max(1.0))
        });
        // Near 1, the writer commits back to back: throughput is then records per commit ÷ commit time.
        row(
            format!("{n}: audit writer committing, share of the time"),
            Fmt::Cores,
            &|r| commits(r, s, |c| c.commit_seconds / c.seconds),
        );
        row(format!("{n}: server CPU µs/request"), Fmt::Count, &|r| {
            // All rounds of the scenario together.
            let (server, sent) = r
                .cpu
                .iter()
                .filter(|c| c.0 == s)
                .fold((0.0, 0u64), |(u, n), c| (u + c.1.server, n + c.2));
            if sent > 0 {
                Cell::Num(server * 1e6 / sent as f64)
            } else {
                cell_for_missing(r, s)
            }
        });
    }
    row(
        "audit records (log lines)/request".into(),
        Fmt::Ratio,
        &records_per_request,
    );
    row("server CPU during runs, cores (mean)".into(), Fmt::Ratio, &|r| {
        cores(r, |u| u.server)
    });
    row("load generator CPU, cores (mean)".into(), Fmt::Cores, &|r| {
        cores(r, |u| u.load_generator)
    });
    row("other processes' CPU, cores (max)".into(), Fmt::Cores, &|r| {
        max_cores(r, |u| u.other)
    });
    row("irq + softirq (loopback TCP), cores (mean)".into(), Fmt::Cores, &|r| {
        cores(r, |u| u.irq)
    });
    // Steal accrues when a halted vCPU waits for the host to run it again,
    // so a server that often sleeps and wakes shows more of it than a busy one.
    row("hypervisor steal, cores (mean)".into(), Fmt::Cores, &|r| {
        cores(r, |u| u.steal)
    });
    row("hypervisor steal, cores (max)".into(), Fmt::Cores, &|r| {
        max_cores(r, |u| u.steal)
    });
    row("idle RSS after init, MiB".into(), Fmt::MiB, &|r| {
        r.idle_rss.map_or(Cell::None, |v| Cell::Num(v as f64))
    });
    row("peak RSS over the run (VmHWM), MiB".into(), Fmt::MiB, &|r| {
        r.peak_rss.map_or(Cell::None, |v| Cell::Num(v as f64))
    });

    let mut out = String::new();
    let _ = writeln!(out, "- Command: `{}`", info.command);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        out,
        "- Machine: {nproc} CPUs (nproc), {}, {}, Linux {}{}; {}",
        cpu_model(),
        mem_total(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        cpu_idle(),
        now()
    );
    if let [Some(before), Some(after)] = info.disk {
        let _ = writeln!(
            out,
            "- Disk: a 4 KiB write + fdatasync in the work directory ({}) took {:.0} µs (median; p90 {:.0}) before the scenarios and {:.0} µs (p90 {:.0}) after.",
            info.fs.as_deref().unwrap_or("file system unknown"),
            before.0,
            before.1,
            after.0,
            after.1
        );
    }
    if let Some(f) = info.fs.as_deref().filter(|f| crate::disk::is_volatile(f)) {
        let _ = writeln!(
            out,
            "- **The work directory was on {f}, where fsync writes nothing durable: Coffer's audit figures here are not those of a disk.**"
        );
    }
    let versions: Vec<String> = results
        .iter()
        .map(|r| format!("{}: {}", r.label, r.version.lines().next().unwrap_or("")))
        .collect();
    let _ = writeln!(out, "- Versions: {}", versions.join("; "));
    let _ = writeln!(
        out,
        "- Load: {} keep-alive HTTP/1.1 connections, {} load-generator thread(s) on the same machine, {} s warm-up + {} s measured per scenario and target, \
         alternating targets per scenario{}; 32-byte plaintexts, key `bench` (aes256-gcm96), a token whose policy allows only encrypt and decrypt with it.",
        info.connections,
        info.threads,
        info.warmup,
        info.duration,
        if info.rounds > 1 {
            format!(
                ", {} rounds; each target's median round is shown (CPU and audit figures cover all rounds)",
                info.rounds
            )
        } else {
            String::new()
        }
    );
    out.push('\n');
    write_table(&mut out, &head, &rows, 1);
    out.push('\n');
    out.push_str(
        "Ratios are left ÷ right (throughput: above 1 is better; latency, bytes, memory: below 1 is better). \
         Items/s = req/s × items per request. Latency is per request, measured by the client. \
         Audit bytes: per request, the growth of Coffer's audit.db in whole pages (page_count × page_size, pages still in the WAL included: rows, checkpoints, sessions, page overhead) and of OpenBao's audit.log.\n",
    );
    render_sweep(&mut out, info, results);
    let mut notes = Vec::new();
    for r in results {
        notes.extend(r.notes.iter().map(|n| format!("- {n}")));
        for (s, o) in &r.outcomes {
            match o {
                Outcome::Refused(msg) => notes.push(format!("- {} refused `{}`: {msg}", r.label, s.name())),
                Outcome::Measured(m) => {
                    if let Some(e) = &m.first_error {
                        notes.push(format!("- {} `{}`, first error: {e}", r.label, s.name()));
                    }
                }
            }
        }
        for (s, n, o) in &r.sweep {
            if let Outcome::Measured(m) = o
                && let Some(e) = &m.first_error
                && *n != info.connections
            {
                notes.push(format!(
                    "- {} `{}` at {n} connections, first error: {e}",
                    r.label,
                    s.name()
                ));
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "{}", n.replace('\n', " "));
        }
    }
    out
}

/// Throughput and p99 by connection count, then each target's best count.
fn render_sweep(out: &mut String, info: &RunInfo, results: &[TargetResult]) {
    let swept: Vec<&TargetResult> = results.iter().filter(|r| !r.sweep.is_empty()).collect();
    if swept.is_empty() {
        return;
    }
    let mut head = vec!["scenario".to_owned(), "connections".to_owned()];
    for r in &swept {
        head.push(format!("{} req/s", r.label));
        head.push(format!("{} p99 ms", r.label));
        head.push(format!("{} errors", r.label));
    }
    let pair = swept.len() == 2;
    if pair {
        head.push(format!("{} ÷ {}", swept[0].label, swept[1].label));
    }
    let get = |r: &TargetResult, s: Scenario, n: usize| {
        r.sweep.iter().find_map(|(x, k, o)| match o {
            Outcome::Measured(m) if *x == s && *k == n => Some(m.clone()),
            _ => None,
        })
    };
    // A target's three columns: the rate as given, p99, errors.
    let cells = |m: &crate::load::Measured, rate: String| {
        [
            rate,
            show(&Cell::Num(m.p99.as_secs_f64() * 1e3), Fmt::Millis),
            thousands(m.errors as f64),
        ]
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in [Scenario::Encrypt, Scenario::Decrypt] {
        if !swept.iter().any(|r| r.sweep.iter().any(|x| x.0 == s)) {
            continue;
        }
        let mut bests: Vec<Option<(usize, crate::load::Measured)>> = vec![None; swept.len()];
        for &n in &info.sweep {
            let mut line = vec![s.name().to_owned(), n.to_string()];
            let mut rates = Vec::new();
            for (k, r) in swept.iter().enumerate() {
                match get(r, s, n) {
                    Some(m) => {
                        line.extend(cells(&m, thousands(m.per_second())));
                        rates.push(Cell::Num(m.per_second()));
                        if bests[k].as_ref().is_none_or(|b| m.per_second() > b.1.per_second()) {
                            bests[k] = Some((n, m));
                        }
                    }
                    None => {
                        line.extend(["—".to_owned(), "—".to_owned(), "—".to_owned()]);
                        rates.push(Cell::None);
                    }
                }
            }
            if pair {
                line.push(ratio(&rates[0], &rates[1], Fmt::Count));
            }
            rows.push(line);
        }
        let mut line = vec![s.name().to_owned(), "**best**".to_owned()];
        let mut rates = Vec::new();
        for b in &bests {
            match b {
                Some((n, m)) => {
                    line.extend(cells(m, format!("**{}** (at {n})", thousands(m.per_second()))));
                    rates.push(Cell::Num(m.per_second()));
                }
                None => {
                    line.extend(["—".to_owned(), "—".to_owned(), "—".to_owned()]);
                    rates.push(Cell::None);
                }
            }
        }
        if pair {
            line.push(format!("**{}**", ratio(&rates[0], &rates[1], Fmt::Count)));
        }
        rows.push(line);
    }
    let _ = writeln!(
        out,
        "\nSingle requests by connection count (`--sweep`; the same load generator, each count's median round; \
         {} connections are the table's runs above). **best** is each target's highest throughput over the counts, \
         and the ratio compares the two bests.\n",
        info.connections
    );
    write_table(out, &head, &rows, 2);
}

/// A markdown table: the first `text_columns` left-aligned, the numbers right-aligned.
fn write_table(out: &mut String, head: &[String], rows: &[Vec<String>], text_columns: usize) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let align: Vec<&str> = (0..head.len())
        .map(|i| if i < text_columns { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(51234567.0), "51,234,567");
    }

    #[test]
    fn a_figure_over_nothing_prints_as_missing() {
        assert_eq!(show(&Cell::Num(f64::NAN), Fmt::Cores), "—");
        assert_eq!(show(&Cell::Num(f64::INFINITY), Fmt::Count), "—");
        assert_eq!(show(&Cell::Num(0.954), Fmt::Cores), "0.95");
    }
}
