//! Each transit key version seals a bounded number of messages: with random
//! 96-bit nonces, NIST SP 800-38D allows about 2^32 per key. Encryptions are
//! counted in storage ahead of use (see `Allowance`), and a latest version
//! that reaches the limit is rotated out, as Vault does for its own barrier
//! key.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use coffer_core::keyring::Keyring;
use coffer_store::{Reservation, Store, VersionRef};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::core::{Core, KeyId, Unsealed};
use crate::error::{ApiError, ApiResult};

/// Vault's default for its barrier key: 0.9 × 2^32.
pub(crate) const DEFAULT_LIMIT: u64 = 3_865_470_566;
/// The most reserved in storage at once: one write per this many messages.
const MAX_BLOCK: u64 = 1 << 20;
/// Locks that keep two requests from reserving for one version at once.
const STRIPES: usize = 64;
/// Reservations written in one transaction at most (at most `STRIPES` wait at once).
const MAX_GROUP: usize = STRIPES;

/// Reservations in storage, written by one task in groups: keys read back
/// into the cache each need one, and concurrent ones share a commit.
pub(crate) struct Usage {
    stripes: Vec<Mutex<()>>,
    tx: mpsc::Sender<Job>,
}

struct Job {
    id: KeyId,
    version: u32,
    need: u64,
    block: u64,
    limit: u64,
    reply: oneshot::Sender<Result<u64, String>>,
}

/// One reservation, owned: (key, version, need, block, limit).
type Ask = (KeyId, u32, u64, u64, u64);
/// Writes a group of reservations in one transaction: one answer per ask.
type Writer = Arc<dyn Fn(Vec<Ask>) -> Pin<Box<dyn Future<Output = Result<Vec<u64>, String>> + Send>> + Send + Sync>;

impl Usage {
    /// Starts the writer task: needs a tokio runtime, which must outlive the core.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        Self::with_writer(Arc::new(move |asks: Vec<Ask>| {
            let store = store.clone();
            Box::pin(async move {
                let refs: Vec<Reservation<'_>> = asks
                    .iter()
                    .map(|(id, version, need, block, limit)| Reservation {
                        version: VersionRef {
                            namespace: &id.namespace,
                            mount: &id.mount,
                            name: &id.name,
                            version: *version,
                        },
                        need: *need,
                        block: *block,
                        limit: *limit,
                    })
                    .collect();
                store.reserve_encryptions(&refs).await.map_err(|e| e.to_string())
            })
        }))
    }

    fn with_writer(writer: Writer) -> Self {
        let (tx, rx) = mpsc::channel(MAX_GROUP);
        tokio::spawn(write_groups(writer, rx));
        Usage {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            tx,
        }
    }

    fn stripe(&self, id: &KeyId, version: u32) -> &Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&id.namespace, &id.mount, &id.name, version).hash(&mut h);
        &self.stripes[(h.finish() % STRIPES as u64) as usize]
    }

    async fn reserve(&self, id: &KeyId, version: u32, need: u64, block: u64, limit: u64) -> ApiResult<u64> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id: id.clone(),
            version,
            need,
            block,
            limit,
            reply,
        };
        let stopped = || ApiError::Internal("the reservation writer stopped".into());
        self.tx.send(job).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|e| ApiError::Internal(format!("reserving encryptions: {e}")))
    }
}

async fn write_groups(writer: Writer, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let got = match reserve_group(&writer, &jobs).await {
            // One failure fails a group: each is tried alone, so only its own fails.
            Err(_) if jobs.len() > 1 => {
                let mut each = Vec::with_capacity(jobs.len());
                for j in &jobs {
                    each.push(
                        reserve_group(&writer, std::slice::from_ref(j))
                            .await
                            .and_then(|g| g.first().copied().ok_or_else(|| "no answer".to_owned())),
                    );
                }
                each
            }
            Err(e) => vec![Err(e)],
            Ok(got) => got.into_iter().map(Ok).collect(),
        };
        for (j, g) in jobs.into_iter().zip(got) {
            let _ = j.reply.send(g);
        }
    }
}

/// One transaction for `jobs`, on a task of its own: a panic in the store
/// fails these reservations, not the writer. One answer per job, or an error.
async fn reserve_group(writer: &Writer, jobs: &[Job]) -> Result<Vec<u64>, String> {
    let asks: Vec<Ask> = jobs
        .iter()
        .map(|j| (j.id.clone(), j.version, j.need, j.block, j.limit))
        .collect();
    let n = asks.len();
    let got = tokio::spawn(writer(asks))
        .await
        .map_err(|e| format!("the store failed: {e}"))??;
    if got.len() != n {
        return Err(format!("the store answered {} of {n} reservations", got.len()));
    }
    Ok(got)
}

