//! The scheduler's work with a controllable clock, in process: rotation
//! of due keys and tenant keys, and revocation of expired tokens.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use coffer_server::{Clock, Core, CoreOptions, Rotated, revoke_expired_tokens, rotate_due};
use coffer_store::sqlite::SqliteStore;
use coffer_store::{Op, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const HOUR: i64 = 3600;

struct Env {
    core: Arc<Core>,
    clock: Clock,
    unseal_key: String,
    dir: Arc<tempfile::TempDir>,
}

async fn env(options: CoreOptions) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let clock = Clock::fixed(1_800_000_000);
    let core = Core::open(Arc::new(store), clock.clone())
        .await
        .unwrap()
        .with_options(options);
    let creds = coffer_server::dev_init(&core, Some("root")).await.unwrap();
    Env {
        core: Arc::new(core),
        clock,
        unseal_key: creds.unseal_key_b64,
        dir: Arc::new(dir),
    }
}

/// The same store under a new server with other options (a restart), unsealed.
async fn restart(e: &Env, options: CoreOptions) -> Env {
    let store = SqliteStore::open(e.dir.path()).await.unwrap();
    let core = Core::open(Arc::new(store), e.clock.clone())
        .await
        .unwrap()
        .with_options(options);
    let e2 = Env {
        core: Arc::new(core),
        clock: e.clock.clone(),
        unseal_key: e.unseal_key.clone(),
        dir: e.dir.clone(),
    };
    let (st, v) = call(&e2, "PUT", "sys/unseal", None, json!({ "key": e.unseal_key })).await;
    assert_eq!((st, v["sealed"].as_bool()), (200, Some(false)), "{v}");
    e2
}

async fn call(e: &Env, method: &str, path: &str, ns: Option<&str>, body: Value) -> (u16, Value) {
    call_as(e, "root", method, path, ns, body).await
}

