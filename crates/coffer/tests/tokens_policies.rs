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
    // Expiry is kept in whole seconds: a 1 s token can lapse at once, so 3 s.
    let (t, _) = token(&s, json!({ "ttl": "3s" })).await;
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);

    let (t, _) = token(&s, json!({ "num_uses": 2 })).await;
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);

    // A use-limited token makes no children, as in Vault: they would outlive its uses.
    let (t, _) = token(&s, json!({ "num_uses": 2 })).await;
    let (st, v) = s.call("POST", "auth/token/create", Some(&t), Some(json!({}))).await;
    assert_eq!(st, 400, "{v}");
    assert!(errors(&v).contains("restricted use token"), "{v}");
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&t), None).await.0, 403);
}

/// As Vault, a list checks the rules for `path/`: a deny on `path/*` holds,
/// and the usual `path/` list rule grants it.
#[tokio::test]
async fn lists_are_authorised_on_the_path_with_its_slash() {
    let s = Server::dev();
    assert_eq!(s.root("POST", "transit/keys/k", None).await.0, 200);
    policy(
        &s,
        "no-key-list",
        r#"path "transit/*" { capabilities = ["read", "list", "update"] }
           path "transit/keys/*" { capabilities = ["deny"] }"#,
    )
    .await;
    policy(&s, "key-list", r#"path "transit/keys/" { capabilities = ["list"] }"#).await;
    let (denied, _) = token(&s, json!({ "policies": ["no-key-list"] })).await;
    let (lister, _) = token(&s, json!({ "policies": ["key-list"] })).await;
    for path in ["transit/keys", "transit/keys?list=true"] {
        let method = if path.contains('?') { "GET" } else { "LIST" };
        assert_eq!(s.call(method, path, Some(&denied), None).await.0, 403, "{path}");
        let (st, v) = s.call(method, path, Some(&lister), None).await;
        assert_eq!((st, v["data"]["keys"].clone()), (200, json!(["k"])), "{path}");
    }
}

#[tokio::test]
async fn tokens_made_in_a_tenant_from_the_root_namespace_inherit_nothing() {
    let s = Server::dev();
    assert_eq!(s.root("POST", "sys/namespaces/acme", None).await.0, 200);
    policy(
        &s,
        "ops",
        r#"path "acme/auth/token/create" { capabilities = ["update"] }"#,
    )
    .await;
    policy(
        &s,
        "ops-sudo",
        r#"path "acme/auth/token/create" { capabilities = ["update", "sudo"] }"#,
    )
    .await;
    let (ops, _) = token(&s, json!({ "policies": ["ops"] })).await;
    let (sudo, _) = token(&s, json!({ "policies": ["ops-sudo"] })).await;
    let create = |t: String, body: Value| {
        let s = &s;
        async move {
            s.raw(
                "POST",
                "auth/token/create",
                Some(&t),
                Some(body.to_string().into_bytes()),
                &[("X-Vault-Namespace", "acme")],
            )
            .await
        }
    };
    let (st, v) = create(ops.clone(), json!({})).await;
    assert_eq!(st, 400, "no sudo: {v}");
    let (st, v) = create(sudo.clone(), json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["auth"]["policies"],
        json!(["default"]),
        "the caller's names mean nothing in acme"
    );
    let (st, v) = create(sudo.clone(), json!({ "policies": ["root"] })).await;
    assert_eq!(st, 400, "{v}");
    // The root token may, but not a root token for the tenant either.
    assert_eq!(create("root".into(), json!({ "policies": ["root"] })).await.0, 400);
}

#[tokio::test]
async fn capabilities_self_answers_as_requests_are_authorised() {
    let s = Server::dev();
    assert_eq!(s.root("POST", "sys/namespaces/acme", None).await.0, 200);
    let (_, v) = s
        .root(
            "POST",
            "sys/capabilities-self",
            Some(json!({ "path": "transit/encrypt/k" })),
        )
        .await;
    assert_eq!(v["capabilities"], json!(["root"]), "{v}");
    policy(
        &s,
        "acme-enc",
        r#"path "acme/transit/encrypt/*" { capabilities = ["update"] }
           path "acme/sys/capabilities-self" { capabilities = ["update"] }"#,
    )
    .await;
    let (t, _) = token(&s, json!({ "policies": ["acme-enc"] })).await;
    let (st, v) = s
        .raw(
            "POST",
            "sys/capabilities-self",
            Some(&t),
            Some(json!({ "path": "transit/encrypt/k" }).to_string().into_bytes()),
            &[("X-Vault-Namespace", "acme")],
        )
        .await;
    assert_eq!((st, v["capabilities"].clone()), (200, json!(["update"])), "{v}");
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