/// The keyring a request seals with, and versions it named that may seal no more.
pub(crate) struct Admitted {
    pub(crate) ring: Arc<Keyring>,
    pub(crate) spent: Vec<u32>,
}

impl Admitted {
    /// Refuses an item that would seal under a spent version.
    pub(crate) fn check(&self, version: u32) -> ApiResult<()> {
        if self.spent.contains(&version) {
            return Err(ApiError::bad(format!(
                "key version {version} has sealed as many messages as a version may: encrypt with the latest version"
            )));
        }
        Ok(())
    }
}

/// Takes `counts` (version, messages) from the versions' allowances,
/// reserving more in storage where they fall short. Returns the versions
/// that may seal no more.
async fn admit(core: &Core, id: &KeyId, ring: &Keyring, counts: &[(u32, u64)]) -> ApiResult<Vec<u32>> {
    let limit = core.options.encryption_limit;
    let mut spent = Vec::new();
    for &(version, n) in counts {
        // A version without material fails its items on its own.
        let Some(a) = ring.allowance(version) else { continue };
        if a.take(n) {
            continue;
        }
        // One reservation per version at a time: the others find it covers them too.
        let _one = core.usage.stripe(id, version).lock().await;
        loop {
            let need = a.shortfall();
            if need == 0 {
                break;
            }
            if a.is_exhausted() {
                spent.push(version);
                break;
            }
            let block = a.next_block(need, MAX_BLOCK.min(limit / 64));
            match core.usage.reserve(id, version, need, block, limit).await? {
                0 => a.exhaust(),
                got => a.grant(got),
            }
        }
    }
    Ok(spent)
}

/// Counts a request's encryptions against each version's limit, and
/// returns the keyring to seal them with: a latest version at its limit is
/// rotated out first (the request then counts against the new one), and an
/// older version named by an item that is spent fails that item.
pub(crate) async fn admitted<F>(
    core: &Core,
    u: &Unsealed,
    id: &KeyId,
    mut ring: Arc<Keyring>,
    counts: F,
) -> ApiResult<Admitted>
where
    F: Fn(&Keyring) -> ApiResult<Vec<(u32, u64)>>,
{
    for _ in 0..3 {
        let wanted = counts(&ring)?;
        let spent = admit(core, id, &ring, &wanted).await?;
        let latest = ring.config.latest_version;
        if !spent.contains(&latest) {
            return Ok(Admitted { ring, spent });
        }
        // Another request may have rotated it already.
        let current = crate::transit::require(core, u, id).await?;
        if current.config.latest_version != latest {
            ring = current;
            continue;
        }
        ring = crate::transit::mutate_as(core, u, id, Some("encryption limit"), |r, tenant, now| {
            if r.config.latest_version != latest {
                return Ok(Vec::new());
            }
            tracing::info!(key = %id.name, tenant = %id.namespace, version = latest,
                "key rotated: its latest version sealed as many messages as a version may");
            Ok(vec![crate::transit::rotate_op(id, r, tenant, now)?])
        })
        .await?;
    }
    Err(ApiError::bad(format!(
        "this request seals more messages than a key version may ({})",
        core.options.encryption_limit
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KeyId {
        KeyId {
            namespace: String::new(),
            mount: "transit".into(),
            name: name.into(),
        }
    }

    /// Grants each ask its block; a group with key "bad" fails, one with "boom" panics.
    fn fake() -> Usage {
        Usage::with_writer(Arc::new(|asks: Vec<Ask>| {
            Box::pin(async move {
                if asks.iter().any(|a| a.0.name == "boom") {
                    panic!("store panicked");
                }
                if asks.iter().any(|a| a.0.name == "bad") {
                    return Err("disk full".to_owned());
                }
                Ok(asks.iter().map(|a| a.3).collect())
            })
        }))
    }

    #[tokio::test]
    async fn a_failing_reservation_fails_alone_and_the_writer_outlives_a_panic() {
        let u = fake();
        let (good, bad, boom) = (key("good"), key("bad"), key("boom"));
        // Sent together, they share a group; the group fails, then each is tried alone.
        let (ok, err) = tokio::join!(u.reserve(&good, 1, 1, 64, 100), u.reserve(&bad, 1, 1, 64, 100));
        assert_eq!(ok.unwrap(), 64);
        assert!(err.unwrap_err().to_string().contains("disk full"));
        let (ok, err) = tokio::join!(u.reserve(&good, 1, 1, 32, 100), u.reserve(&boom, 1, 1, 64, 100));
        assert_eq!(ok.unwrap(), 32);
        assert!(err.unwrap_err().to_string().contains("the store failed"));
        // The writer is still there.
        assert_eq!(u.reserve(&good, 2, 1, 8, 100).await.unwrap(), 8);
    }
}
