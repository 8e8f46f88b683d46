//! Keeping secrets out of places they could leak from: request and
//! response buffers wiped after use, no core dumps, memory locked into RAM
//! where the system permits it.

use serde_json::Value;
use zeroize::Zeroize;

/// Overwrites every string in a JSON value (plaintexts, tokens, keys arrive
/// and leave as base64 strings).
pub(crate) fn wipe_value(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe_value),
        Value::Object(m) => m.values_mut().for_each(wipe_value),
        _ => {}
    }
}

/// Bytes wiped when the last reference is dropped (a response body, once
/// hyper has written it).
pub(crate) struct Wiped(pub(crate) Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Appends to a zeroizing buffer; when it must grow, the old allocation is
/// wiped rather than left behind by a reallocation.
#[inline]
pub(crate) fn extend_wiped(buf: &mut zeroize::Zeroizing<Vec<u8>>, data: &[u8]) {
    // Serialisers write many small pieces: the common case stays inline.
    if buf.capacity() - buf.len() < data.len() {
        grow_wiped(buf, data.len());
    }
    buf.extend_from_slice(data);
}

#[cold]
#[inline(never)]
fn grow_wiped(buf: &mut zeroize::Zeroizing<Vec<u8>>, more: usize) {
    let need = buf.len() + more;
    let mut bigger = zeroize::Zeroizing::new(Vec::with_capacity(need.max(buf.capacity() * 2)));
    bigger.extend_from_slice(buf);
    *buf = bigger;
}

/// A writer into a buffer that is wiped when dropped and when it grows.
pub(crate) struct WipingWriter(pub(crate) zeroize::Zeroizing<Vec<u8>>);

impl std::io::Write for WipingWriter {
    #[inline]
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        extend_wiped(&mut self.0, data);
        Ok(data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        extend_wiped(&mut self.0, data);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`harden_process`] managed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    pub core_dumps_disabled: bool,
    pub memory_locked: bool,
}

/// Disables core dumps (`PR_SET_DUMPABLE 0`, `RLIMIT_CORE 0`) and, unless
/// `disable_mlock`, locks the process's memory so keys never reach swap.
/// Best effort: what is not permitted is logged, not fatal.
pub fn harden_process(disable_mlock: bool) -> Hardening {
    let core_dumps_disabled = disable_core_dumps();
    let memory_locked = !disable_mlock && lock_memory();
    Hardening {
        core_dumps_disabled,
        memory_locked,
    }
}

#[cfg(target_os = "linux")]
fn disable_core_dumps() -> bool {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let dumpable = set_dumpable_behavior(DumpableBehavior::NotDumpable);
    let rlimit = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    if let Err(e) = dumpable.as_ref().and(rlimit.as_ref()) {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    dumpable.is_ok() && rlimit.is_ok()
}

#[cfg(not(target_os = "linux"))]
fn disable_core_dumps() -> bool {
    tracing::warn!("disabling core dumps is only implemented on Linux");
    false
}

/// Whether `CAP_IPC_LOCK` is in this process's effective set.
#[cfg(target_os = "linux")]
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(target_os = "linux")]
fn lock_memory() -> bool {
    use rustix::mm::{MlockAllFlags, mlockall};
    use rustix::process::{Resource, getrlimit};
    // With MCL_FUTURE and a small RLIMIT_MEMLOCK, later allocations would fail
    // and abort the server, so only lock when the limit cannot bite.
    let unlimited = getrlimit(Resource::Memlock).current.is_none();
    if !unlimited && !has_ipc_lock() {
        tracing::warn!(
            "memory not locked: RLIMIT_MEMLOCK is limited and CAP_IPC_LOCK is missing; \
             keys could be swapped out (grant CAP_IPC_LOCK, or set disable_mlock = true to silence this)"
        );
        return false;
    }
    // ONFAULT: pages are locked as they are touched, so address space an
    // allocator only reserves does not become resident.
    match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "memory not locked: mlockall failed");
            false
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lock_memory() -> bool {
    tracing::warn!("memory locking is only implemented on Linux");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wipe_value_clears_every_string() {
        let mut v = json!({ "plaintext": "c2VjcmV0", "batch": [{ "p": "eA==" }], "n": 3 });
        wipe_value(&mut v);
        assert_eq!(v, json!({ "plaintext": "", "batch": [{ "p": "" }], "n": 3 }));
    }

    #[test]
    fn extend_wiped_keeps_contents_across_growth() {
        let mut b = zeroize::Zeroizing::new(Vec::with_capacity(2));
        for chunk in [&b"ab"[..], b"cde", b"", b"fghijklmnop"] {
            extend_wiped(&mut b, chunk);
        }
        assert_eq!(&b[..], b"abcdefghijklmnop");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn core_dumps_are_disabled() {
        use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};
        assert!(harden_process(true).core_dumps_disabled);
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
        assert_eq!(getrlimit(Resource::Core).current, Some(0));
    }
}
