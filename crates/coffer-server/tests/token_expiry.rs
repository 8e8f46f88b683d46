//! Expired tokens are revoked with their children by the scheduler, in process.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use coffer_server::{Clock, Core, revoke_expired_tokens};
use coffer_store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt;

const START: i64 = 1_800_000_000;

async fn call(core: &Arc<Core>, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/v1/{path}"))
        .header("X-Vault-Token", token)
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = coffer_server::app(core.clone(), Default::default())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_child_does_not_outlive_its_expired_parent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let clock = Clock::fixed(START);
    let core = Arc::new(Core::open(Arc::new(store), clock.clone()).await.unwrap());
    coffer_server::dev_init(&core, Some("root")).await.unwrap();

    let (st, v) = call(&core, "root", "POST", "auth/token/create", json!({ "ttl": "1h" })).await;
    assert_eq!(st, 200, "{v}");
    let parent = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (st, v) = call(&core, &parent, "POST", "auth/token/create", json!({ "ttl": "10h" })).await;
    assert_eq!(st, 200, "{v}");
    let child = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (_, v) = call(
        &core,
        "root",
        "POST",
        "auth/token/create-orphan",
        json!({ "ttl": "1h" }),
    )
    .await;
    let orphan = v["auth"]["client_token"].as_str().unwrap().to_owned();

    assert_eq!(
        revoke_expired_tokens(&core).await.unwrap(),
        0,
        "nothing has expired yet"
    );
    clock.set(START + 2 * 3600);
    // The child's own TTL has hours left; its parent's has run out.
    assert_eq!(
        revoke_expired_tokens(&core).await.unwrap(),
        2,
        "the parent and the orphan"
    );
    // The child is asked first: presenting the parent would revoke the tree by itself.
    for t in [&child, &orphan, &parent] {
        assert_eq!(call(&core, t, "GET", "auth/token/lookup-self", json!({})).await.0, 403);
    }
    assert_eq!(
        call(&core, "root", "GET", "auth/token/lookup-self", json!({})).await.0,
        200
    );
}
