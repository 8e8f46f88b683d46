//! What is on disk: wrapped keys bound to their rows, nothing readable.

#![allow(clippy::unwrap_used)]

mod common;

use coffer_store::sqlite::SqliteStore;
use coffer_store::{Op, Store};
use common::{Server, b64, errors};
use serde_json::json;

#[tokio::test]
async fn a_wrapped_key_copied_into_another_row_does_not_unwrap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::with_config(&data);
    let (_, v) = s
        .call(
            "PUT",
            "sys/init",
            None,
            Some(json!({ "secret_shares": 1, "secret_threshold": 1 })),
        )
        .await;
    let (key, root) = (
        v["keys"][0].as_str().unwrap().to_owned(),
        v["root_token"].as_str().unwrap().to_owned(),
    );
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    for name in ["alice", "mallory"] {
        let (st, _) = s.call("POST", &format!("transit/keys/{name}"), Some(&root), None).await;
        assert_eq!(st, 200);
    }
    let (_, v) = s
        .call(
            "POST",
            "transit/encrypt/alice",
            Some(&root),
            Some(json!({ "plaintext": b64(b"alice's") })),
        )
        .await;
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    s.stop();

    // An attacker with write access to the database copies alice's wrapped key into mallory's row.
    {
        let store = SqliteStore::open(&data).await.unwrap();
        let mut alice = store.transit_versions("", "transit", "alice").await.unwrap().remove(0);
        alice.name = "mallory".into();
        store.apply(vec![Op::RewrapTransitVersion(alice)]).await.unwrap();
    }

    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    let (st, v) = s
        .call(
            "POST",
            "transit/decrypt/mallory",
            Some(&root),
            Some(json!({ "ciphertext": ct })),
        )
        .await;
    assert_eq!(st, 500, "{v}");
    assert_eq!(errors(&v), "internal error", "details stay in the server log");
    let (st, _) = s
        .call(
            "POST",
            "transit/decrypt/alice",
            Some(&root),
            Some(json!({ "ciphertext": ct })),
        )
        .await;
    assert_eq!(st, 200, "the untouched key still works");
}
