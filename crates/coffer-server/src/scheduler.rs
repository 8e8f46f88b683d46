//! Background work: automatic rotation of keys and tenant keys that are due.

use std::sync::Arc;
use std::time::Duration;

use coffer_core::keyring::KeyConfig;
use coffer_store::{DuePlace, TransitKeyRow};

use crate::core::{Core, KeyId, Unsealed};
use crate::error::{ApiError, ApiResult};
use crate::transit::{mutate_as, next_rotation, rotate_op};

/// What one pass rotated.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub keys: usize,
    pub tenants: usize,
}

/// Due items read at a time; a pass walks them all, page by page.
const BATCH: u32 = 1000;

/// Rotates every key and tenant key whose period has passed. A key is
/// rotated once per period: the due check is repeated under the write lock
/// on the stored state, so a second pass (or a second node) finds it not due.
/// A seal stops the pass; an item that fails is logged and skipped, so one
/// bad row does not hold back the rest.
pub async fn rotate_due(core: &Core) -> ApiResult<Rotated> {
    let Ok(u) = core.unsealed() else {
        return Ok(Rotated::default());
    };
    let now = core.now();
    let mut done = Rotated::default();
    // Paged past keys that stay due (one whose rotation fails), so none holds back the rest.
    let mut place = DuePlace::start();
    loop {
        let page = core.store.transit_keys_due(now, &place, BATCH).await?;
        let Some(last) = page.last() else { break };
        place = DuePlace {
            deadline: last.next_rotation.unwrap_or(i64::MIN),
            namespace: last.namespace.clone(),
            mount: last.mount.clone(),
            name: last.name.clone(),
        };
        let full = page.len() == BATCH as usize;
        for row in page {
            if !core.still_unsealed(&u) {
                return Ok(done);
            }
            rotate_one(core, &u, &row, &mut done).await;
        }
        if !full {
            break;
        }
    }
    let mut place = DuePlace::start();
    loop {
        let page = core.store.namespaces_due(now, &place, BATCH).await?;
        let Some(last) = page.last() else { break };
        place = DuePlace {
            deadline: last.next_rotation.unwrap_or(i64::MIN),
            namespace: last.name.clone(),
            ..DuePlace::start()
        };
        let full = page.len() == BATCH as usize;
        for due in page {
            if !core.still_unsealed(&u) {
                return Ok(done);
            }
            // The walk's rows are not checked; the tenant's own read is.
            let n = match core.store.namespace(&due.name).await {
                Ok(Some(n)) if n.next_rotation.is_some_and(|t| t <= now) => n,
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(tenant = %due.name, "not rotating a tenant key due for rotation: {e}");
                    continue;
                }
            };
            // A shredded tenant's rows put back from a copy are not worked on.
            if core.store.is_tombstoned(&n.id).await? {
                continue;
            }
            let rotated = match crate::audit_record::rotation(core, &n.name, None, None, "schedule").await {
                Ok(()) => crate::namespaces::rotate_tenant_key(core, &u, &n.name).await,
                Err(e) => Err(e),
            };
            match rotated {
                Ok(_) => {
                    done.tenants += 1;
                    tracing::info!(tenant = %n.name, "tenant key rotated on schedule");
                }
                Err(e) => tracing::error!(tenant = %n.name, "scheduled tenant key rotation failed: {e}"),
            }
        }
        if !full {
            break;
        }
    }
    Ok(done)
}

/// Rotates one due key, logging (not returning) a failure.
async fn rotate_one(core: &Core, u: &Unsealed, row: &TransitKeyRow, done: &mut Rotated) {
    let id = KeyId {
        namespace: row.namespace.clone(),
        mount: row.mount.clone(),
        name: row.name.clone(),
    };
    match rotate_key_if_due(core, u, &id, &row.config).await {
        Ok(true) => {
            done.keys += 1;
            tracing::info!(key = %row.name, tenant = %row.namespace, "rotated on schedule");
        }
        Ok(false) => {}
        Err(e) => tracing::error!(key = %row.name, tenant = %row.namespace, "scheduled rotation failed: {e}"),
    }
}

async fn rotate_key_if_due(core: &Core, u: &Unsealed, id: &KeyId, stored: &str) -> ApiResult<bool> {
    let before: KeyConfig =
        serde_json::from_str(stored).map_err(|e| ApiError::Internal(format!("stored key {}: {e}", id.name)))?;
    let mut rotated = false;
    mutate_as(core, u, id, Some("schedule"), |ring, tenant, now| {
        if ring.config.latest_version != before.latest_version || next_rotation(ring).is_none_or(|t| t > now) {
            return Ok(Vec::new());
        }
        rotated = true;
        Ok(vec![rotate_op(id, ring, tenant, now)?])
    })
    .await?;
    Ok(rotated)
}

/// Revokes tokens that have expired, with their children (a child does not
/// outlive its parent, as in Vault). Returns how many expired tokens it found.
pub async fn revoke_expired_tokens(core: &Core) -> ApiResult<usize> {
    let expired = core.store.tokens_expired(core.now(), BATCH).await?;
    if !expired.is_empty() {
        let _w = core.write.lock().await;
        for accessor in &expired {
            crate::tokens::revoke_tree(core, accessor).await?;
        }
    }
    Ok(expired.len())
}

/// Runs [`rotate_due`] and [`revoke_expired_tokens`] every `interval` until the process ends.
pub fn spawn(core: Arc<Core>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = rotate_due(&core).await {
                tracing::error!("scheduled rotation failed: {e}");
            }
            if let Err(e) = revoke_expired_tokens(&core).await {
                tracing::error!("revoking expired tokens failed: {e}");
            }
        }
    });
}
