//! What is on disk: wrapped keys bound to their rows, nothing readable.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use coffer_core::Key256;
use coffer_core::wrap::{self, Label};
use coffer_store::sqlite::{DB_FILE, SqliteStore};
use coffer_store::{Op, Store};
use common::{Server, b64, errors, init_unseal};
use serde_json::json;
use sqlx::Connection;

/// Edits the main database as someone with the file would.
async fn edit(data: &Path, statements: &[&str]) {
    let url = format!("sqlite://{}", data.join(DB_FILE).display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
    }
    // Closed now, not later on the connection's own thread.
    c.close().await.unwrap();
}

/// Makes the store look as one from before its rows carried MACs: the root
/// key wrapped under the old label (with one share, the share is the unseal
/// key), and `statements` (which take MACs away).
async fn as_before_row_macs(data: &Path, share: &str, statements: &[&str]) {
    let (store, unseal, wrapped) = stored_root_key(data, share).await;
    let root = wrap::unwrap_key(&unseal, &Label::root_v2(), &wrapped).unwrap();
    store
        .apply(vec![Op::PutMeta {
            key: "root_key".into(),
            value: wrap::wrap_key(&unseal, &Label::root(), &root).unwrap().0,
        }])
        .await
        .unwrap();
    drop(store);
    edit(data, statements).await;
}

/// Whether the stored root key is wrapped under the label of a store whose rows all carry MACs.
async fn marked_as_maced(data: &Path, share: &str) -> bool {
    let (_, unseal, wrapped) = stored_root_key(data, share).await;
    wrap::unwrap_key(&unseal, &Label::root_v2(), &wrapped).is_ok()
}

/// The store, the unseal key (with one share, the share itself) and the root key as stored.
async fn stored_root_key(data: &Path, share: &str) -> (SqliteStore, Key256, Vec<u8>) {
    let unseal = Key256::from_slice(&hex::decode(share).unwrap()).unwrap();
    let store = SqliteStore::open(data).await.unwrap();
    let wrapped = store.meta("root_key").await.unwrap().unwrap();
    (store, unseal, wrapped)
}

#[tokio::test]
async fn a_wrapped_key_copied_into_another_row_does_not_unwrap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
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

async fn decrypt(s: &Server, token: &str, name: &str, ct: &str) -> (u16, serde_json::Value) {
    s.call(
        "POST",
        &format!("transit/decrypt/{name}"),
        Some(token),
        Some(json!({ "ciphertext": ct })),
    )
    .await
}

