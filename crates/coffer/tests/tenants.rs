//! Tenants (namespaces) against the real binary: isolation, scoping,
//! disable/enable, and crypto-shredding that leaves nothing unwrappable.

#![allow(clippy::unwrap_used)]

mod common;

use coffer_store::sqlite::SqliteStore;
use coffer_store::{Op, Store};
use common::{Server, all_bytes, b64, contains, errors, init_unseal, unb64};
use serde_json::{Value, json};

async fn in_ns(s: &Server, ns: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    s.raw(
        method,
        path,
        Some(token),
        body.map(|b| b.to_string().into_bytes()),
        &[("X-Vault-Namespace", ns)],
    )
    .await
}

async fn encrypt(s: &Server, ns: &str, token: &str, key: &str, pt: &[u8]) -> String {
    let (st, v) = in_ns(
        s,
        ns,
        token,
        "POST",
        &format!("transit/encrypt/{key}"),
        Some(json!({ "plaintext": b64(pt) })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["data"]["ciphertext"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tenants_are_isolated_and_scoped() {
    let s = Server::dev();
    for ns in ["acme", "globex"] {
        let (st, v) = s.root("POST", &format!("sys/namespaces/{ns}"), None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["path"], format!("{ns}/"));
    }
    let (st, v) = s.root("LIST", "sys/namespaces", None).await;
    assert_eq!((st, v["data"]["keys"].clone()), (200, json!(["acme/", "globex/"])));

    // Same key name, same version, different tenants: different keys.
    let ct = encrypt(&s, "acme", "root", "orders", b"acme secret").await;
    encrypt(&s, "globex", "root", "orders", b"x").await;
    let (st, v) = in_ns(
        &s,
        "globex",
        "root",
        "POST",
        "transit/decrypt/orders",
        Some(json!({ "ciphertext": ct })),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = s
        .root("POST", "transit/decrypt/orders", Some(json!({ "ciphertext": ct })))
        .await;
    assert_eq!(st, 400, "nor at the root");
    // The path-prefix form reaches the same tenant.
    let (st, v) = s
        .root("POST", "acme/transit/decrypt/orders", Some(json!({ "ciphertext": ct })))
        .await;
    assert_eq!(
        (st, unb64(v["data"]["plaintext"].as_str().unwrap())),
        (200, b"acme secret".to_vec())
    );
    let (st, v) = in_ns(&s, "acme", "root", "GET", "sys/mounts", None).await;
    assert_eq!((st, v["data"]["transit/"]["type"].as_str()), (200, Some("transit")));

    // A tenant's own policies and tokens; its tokens cannot leave it.
    let (st, _) = in_ns(
        &s,
        "acme",
        "root",
        "PUT",
        "sys/policies/acl/app",
        Some(json!({ "policy": "path \"transit/*\" { capabilities = [\"update\"] }" })),
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(
        s.root("GET", "sys/policies/acl/app", None).await.0,
        404,
        "the policy lives in the tenant"
    );
    let (st, v) = in_ns(
        &s,
        "acme",
        "root",
        "POST",
        "auth/token/create",
        Some(json!({ "policies": ["app"] })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let t = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (st, _) = in_ns(
        &s,
        "acme",
        &t,
        "POST",
        "transit/decrypt/orders",
        Some(json!({ "ciphertext": ct })),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = in_ns(
        &s,
        "globex",
        &t,
        "POST",
        "transit/encrypt/orders",
        Some(json!({ "plaintext": b64(b"x") })),
    )
    .await;
    assert_eq!(st, 403, "a tenant token cannot act in another tenant");
    assert_eq!(
        s.call(
            "POST",
            "transit/encrypt/orders",
            Some(&t),
            Some(json!({ "plaintext": b64(b"x") }))
        )
        .await
        .0,
        403
    );
    assert_eq!(in_ns(&s, "nobody", "root", "GET", "sys/mounts", None).await.0, 400);

    // A tenant's token manager reaches its own tenant's tokens, not another's.
    let (st, _) = in_ns(
        &s,
        "acme",
        "root",
        "PUT",
        "sys/policies/acl/tokens",
        Some(json!({ "policy": "path \"auth/token/*\" { capabilities = [\"update\"] }" })),
    )
    .await;
    assert_eq!(st, 204);
    let (_, v) = in_ns(
        &s,
        "acme",
        "root",
        "POST",
        "auth/token/create",
        Some(json!({ "policies": ["tokens"] })),
    )
    .await;
    let manager = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (_, v) = s.root("POST", "auth/token/create", Some(json!({}))).await;
    let outsider = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let outsider_accessor = v["auth"]["accessor"].as_str().unwrap().to_owned();
    let (_, v) = in_ns(&s, "acme", &t, "GET", "auth/token/lookup-self", None).await;
    let own_accessor = v["data"]["accessor"].as_str().unwrap().to_owned();
    let accessor = |a: &str| Some(json!({ "accessor": a }));
    let (st, v) = in_ns(
        &s,
        "acme",
        &manager,
        "POST",
        "auth/token/lookup-accessor",
        accessor(&own_accessor),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = in_ns(
        &s,
        "acme",
        &manager,
        "POST",
        "auth/token/lookup-accessor",
        accessor(&outsider_accessor),
    )
    .await;
    assert_eq!(st, 400, "another tenant's accessor is unknown here");
    for (path, body) in [
        ("auth/token/revoke-accessor", accessor(&outsider_accessor)),
        ("auth/token/revoke", Some(json!({ "token": outsider }))),
    ] {
        in_ns(&s, "acme", &manager, "POST", path, body).await;
    }
    let (st, _) = in_ns(
        &s,
        "acme",
        &manager,
        "POST",
        "auth/token/lookup",
        Some(json!({ "token": outsider })),
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(
        s.call("GET", "auth/token/lookup-self", Some(&outsider), None).await.0,
        200,
        "a tenant cannot revoke a token outside it"
    );
    let (st, _) = s
        .root("POST", "auth/token/lookup-accessor", accessor(&own_accessor))
        .await;
    assert_eq!(st, 200, "the root namespace reaches every tenant's tokens");

    // A root mount and a tenant may not share a name: `acme/...` would mean both.
    for path in ["acme", "acme/inner"] {
        let (st, v) = s
            .root(
                "POST",
                &format!("sys/mounts/{path}"),
                Some(json!({ "type": "transit" })),
            )
            .await;
        assert_eq!(st, 400, "{path}: {v}");
    }
    let (st, _) = s
        .root("POST", "sys/mounts/payments", Some(json!({ "type": "transit" })))
        .await;
    assert_eq!(st, 204);
    let (st, v) = s.root("POST", "sys/namespaces/payments", None).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s.root("LIST", "sys/namespaces", None).await;
    assert_eq!((st, v["data"]["keys"].clone()), (200, json!(["acme/", "globex/"])));

    for bad in ["sys", "a/b", "bad name", ""] {
        let (st, _) = s.root("POST", &format!("sys/namespaces/{bad}"), None).await;
        assert!(st == 400 || st == 405 || st == 404, "{bad}: {st}");
    }
}

#[tokio::test]
async fn a_disabled_tenant_refuses_everything_until_enabled() {
    let s = Server::dev();
    s.root("POST", "sys/namespaces/acme", None).await;
    let ct = encrypt(&s, "acme", "root", "k", b"x").await;
    assert_eq!(s.root("POST", "sys/namespaces/acme/disable", None).await.0, 204);
    let (st, v) = in_ns(
        &s,
        "acme",
        "root",
        "POST",
        "transit/decrypt/k",
        Some(json!({ "ciphertext": ct })),
    )
    .await;
    assert_eq!((st, errors(&v).as_str()), (403, "tenant \"acme\" is disabled"));
    assert_eq!(s.root("GET", "acme/sys/mounts", None).await.0, 403);
    assert_eq!(s.root("POST", "sys/namespaces/acme/enable", None).await.0, 204);
    assert_eq!(
        in_ns(
            &s,
            "acme",
            "root",
            "POST",
            "transit/decrypt/k",
            Some(json!({ "ciphertext": ct }))
        )
        .await
        .0,
        200
    );
    let (_, v) = s.root("GET", "sys/audit/export", None).await;
    let refused = v["data"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["ns"] == "acme" && r["st"] == 403);
    assert!(refused, "the refusals are audited");
}

#[tokio::test]
async fn shredding_leaves_nothing_unwrappable_and_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::with_config(&data);
    let (_key, root) = init_unseal(&s).await;
    s.call("POST", "sys/namespaces/acme", Some(&root), None).await;
    let ct = encrypt(&s, "acme", &root, "pii", b"to be forgotten").await;
    in_ns(&s, "acme", &root, "POST", "transit/keys/pii/rotate", None).await;
    let (_, v) = in_ns(&s, "acme", &root, "POST", "auth/token/create", Some(json!({}))).await;
    let acme_token = v["auth"]["client_token"].as_str().unwrap().to_owned();

    // Every wrapped blob of the tenant, read straight from the store.
    let blobs: Vec<Vec<u8>> = {
        let store = SqliteStore::open(&data).await.unwrap();
        let mut b: Vec<Vec<u8>> = store
            .tenant_keys("acme")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.wrapped)
            .collect();
        b.extend(
            store
                .transit_versions("acme", "transit", "pii")
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.wrapped),
        );
        b
    };
    assert_eq!(blobs.len(), 3);

    assert_eq!(s.call("DELETE", "sys/namespaces/acme", Some(&root), None).await.0, 204);
    assert_eq!(
        in_ns(
            &s,
            "acme",
            &root,
            "POST",
            "transit/decrypt/pii",
            Some(json!({ "ciphertext": ct }))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        s.call("GET", "auth/token/lookup-self", Some(&acme_token), None).await.0,
        403
    );
    let (st, v) = s.call("LIST", "sys/namespaces/tombstones", Some(&root), None).await;
    assert_eq!(
        (st, v["data"]["tombstones"][0]["name"].as_str()),
        (200, Some("acme")),
        "{v}"
    );

    // Re-created: new keys; the old ciphertext stays undecryptable.
    s.call("POST", "sys/namespaces/acme", Some(&root), None).await;
    let fresh = encrypt(&s, "acme", &root, "pii", b"new life").await;
    let (st, _) = in_ns(
        &s,
        "acme",
        &root,
        "POST",
        "transit/decrypt/pii",
        Some(json!({ "ciphertext": ct })),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        in_ns(
            &s,
            "acme",
            &root,
            "POST",
            "transit/decrypt/pii",
            Some(json!({ "ciphertext": fresh }))
        )
        .await
        .0,
        200
    );
    s.stop();

    let disk = all_bytes(&data);
    for (i, b) in blobs.iter().enumerate() {
        assert!(
            !contains(&disk, b),
            "wrapped blob {i} of the shredded tenant is still on disk"
        );
    }
}

/// The spec's tombstone: a shredded tenant's rows put back from a copy do not bring it back.
#[tokio::test]
async fn a_shredded_tenant_restored_from_a_copy_stays_dead() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
    s.call("POST", "sys/namespaces/globex", Some(&root), None).await;
    let ct = encrypt(&s, "globex", &root, "pii", b"to be forgotten").await;
    s.stop();
    // A copy of every row of the tenant, taken before the shred.
    let copy = {
        let store = SqliteStore::open(&data).await.unwrap();
        let mut ops = vec![Op::InsertNamespace(store.namespace("globex").await.unwrap().unwrap())];
        ops.extend(
            store
                .tenant_keys("globex")
                .await
                .unwrap()
                .into_iter()
                .map(Op::PutTenantKey),
        );
        ops.push(Op::InsertTransitKey(
            store.transit_key("globex", "transit", "pii").await.unwrap().unwrap(),
        ));
        ops.extend(
            store
                .transit_versions("globex", "transit", "pii")
                .await
                .unwrap()
                .into_iter()
                .map(Op::PutTransitVersion),
        );
        ops
    };
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(
        s.call("DELETE", "sys/namespaces/globex", Some(&root), None).await.0,
        204
    );
    s.stop();
    SqliteStore::open(&data).await.unwrap().apply(copy).await.unwrap();

    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    let (st, v) = in_ns(
        &s,
        "globex",
        &root,
        "POST",
        "transit/decrypt/pii",
        Some(json!({ "ciphertext": ct })),
    )
    .await;
    assert_eq!(st, 500, "the tombstone refuses the restored rows: {v}");
    assert_eq!(errors(&v), "internal error");
    // They can be shredded again (the first tombstone stays).
    assert_eq!(
        s.call("DELETE", "sys/namespaces/globex", Some(&root), None).await.0,
        204
    );
    let (_, v) = s.call("LIST", "sys/namespaces/tombstones", Some(&root), None).await;
    assert_eq!(v["data"]["tombstones"].as_array().map(Vec::len), Some(1), "{v}");
}

#[tokio::test]
async fn trimmed_and_deleted_keys_leave_no_wrapped_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::with_config(&data);
    let (_key, root) = init_unseal(&s).await;
    for (method, path, body) in [
        ("POST", "transit/keys/t", None),
        ("POST", "transit/keys/t/rotate", None),
        ("POST", "transit/keys/d", None),
        (
            "POST",
            "transit/keys/t/config",
            Some(json!({ "min_decryption_version": 2, "min_encryption_version": 2 })),
        ),
        (
            "POST",
            "transit/keys/d/config",
            Some(json!({ "deletion_allowed": true })),
        ),
    ] {
        let (st, v) = s.call(method, path, Some(&root), body).await;
        assert!(st == 200 || st == 204, "{path}: {v}");
    }
    let blobs: Vec<Vec<u8>> = {
        let store = SqliteStore::open(&data).await.unwrap();
        let mut b: Vec<Vec<u8>> = store
            .transit_versions("", "transit", "t")
            .await
            .unwrap()
            .into_iter()
            .filter(|v| v.version == 1)
            .map(|v| v.wrapped)
            .collect();
        b.extend(
            store
                .transit_versions("", "transit", "d")
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.wrapped),
        );
        b
    };
    assert_eq!(blobs.len(), 2);
    let (st, v) = s
        .call(
            "POST",
            "transit/keys/t/trim",
            Some(&root),
            Some(json!({ "min_available_version": 2 })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(s.call("DELETE", "transit/keys/d", Some(&root), None).await.0, 204);
    // Read while the server runs: a clean shutdown would checkpoint the WAL anyway.
    let disk = all_bytes(&data);
    for (i, b) in blobs.iter().enumerate() {
        assert!(!contains(&disk, b), "wrapped blob {i} is still on disk");
    }
}
