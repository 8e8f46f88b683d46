//! The run's work directory: both servers' data and logs, several GB on a
//! full run (OpenBao's audit log alone grows by 389 KB per 1,000-item batch).
//! It is removed when the run ends or is interrupted; a run killed outright
//! leaves it, and its servers, behind, so each run first stops the servers
//! and removes the directories of earlier runs that no process holds any more.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

const PREFIX: &str = "coffer-bench-";
/// Locked (`flock`) by the run that owns the directory, for as long as it lives.
const LOCK: &str = ".running";
/// The servers the run started, one per line: process id and start time
/// (`/proc/PID/stat`, field 22), so a reused id is told apart.
const SERVERS: &str = ".servers";
/// How long a left-behind server may take to die before its directory is kept.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// A directory younger than this may be a run between creating it and locking it.
const GRACE: Duration = Duration::from_secs(60);

pub(crate) struct WorkDir {
    dir: TempDir,
    _lock: File,
}

impl WorkDir {
    /// A new work directory under `parent`, held by this process.
    pub(crate) fn create(parent: &Path) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(parent)?;
        let lock = File::create(dir.path().join(LOCK))?;
        lock.lock()?;
        Ok(WorkDir { dir, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Notes a server this run started, for a later run to stop if this one is killed.
    pub(crate) fn note_server(&self, child: &std::process::Child) -> io::Result<()> {
        let pid = child.id();
        let started = start_time(pid).ok_or_else(|| io::Error::other(format!("no /proc/{pid}/stat")))?;
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(self.path().join(SERVERS))?;
        writeln!(f, "{pid} {started}")
    }

    /// Keeps the directory (for its logs) past this run; the next run removes it.
    pub(crate) fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// Removes the work directories under `parent` left by runs that no longer
/// hold them, once their servers are gone; returns what it removed.
/// Directories without the lock file (not made by this harness, or by one
/// from before it) are left alone, and so is one whose servers would not stop.
pub(crate) fn remove_stale(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX));
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        let old = lock
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|age| age >= GRACE));
        if !old || lock.try_lock().is_err() {
            continue;
        }
        if !stop_servers(&path) {
            eprintln!(
                "keeping {}: a server of the run that left it did not stop",
                path.display()
            );
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Kills the servers noted in `dir` that still run, and waits for them to
/// go; false if one is still there after `STOP_WAIT`.
fn stop_servers(dir: &Path) -> bool {
    let Ok(noted) = std::fs::read_to_string(dir.join(SERVERS)) else {
        return true;
    };
    let running: Vec<u32> = noted
        .lines()
        .filter_map(|l| {
            let (pid, started) = l.split_once(' ')?;
            let pid = pid.parse().ok()?;
            // Another process under a reused id has another start time.
            (start_time(pid)? == started.trim().parse::<u64>().ok()? && !exited(pid)).then_some(pid)
        })
        .collect();
    for pid in &running {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let deadline = Instant::now() + STOP_WAIT;
    while running.iter().any(|&pid| !exited(pid)) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Clock ticks after boot at which the process started (field 22).
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Gone, or a zombie (which holds no files) its new parent has not reaped yet.
fn exited(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|f| f.first().is_some_and(|state| state == "Z" || state == "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a killed run leaves: its directory, the lock file no process holds.
    /// (Made by hand: a lock taken and dropped here could still be held for a
    /// moment by a child another test is forking.)
    fn left_behind(parent: &Path) -> PathBuf {
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(parent)
            .unwrap()
            .keep();
        File::create(dir.join(LOCK)).unwrap();
        dir
    }

    fn age(dir: &Path, by: Duration) {
        let f = File::options().write(true).open(dir.join(LOCK)).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn only_directories_no_run_holds_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let held = WorkDir::create(parent.path()).unwrap();
        let left = left_behind(parent.path());
        let fresh = left_behind(parent.path());
        let unmarked = parent.path().join(format!("{PREFIX}old"));
        std::fs::create_dir(&unmarked).unwrap();
        let other = parent.path().join("not-ours");
        std::fs::create_dir(&other).unwrap();
        File::create(other.join(LOCK)).unwrap();
        age(held.path(), GRACE * 2);
        age(&left, GRACE * 2);
        age(&other, GRACE * 2);

        assert_eq!(remove_stale(parent.path()), vec![left.clone()]);
        assert!(!left.exists());
        assert!(held.path().exists(), "its run still holds it");
        assert!(fresh.exists(), "too young to tell from a run still starting");
        assert!(unmarked.exists() && other.exists());

        let held_path = held.path().to_path_buf();
        age(&fresh, GRACE * 2);
        drop(held);
        assert!(!held_path.exists(), "removed when its run ends");
        assert_eq!(remove_stale(parent.path()), vec![fresh]);
    }

    #[test]
    fn a_killed_runs_servers_are_stopped_and_no_other_process() {
        let parent = tempfile::tempdir().unwrap();
        let path = left_behind(parent.path());
        let mut server = std::process::Command::new("sleep").arg("600").spawn().unwrap();
        // A process id since reused by another program: same id, another start time.
        let mut other = std::process::Command::new("sleep").arg("600").spawn().unwrap();
        let started = |c: &std::process::Child| start_time(c.id()).unwrap();
        let noted = format!(
            "{} {}\n{} {}\n99999999 1\nnot a line\n",
            server.id(),
            started(&server),
            other.id(),
            started(&other) + 1
        );
        std::fs::write(path.join(SERVERS), noted).unwrap();
        age(&path, GRACE * 2);

        assert_eq!(remove_stale(parent.path()), vec![path]);
        // Already dead (remove_stale waited for it): no wait here that could hang.
        let status = server.try_wait().unwrap().expect("the left-behind server was stopped");
        assert!(!status.success(), "{status}");
        assert!(other.try_wait().unwrap().is_none(), "not a server of the run");
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn reads_its_own_start_time_and_state() {
        let me = std::process::id();
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(!exited(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        while child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(exited(child.id()), "reaped");
    }
}