async fn call_as(e: &Env, token: &str, method: &str, path: &str, ns: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/v1/{path}"))
        .header("X-Vault-Token", token);
    if let Some(ns) = ns {
        req = req.header("X-Vault-Namespace", ns);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = coffer_server::app(e.core.clone(), Default::default())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn due_keys_rotate_exactly_once_per_period() {
    let e = env(CoreOptions::default()).await;
    let (st, _) = call(
        &e,
        "POST",
        "transit/keys/k",
        None,
        json!({ "auto_rotate_period": "24h" }),
    )
    .await;
    assert_eq!(st, 200);
    call(&e, "POST", "transit/keys/manual", None, json!({})).await;
    let (_, v) = call(&e, "POST", "transit/encrypt/k", None, json!({ "plaintext": "aGk=" })).await;
    let old = v["data"]["ciphertext"].as_str().unwrap().to_owned();

    assert_eq!(
        rotate_due(&e.core).await.unwrap(),
        Rotated::default(),
        "nothing is due yet"
    );
    e.clock.set(1_800_000_000 + 25 * HOUR);
    assert_eq!(rotate_due(&e.core).await.unwrap(), Rotated { keys: 1, tenants: 0 });
    assert_eq!(
        rotate_due(&e.core).await.unwrap(),
        Rotated::default(),
        "not twice in one period"
    );
    let (_, v) = call(&e, "GET", "transit/keys/k", None, json!({})).await;
    assert_eq!(v["data"]["latest_version"], 2);
    let (_, v) = call(&e, "GET", "transit/keys/manual", None, json!({})).await;
    assert_eq!(v["data"]["latest_version"], 1, "keys without a period are left alone");
    let (st, _) = call(&e, "POST", "transit/decrypt/k", None, json!({ "ciphertext": old })).await;
    assert_eq!(st, 200);

    e.clock.set(1_800_000_000 + 50 * HOUR);
    assert_eq!(
        rotate_due(&e.core).await.unwrap().keys,
        1,
        "the next period rotates again"
    );
}

#[tokio::test]
async fn default_policy_applies_to_new_keys_and_overdue_keys_are_listed() {
    let options = CoreOptions {
        default_rotation: HashMap::from([("aes256-gcm96".to_owned(), 90 * 24 * 3600)]),
        ..Default::default()
    };
    let e = env(options).await;
    let (_, v) = call(&e, "POST", "transit/keys/q", None, json!({})).await;
    assert_eq!(v["data"]["auto_rotate_period"], 90 * 24 * 3600);
    let (_, v) = call(
        &e,
        "POST",
        "transit/keys/c",
        None,
        json!({ "type": "chacha20-poly1305" }),
    )
    .await;
    assert_eq!(v["data"]["auto_rotate_period"], 0, "the default is per key type");
    assert_eq!(
        call(&e, "LIST", "transit/keys?overdue=true", None, json!({})).await.0,
        404
    );
    e.clock.set(1_800_000_000 + 91 * 24 * HOUR);
    let (st, v) = call(&e, "LIST", "transit/keys?overdue=true", None, json!({})).await;
    assert_eq!((st, v["data"]["keys"].clone()), (200, json!(["q"])));
}

#[tokio::test]
async fn tenant_keys_rotate_and_rewrap_their_keys_online() {
    let e = env(CoreOptions {
        tenant_rotation: 30 * 24 * 3600,
        ..Default::default()
    })
    .await;
    call(&e, "POST", "sys/namespaces/acme", None, json!({})).await;
    let (_, v) = call(
        &e,
        "POST",
        "transit/encrypt/pii",
        Some("acme"),
        json!({ "plaintext": "c2VjcmV0" }),
    )
    .await;
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    e.clock.set(1_800_000_000 + 31 * 24 * HOUR);
    let r = rotate_due(&e.core).await.unwrap();
    assert_eq!(r.tenants, 2, "the root tenant and acme");
    let (st, v) = call(
        &e,
        "POST",
        "transit/decrypt/pii",
        Some("acme"),
        json!({ "ciphertext": ct }),
    )
    .await;
    assert_eq!(
        (st, v["data"]["plaintext"].as_str()),
        (200, Some("c2VjcmV0")),
        "named keys survive the rewrap"
    );
    let (st, v) = call(&e, "POST", "sys/namespaces/acme/rotate", None, json!({})).await;
    assert_eq!((st, v["data"]["tenant_key_version"].as_u64()), (200, Some(3)));
    assert_eq!(
        call(
            &e,
            "POST",
            "transit/decrypt/pii",
            Some("acme"),
            json!({ "ciphertext": ct })
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn one_failing_key_does_not_hold_back_the_others() {
    // A cache of one: the first key is read back from the store when it is due.
    let e = env(CoreOptions {
        key_cache: 1,
        ..Default::default()
    })
    .await;
    let period = json!({ "auto_rotate_period": "24h" });
    assert_eq!(
        call(&e, "POST", "transit/keys/broken", None, period.clone()).await.0,
        200
    );
    e.clock.set(1_800_000_000 + HOUR);
    assert_eq!(call(&e, "POST", "transit/keys/fine", None, period).await.0, 200);
    // The first key due fails: its stored settings no longer match their MAC.
    let store = SqliteStore::open(e.dir.path()).await.unwrap();
    let mut row = store.transit_key("", "transit", "broken").await.unwrap().unwrap();
    row.next_rotation = row.next_rotation.map(|t| t - 1);
    store.apply(vec![Op::UpdateTransitKey(row)]).await.unwrap();
    e.clock.set(1_800_000_000 + 26 * HOUR);
    let r = rotate_due(&e.core).await.unwrap();
    assert_eq!(r.keys, 1, "the other key still rotates");
    let (_, v) = call(&e, "GET", "transit/keys/fine", None, json!({})).await;
    assert_eq!(v["data"]["latest_version"], 2);
}

#[tokio::test]
async fn a_tenant_period_turned_on_reaches_tenants_made_before_it() {
    let e = env(CoreOptions::default()).await;
    assert_eq!(call(&e, "POST", "sys/namespaces/acme", None, json!({})).await.0, 200);
    e.clock.set(1_800_000_000 + 400 * 24 * HOUR);
    assert_eq!(rotate_due(&e.core).await.unwrap().tenants, 0, "rotation is off");
    let month = 30 * 24 * 3600;
    let e = restart(
        &e,
        CoreOptions {
            tenant_rotation: month,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        rotate_due(&e.core).await.unwrap().tenants,
        0,
        "a period from now, not at once"
    );
    e.clock.set(1_800_000_000 + 431 * 24 * HOUR);
    assert_eq!(
        rotate_due(&e.core).await.unwrap().tenants,
        2,
        "the root tenant and acme"
    );
    // Turned off again: nothing is due any more.
    let e = restart(&e, CoreOptions::default()).await;
    e.clock.set(1_800_000_000 + 900 * 24 * HOUR);
    assert_eq!(rotate_due(&e.core).await.unwrap().tenants, 0);
}

#[tokio::test]
async fn a_child_does_not_outlive_its_expired_parent() {
    let e = env(CoreOptions::default()).await;
    let token = |v: &Value| v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (st, v) = call(&e, "POST", "auth/token/create", None, json!({ "ttl": "1h" })).await;
    assert_eq!(st, 200, "{v}");
    let parent = token(&v);
    let (st, v) = call_as(&e, &parent, "POST", "auth/token/create", None, json!({ "ttl": "10h" })).await;
    assert_eq!(st, 200, "{v}");
    let child = token(&v);
    let (_, v) = call(&e, "POST", "auth/token/create-orphan", None, json!({ "ttl": "1h" })).await;
    let orphan = token(&v);

    assert_eq!(
        revoke_expired_tokens(&e.core).await.unwrap(),
        0,
        "nothing has expired yet"
    );
    e.clock.set(1_800_000_000 + 2 * HOUR);
    // The child's own TTL has hours left; its parent's has run out.
    assert_eq!(
        revoke_expired_tokens(&e.core).await.unwrap(),
        2,
        "the parent and the orphan"
    );
    // The child is asked first: presenting the parent would revoke the tree by itself.
    for t in [&child, &orphan, &parent] {
        let (st, _) = call_as(&e, t, "GET", "auth/token/lookup-self", None, json!({})).await;
        assert_eq!(st, 403);
    }
    assert_eq!(call(&e, "GET", "auth/token/lookup-self", None, json!({})).await.0, 200);
}