#[tokio::test]
async fn edited_key_settings_are_refused_and_old_rows_get_their_mac_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
    let encrypt = |name: &str| json!({ "plaintext": b64(format!("for {name}").as_bytes()) });
    let mut cts = Vec::new();
    for name in ["k", "other"] {
        let (_, v) = s
            .call(
                "POST",
                &format!("transit/encrypt/{name}"),
                Some(&root),
                Some(encrypt(name)),
            )
            .await;
        cts.push(v["data"]["ciphertext"].as_str().unwrap().to_owned());
    }
    assert_eq!(s.call("POST", "transit/keys/k/rotate", Some(&root), None).await.0, 200);
    let (st, v) = s
        .call(
            "POST",
            "transit/keys/k/config",
            Some(&root),
            Some(json!({ "min_decryption_version": 2 })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(decrypt(&s, &root, "k", &cts[0]).await.0, 400, "v1 is retired");
    s.stop();

    // Someone with the file brings v1 back.
    edit(
        &data,
        &["UPDATE transit_keys SET config = json_set(config, '$.min_decryption_version', 1) WHERE name = 'k'"],
    )
    .await;
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    let (st, v) = decrypt(&s, &root, "k", &cts[0]).await;
    assert_eq!(st, 500, "the edited settings are refused, not obeyed: {v}");
    assert_eq!(decrypt(&s, &root, "other", &cts[1]).await.0, 200);
    s.stop();

    // Deleting MACs does not make them optional.
    edit(
        &data,
        &["UPDATE transit_keys SET config_mac = NULL WHERE name = 'other'"],
    )
    .await;
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(
        decrypt(&s, &root, "other", &cts[1]).await.0,
        500,
        "a missing MAC is an edit"
    );
    s.stop();

    // A database from before the MAC: the first unseal fills it in, once.
    as_before_row_macs(&data, &key, &[]).await;
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(decrypt(&s, &root, "other", &cts[1]).await.0, 200);
    assert_eq!(
        decrypt(&s, &root, "k", &cts[0]).await.0,
        500,
        "a wrong MAC is not replaced"
    );
    s.stop();
    edit(
        &data,
        &["UPDATE transit_keys SET config_mac = NULL WHERE name = 'other'"],
    )
    .await;
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(
        decrypt(&s, &root, "other", &cts[1]).await.0,
        500,
        "after that, a missing MAC is an edit"
    );
}

/// Each version's count of encryptions, as stored.
async fn encryptions(data: &Path, key: &str) -> Vec<(i64, i64)> {
    let url = format!("sqlite://{}", data.join(DB_FILE).display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let counts =
        sqlx::query_as("SELECT version, encryptions FROM transit_key_versions WHERE name = ? ORDER BY version")
            .bind(key)
            .fetch_all(&mut c)
            .await
            .unwrap();
    c.close().await.unwrap();
    counts
}

/// A POST with the test's root token.
async fn post(s: &Server, root: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    s.call("POST", path, Some(root), Some(body)).await
}

#[tokio::test]
async fn a_version_that_sealed_its_limit_is_rotated_out_and_its_count_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let cfg = "[limits]\nmax_batch_items = 1000\n[rotation]\nmax_encryptions_per_version = 10000\n";
    let s = Server::with_config_extra(&data, cfg);
    let (key, root) = init_unseal(&s).await;
    let items: Vec<_> = (0..1000u32)
        .map(|i| json!({ "plaintext": b64(&i.to_be_bytes()) }))
        .collect();
    let mut versions = Vec::new();
    let mut samples = Vec::new();
    for _ in 0..25 {
        let (st, v) = post(&s, &root, "transit/encrypt/k", json!({ "batch_input": items })).await;
        assert_eq!(st, 200, "{}", errors(&v));
        let results = v["data"]["batch_results"].as_array().unwrap();
        let kv = results[0]["key_version"].as_u64().unwrap();
        assert!(
            results.iter().all(|r| r["key_version"].as_u64() == Some(kv)),
            "one version per batch"
        );
        versions.push(kv);
        samples.push(results[999]["ciphertext"].as_str().unwrap().to_owned());
    }
    // 10,000 messages per version: ten batches each, then a rotation.
    let want: Vec<u64> = [1; 10].into_iter().chain([2; 10]).chain([3; 5]).collect();
    assert_eq!(versions, want);
    assert_eq!(
        encryptions(&data, "k").await,
        vec![(1, 10_000), (2, 10_000), (3, 5_000)]
    );
    let (_, k) = s.call("GET", "transit/keys/k", Some(&root), None).await;
    assert_eq!(k["data"]["latest_version"], 3, "{k}");
    // Every version still decrypts.
    for ct in [&samples[0], &samples[10], &samples[24]] {
        let (st, v) = post(&s, &root, "transit/decrypt/k", json!({ "ciphertext": ct })).await;
        assert_eq!(
            (st, v["data"]["plaintext"].as_str()),
            (200, Some(b64(&999u32.to_be_bytes()).as_str()))
        );
    }
    // A spent version named explicitly is refused, and nothing is counted for it.
    let (st, v) = post(
        &s,
        &root,
        "transit/encrypt/k",
        json!({ "plaintext": b64(b"x"), "key_version": 1 }),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(errors(&v).contains("sealed as many messages as a version may"), "{v}");
    // In a batch only the item naming it fails; datakey counts too, whatever else it is sent.
    let (st, v) = post(
        &s,
        &root,
        "transit/encrypt/k",
        json!({ "batch_input": [{ "plaintext": b64(b"x"), "key_version": 1 }, { "plaintext": b64(b"y") }] }),
    )
    .await;
    let results = v["data"]["batch_results"].as_array().unwrap();
    assert_eq!(st, 400, "{v}");
    assert!(results[0]["error"].as_str().unwrap().contains("sealed as many"), "{v}");
    assert_eq!(results[1]["key_version"], 3, "{v}");
    let (st, v) = post(
        &s,
        &root,
        "transit/datakey/plaintext/k",
        json!({ "key_version": 1, "batch_input": [] }),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    // Each rotation was recorded, before it was made, with its reason.
    let (_, v) = s.call("GET", "sys/audit/export?kind=rotation", Some(&root), None).await;
    let rotations: Vec<(u64, &str)> = v["data"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["ver"].as_u64().unwrap(), r["why"].as_str().unwrap()))
        .collect();
    assert_eq!(rotations, [(1, "encryption limit"), (2, "encryption limit")], "{v}");
    s.stop();

    // After a restart the stored count holds: version 1 is still spent, and
    // a single encrypt takes a fresh block of version 3's count.
    let s = Server::with_config_extra(&data, cfg);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    let (st, v) = post(
        &s,
        &root,
        "transit/encrypt/k",
        json!({ "plaintext": b64(b"x"), "key_version": 1 }),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = post(&s, &root, "transit/encrypt/k", json!({ "plaintext": b64(b"x") })).await;
    assert_eq!((st, v["data"]["key_version"].as_u64()), (200, Some(3)), "{v}");
    let counts = encryptions(&data, "k").await;
    assert_eq!(counts[..2], [(1, 10_000), (2, 10_000)]);
    // 5,000 for the batches; a block of 156 (a 64th of the limit) for the
    // mixed batch; after the restart a first block of 64.
    assert_eq!(counts[2].1, 5_000 + 156 + 64, "{counts:?}");
}

/// Edits the database, then restarts the server over it and unseals.
async fn restart_edited(s: Server, data: &Path, key: &str, statements: &[&str]) -> Server {
    s.stop();
    edit(data, statements).await;
    let s = Server::with_config(data);
    let (st, v) = s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(st, 200, "{v}");
    s
}

/// The status of an encrypt with `token` at `path`.
async fn encrypt_status(s: &Server, token: &str, path: &str) -> u16 {
    s.call("POST", path, Some(token), Some(json!({ "plaintext": b64(b"x") })))
        .await
        .0
}

#[tokio::test]
async fn edited_grants_are_refused_and_old_rows_get_their_mac_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
    s.root_token = Some(root.clone());
    s.put_policy("reader", r#"path "transit/decrypt/*" { capabilities = ["update"] }"#)
        .await;
    s.put_policy("writer", r#"path "transit/encrypt/*" { capabilities = ["update"] }"#)
        .await;
    assert_eq!(s.root("POST", "transit/keys/k", None).await.0, 200);
    let (edited, edited_acc) = s.create_token(json!({ "policies": ["reader"] })).await;
    let (reader, _) = s.create_token(json!({ "policies": ["reader"] })).await;
    let (fresh, fresh_acc) = s.create_token(json!({ "policies": ["writer"] })).await;
    for tenant in ["acme", "globex"] {
        assert_eq!(s.root("POST", &format!("sys/namespaces/{tenant}"), None).await.0, 200);
    }
    assert_eq!(s.root("POST", "sys/namespaces/acme/disable", None).await.0, 204);
    assert_eq!(encrypt_status(&s, &edited, "transit/encrypt/k").await, 403);
    assert_eq!(encrypt_status(&s, &reader, "transit/encrypt/k").await, 403);
    assert_eq!(encrypt_status(&s, &fresh, "transit/encrypt/k").await, 200);
    assert_eq!(
        encrypt_status(&s, &root, "acme/transit/encrypt/k").await,
        403,
        "acme is disabled"
    );

    // Someone with the file gives a token the root policy, puts the writer
    // policy (with its MAC) in the reader's row, and enables the tenant.
    let s = restart_edited(
        s,
        &data,
        &key,
        &[
            &format!("UPDATE tokens SET policies = '[\"root\"]' WHERE accessor = '{edited_acc}'"),
            "UPDATE policies SET body = w.body, mac = w.mac FROM (SELECT body, mac FROM policies \
             WHERE name = 'writer') AS w WHERE name = 'reader'",
            "UPDATE namespaces SET disabled = 0 WHERE name = 'acme'",
        ],
    )
    .await;
    let (st, v) = s
        .call(
            "POST",
            "transit/encrypt/k",
            Some(&edited),
            Some(json!({ "plaintext": b64(b"x") })),
        )
        .await;
    assert_eq!(
        (st, errors(&v)),
        (500, "internal error".into()),
        "the edited token is refused"
    );
    assert_eq!(
        encrypt_status(&s, &reader, "transit/encrypt/k").await,
        500,
        "the moved policy is refused"
    );
    assert_eq!(
        encrypt_status(&s, &root, "acme/transit/encrypt/k").await,
        500,
        "the tenant stays shut"
    );
    assert_eq!(
        encrypt_status(&s, &fresh, "transit/encrypt/k").await,
        200,
        "untouched rows work"
    );
    assert_eq!(encrypt_status(&s, &root, "transit/encrypt/k").await, 200);
    let (st, v) = s.call("LIST", "sys/namespaces", Some(&root), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["data"]["keys"],
        json!(["globex/"]),
        "an altered tenant is left out of lists"
    );

    // Taking the MAC away does not make it optional: the edited token stays refused.
    let s = restart_edited(
        s,
        &data,
        &key,
        &[&format!(
            "UPDATE tokens SET policies = '[\"root\"]', mac = NULL WHERE accessor = '{fresh_acc}'"
        )],
    )
    .await;
    assert_eq!(encrypt_status(&s, &fresh, "transit/encrypt/k").await, 500);
    assert_eq!(encrypt_status(&s, &root, "transit/encrypt/k").await, 200);

    // A store from before row MACs: the first unseal MACs its rows as they
    // are, once, does not replace a wrong MAC, and rewraps the root key under v2.
    s.stop();
    as_before_row_macs(
        &data,
        &key,
        &[
            &format!("UPDATE tokens SET policies = '[\"writer\"]', mac = NULL WHERE accessor = '{fresh_acc}'"),
            "UPDATE mounts SET mac = NULL",
        ],
    )
    .await;
    assert!(!marked_as_maced(&data, &key).await);
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(encrypt_status(&s, &fresh, "transit/encrypt/k").await, 200);
    assert_eq!(
        encrypt_status(&s, &edited, "transit/encrypt/k").await,
        500,
        "a wrong MAC is not replaced"
    );
    let s = restart_edited(
        s,
        &data,
        &key,
        &[&format!("UPDATE tokens SET mac = NULL WHERE accessor = '{fresh_acc}'")],
    )
    .await;
    assert!(marked_as_maced(&data, &key).await);
    assert_eq!(
        encrypt_status(&s, &fresh, "transit/encrypt/k").await,
        500,
        "after that, a missing MAC is an edit"
    );
}
