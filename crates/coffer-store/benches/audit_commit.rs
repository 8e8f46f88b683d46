//! What one durable audit commit costs on this machine: wall time and CPU
//! time per batch, by batch size, through the same appender the server's
//! audit writer uses (WAL, synchronous=FULL: every commit is fsynced).
//! Run: `cargo bench -p coffer-store --bench audit_commit`.

use std::time::Instant;

use coffer_store::audit::{AuditCheckpointRow, AuditRecordRow, AuditStore};

/// This thread's user + system CPU time in clock ticks (1/100 s).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // On the project's disk, not /tmp: a tmpfs would make fsync free.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = AuditStore::open(dir.path()).await.expect("audit store");
    let mut appender = store.appender().expect("appender");
    let commits = 2000;
    let mut seq = 0u64;
    println!("| records per commit | wall µs/commit | CPU µs/commit | wall µs/record |");
    println!("|---:|---:|---:|---:|");
    for size in [1usize, 5, 16, 64, 256] {
        let (t, cpu) = (Instant::now(), thread_cpu_ticks());
        for _ in 0..commits {
            let rows: Vec<AuditRecordRow> = (0..size)
                .map(|_| {
                    seq += 1;
                    // The size of a sealed single-request record (prev + payload ≈ 365 bytes).
                    AuditRecordRow {
                        seq,
                        session: 1,
                        prev: vec![7; 32],
                        payload: vec![9; 333],
                    }
                })
                .collect();
            let checkpoint = AuditCheckpointRow {
                seq,
                head: vec![1; 32],
                time: 0,
                signature: vec![3; 64],
            };
            appender.append(None, &rows, Some(&checkpoint)).expect("append");
        }
        let wall = t.elapsed().as_secs_f64() * 1e6 / commits as f64;
        let cpu = (thread_cpu_ticks() - cpu) as f64 * 1e4 / commits as f64;
        println!("| {size} | {wall:.0} | {cpu:.0} | {:.1} |", wall / size as f64);
    }
}
