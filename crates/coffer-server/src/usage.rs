//! Each transit key version seals a bounded number of messages: with random
//! 96-bit nonces, NIST SP 800-38D allows about 2^32 per key. Encryptions are
//! counted in storage ahead of use (see `Allowance`), and a latest version
//! that reaches the limit is rotated out, as Vault does for its own barrier
//! key.

use std::sync::Arc;

use coffer_core::keyring::Keyring;
use coffer_store::VersionRef;

use crate::core::{Core, KeyId, Unsealed};
use crate::error::{ApiError, ApiResult};

/// Vault's default for its barrier key: 0.9 × 2^32.
pub(crate) const DEFAULT_LIMIT: u64 = 3_865_470_566;
/// The most reserved in storage at once: one write per this many messages.
const MAX_BLOCK: u64 = 1 << 20;

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
        // One reservation at a time: the others find it covers them too.
        let _one = core.usage.lock().await;
        let at = VersionRef {
            namespace: &id.namespace,
            mount: &id.mount,
            name: &id.name,
            version,
        };
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
            match core.store.reserve_encryptions(&at, need, block, limit).await? {
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
