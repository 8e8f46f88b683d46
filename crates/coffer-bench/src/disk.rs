//! The disk's durable-write latency where the servers keep their data: a
//! 4 KiB overwrite plus `fdatasync`, the floor under every audit commit.
//! Taken before and after the scenarios, because the host's disk changes
//! speed from one minute to the next (Coffer waits on it; OpenBao's file
//! audit device never syncs, so its figures do not move with it).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const SYNCS: usize = 200;
const FILE: u64 = 1 << 20;

/// Median and 90th percentile of `SYNCS` writes + fdatasyncs, in µs.
pub(crate) fn sync_latency(dir: &Path) -> std::io::Result<(f64, f64)> {
    let path = dir.join("disk-probe");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    // Written in full first, so each probe overwrites in place (no new extents to commit).
    f.write_all_at(&vec![0u8; FILE as usize], 0)?;
    f.sync_all()?;
    let block = vec![0x5Au8; 4096];
    let mut us = Vec::with_capacity(SYNCS);
    for i in 0..SYNCS as u64 {
        let t = Instant::now();
        f.write_all_at(&block, (i * 4096) % FILE)?;
        f.sync_data()?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    us.sort_by(f64::total_cmp);
    Ok((us[SYNCS / 2], us[SYNCS * 9 / 10]))
}

/// The file system type of `dir` (`stat -f`), e.g. "ext2/ext3" or "tmpfs".
pub(crate) fn fs_type(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !t.is_empty()).then_some(t)
}

/// File systems whose fsync writes nothing durable: Coffer's audit would look free there.
pub(crate) fn is_volatile(fs: &str) -> bool {
    matches!(fs, "tmpfs" | "ramfs")
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let (p50, p90) = super::sync_latency(dir.path()).unwrap();
        assert!(p50 > 0.0 && p90 >= p50, "{p50} {p90}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
