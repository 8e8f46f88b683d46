//! Tokens and ACL policies against the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, b64, errors};
use serde_json::{Value, json};

async fn token(s: &Server, body: Value) -> (String, String) {
    s.create_token(body).await
}

async fn policy(s: &Server, name: &str, hcl: &str) {
    s.put_policy(name, hcl).await;
}

#[tokio::test]
async fn encrypt_only_policy_cannot_decrypt() {
    let s = Server::dev();
    s.root("POST", "transit/keys/pii", None).await;
    policy(&s, "enc", r#"path "transit/encrypt/pii" { capabilities = ["update"] }"#).await;
    let (t, _) = token(&s, json!({ "policies": ["enc"] })).await;
    let (st, v) = s
        .call(
            "POST",
            "transit/encrypt/pii",
            Some(&t),
            Some(json!({ "plaintext": b64(b"ssn") })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let ct = v["data"]["ciphertext"].clone();
    let (st, v) = s
        .call(
            "POST",
            "transit/decrypt/pii",
            Some(&t),
            Some(json!({ "ciphertext": ct })),
        )
        .await;
    assert_eq!((st, errors(&v).as_str()), (403, "permission denied"));
    // `update` alone may not create a key through encrypt's upsert.
    let (st, _) = s
        .call(
            "POST",
            "transit/encrypt/new-key",
            Some(&t),
            Some(json!({ "plaintext": b64(b"x") })),
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(
        s.root("GET", "transit/keys/new-key", None).await.0,
        404,
        "a refused upsert creates nothing"
    );
    for (m, p) in [
        ("GET", "transit/keys/pii"),
        ("LIST", "transit/keys"),
        ("GET", "sys/mounts"),
        ("POST", "auth/token/create"),
    ] {
        assert_eq!(s.call(m, p, Some(&t), Some(json!({}))).await.0, 403, "{m} {p}");
    }
}

#[tokio::test]
async fn globs_deny_and_legacy_endpoints() {
    let s = Server::dev();
    policy(
        &s,
        "apps",
        r#"path "transit/*" { capabilities = ["create", "update", "read", "list"] }
           path "transit/decrypt/payroll" { capabilities = ["deny"] }"#,
    )
    .await;
    // The legacy endpoint writes to the same store.
    let (st, _) = s
        .root(
            "PUT",
            "sys/policy/more",
            Some(json!({ "rules": r#"path "transit/keys/+" { capabilities = ["read"] }"# })),
        )
        .await;
    assert_eq!(st, 204);
    let (t, _) = token(&s, json!({ "policies": ["apps", "more"] })).await;
    let (st, v) = s
        .call(
            "POST",
            "transit/encrypt/payroll",
            Some(&t),
            Some(json!({ "plaintext": b64(b"1") })),
        )
        .await;
    assert_eq!(st, 200);
    let ct = v["data"]["ciphertext"].clone();
    assert_eq!(
        s.call(
            "POST",
            "transit/decrypt/payroll",
            Some(&t),
            Some(json!({ "ciphertext": ct }))
        )
        .await
        .0,
        403
    );
    assert_eq!(s.call("LIST", "transit/keys", Some(&t), None).await.0, 200);
    assert_eq!(s.call("DELETE", "transit/keys/payroll", Some(&t), None).await.0, 403);

    let (st, v) = s.root("GET", "sys/policy", None).await;
    assert_eq!(st, 200);
    assert!(v["policies"].as_array().unwrap().contains(&json!("more")), "{v}");
    let (_, v) = s.root("GET", "sys/policy/more", None).await;
    assert!(v["data"]["rules"].as_str().unwrap().contains("transit/keys/+"));
    let (_, v) = s.root("LIST", "sys/policies/acl", None).await;
    assert_eq!(v["data"]["keys"], json!(["default", "apps", "more", "root"]));
    let (_, v) = s.root("GET", "sys/policies/acl/apps", None).await;
    assert!(v["data"]["policy"].as_str().unwrap().contains("deny"));

    // Editing a policy applies to existing tokens at once.
    policy(&s, "apps", r#"path "transit/encrypt/*" { capabilities = ["update"] }"#).await;
    assert_eq!(s.call("LIST", "transit/keys", Some(&t), None).await.0, 403);

    for (name, body) in [
        ("bad", json!({ "policy": "path \"x\" { capabilities = [\"fly\"] }" })),
        ("bad", json!({ "policy": "path \"x\" {" })),
        ("bad", json!({ "policy": "" })),
        ("bad", json!({})),
        ("root", json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" })),
        (
            "bad name!",
            json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" }),
        ),
    ] {
        assert_eq!(
            s.root("PUT", &format!("sys/policies/acl/{name}"), Some(body.clone()))
                .await
                .0,
            400,
            "{name} {body}"
        );
    }
    assert_eq!(s.root("GET", "sys/policies/acl/bad", None).await.0, 404);
    assert_eq!(s.root("DELETE", "sys/policies/acl/default", None).await.0, 400);
    assert_eq!(s.root("DELETE", "sys/policies/acl/apps", None).await.0, 204);
    assert_eq!(
        s.call(
            "POST",
            "transit/encrypt/payroll",
            Some(&t),
            Some(json!({ "plaintext": b64(b"1") }))
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn token_lookup_revoke_and_children() {
    let s = Server::dev();
    policy(&s, "p", r#"path "auth/token/create" { capabilities = ["update"] }"#).await;
    let (parent, parent_acc) = token(
        &s,
        json!({ "policies": ["p"], "ttl": "1h", "meta": { "team": "billing" } }),
    )
    .await;
    let (st, v) = s.call("GET", "auth/token/lookup-self", Some(&parent), None).await;
    assert_eq!(st, 200);
    let d = &v["data"];
    assert_eq!(d["policies"], json!(["default", "p"]));
    assert_eq!(d["id"], json!(parent));
    assert_eq!(d["accessor"], json!(parent_acc));
    assert!(d["ttl"].as_i64().unwrap() > 3500 && d["ttl"].as_i64().unwrap() <= 3600);
    assert_eq!(d["meta"]["team"], "billing");

    // A child may only hold its parent's policies.
    let (st, v) = s
        .call(
            "POST",
            "auth/token/create",
            Some(&parent),
            Some(json!({ "policies": ["root"] })),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .call(
            "POST",
            "auth/token/create",
            Some(&parent),
            Some(json!({ "policies": ["p"] })),
        )
        .await;
    assert_eq!(st, 200);
    let child = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (_, v) = s.call("POST", "auth/token/create", Some(&child), Some(json!({}))).await;
    let grandchild = v["auth"]["client_token"].as_str().unwrap().to_owned();

    // Revoking the parent revokes its descendants.
    assert_eq!(
        s.root("POST", "auth/token/revoke", Some(json!({ "token": parent })))
            .await
            .0,
        204
    );
    for t in [&parent, &child, &grandchild] {
        assert_eq!(s.call("GET", "auth/token/lookup-self", Some(t), None).await.0, 403);
    }
    assert_eq!(
        s.root("POST", "auth/token/revoke", Some(json!({ "token": parent })))
            .await
            .0,
        204,
        "idempotent"
    );

    let (t, acc) = token(&s, json!({})).await;
    let (st, v) = s
        .root("POST", "auth/token/lookup-accessor", Some(json!({ "accessor": acc })))
        .await;
    assert_eq!(
        (st, v["data"]["id"].as_str()),
        (200, Some("")),
        "lookup by accessor never shows the id"
    );
    assert_eq!(
        s.root("POST", "auth/token/revoke-accessor", Some(json!({ "accessor": acc })))
            .await
            .0,
        204
    );
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);

    let (t, _) = token(&s, json!({})).await;
    assert_eq!(s.call("POST", "auth/token/revoke-self", Some(&t), None).await.0, 204);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);

    for bad in [None, Some("nope"), Some("")] {
        assert_eq!(
            s.call("GET", "auth/token/lookup-self", bad, None).await.0,
            403,
            "{bad:?}"
        );
    }
    let (st, _) = s.call("GET", "transit/keys", None, Some(json!({}))).await;
    assert_eq!(st, 403);
    assert_eq!(
        s.root("POST", "auth/token/create", Some(json!({ "ttl": "soon" })))
            .await
            .0,
        400
    );
    assert_eq!(
        s.root("POST", "auth/token/create", Some(json!({ "policies": 7 })))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn expired_and_used_up_tokens_are_refused() {
    let s = Server::dev();
    let (t, _) = token(&s, json!({ "ttl": "1s" })).await;
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);

    let (t, _) = token(&s, json!({ "num_uses": 2 })).await;
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);

    // The last use of a parent revokes its children, as in Vault.
    let (t, _) = token(&s, json!({ "num_uses": 2 })).await;
    let (st, v) = s.call("POST", "auth/token/create", Some(&t), Some(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    let child = v["auth"]["client_token"].as_str().unwrap().to_owned();
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&child), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&child), None).await.0, 403);
}

#[tokio::test]
async fn renewal_stops_at_the_maximum_ttl() {
    let s = Server::dev();
    let renew = |t: String, increment: &'static str| {
        let s = &s;
        async move {
            s.call(
                "POST",
                "auth/token/renew-self",
                Some(&t),
                Some(json!({ "increment": increment })),
            )
            .await
        }
    };
    // Without an explicit maximum, renewals may reach the system's (768h from creation).
    let (t, _) = token(&s, json!({ "ttl": "1h" })).await;
    let (st, v) = renew(t, "100h").await;
    assert_eq!(
        (st, v["auth"]["lease_duration"].as_i64()),
        (200, Some(100 * 3600)),
        "{v}"
    );
    // With one, never past it, however often the holder asks.
    let (t, _) = token(&s, json!({ "ttl": "1h", "explicit_max_ttl": "2h" })).await;
    for _ in 0..3 {
        let (st, v) = renew(t.clone(), "768h").await;
        let lease = v["auth"]["lease_duration"].as_i64().unwrap();
        assert_eq!(st, 200, "{v}");
        assert!((7100..=7200).contains(&lease), "{lease}");
    }
    let (st, v) = s.call("GET", "auth/token/lookup-self", Some(&t), None).await;
    assert_eq!(st, 200);
    let left = v["data"]["ttl"].as_i64().unwrap();
    assert!(left <= 7200, "{left}");
}
