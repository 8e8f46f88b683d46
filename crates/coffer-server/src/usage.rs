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

/// Takes `counts` (version, messages) from the versions' allowances,
/// reserving more in storage where they fall short. Returns a version that
/// has sealed all it may, if one has.
async fn admit(core: &Core, id: &KeyId, ring: &Keyring, counts: &[(u32, u64)]) -> ApiResult<Option<u32>> {
    let limit = core.options.encryption_limit;
    for &(version, n) in counts {
        // A version without material fails its items on its own.
        let Some(a) = ring.allowance(version) else { continue };
        if a.take(n) {
            continue;
        }
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
                return Ok(Some(version));
            }
            let block = a.next_block(need, MAX_BLOCK.min(limit / 64));
            if core.store.reserve_encryptions(&at, block, limit).await? {
                a.grant(block);
            } else if block > need && core.store.reserve_encryptions(&at, need, limit).await? {
                a.grant(need);
            } else {
                a.exhaust();
                return Ok(Some(version));
            }
        }
    }
    Ok(None)
}

/// Counts a request's encryptions against each version's limit, and
/// returns the keyring to seal them with: a latest version at its limit is
/// rotated out first (the request then counts against the new one).
pub(crate) async fn admitted<F>(
    core: &Core,
    u: &Unsealed,
    id: &KeyId,
    mut ring: Arc<Keyring>,
    counts: F,
) -> ApiResult<Arc<Keyring>>
where
    F: Fn(&Keyring) -> ApiResult<Vec<(u32, u64)>>,
{
    for _ in 0..3 {
        let wanted = counts(&ring)?;
        match admit(core, id, &ring, &wanted).await? {
            None => return Ok(ring),
            Some(v) if v == ring.config.latest_version => {
                ring = crate::transit::mutate(core, u, id, |r, tenant, now| {
                    if r.config.latest_version != v {
                        return Ok(Vec::new());
                    }
                    tracing::info!(key = %id.name, tenant = %id.namespace, version = v,
                        "key rotated: its latest version sealed as many messages as a version may");
                    Ok(vec![crate::transit::rotate_op(id, r, tenant, now)?])
                })
                .await?;
            }
            Some(v) => {
                return Err(ApiError::bad(format!(
                    "key version {v} has sealed as many messages as a version may ({}): encrypt with the latest version",
                    core.options.encryption_limit
                )));
            }
        }
    }
    Err(ApiError::bad(format!(
        "this request seals more messages than a key version may ({})",
        core.options.encryption_limit
    )))
}
