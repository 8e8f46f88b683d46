//! Seal, unseal, init, health and restart against the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, all_bytes, b64, contains, errors, unb64};
use serde_json::{Value, json};

async fn init(s: &Server, n: u32, t: u32) -> (Vec<String>, String) {
    let (st, v) = s
        .call(
            "PUT",
            "sys/init",
            None,
            Some(json!({ "secret_shares": n, "secret_threshold": t })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let keys: Vec<String> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let b64s: Vec<&Value> = v["keys_base64"].as_array().unwrap().iter().collect();
    assert_eq!(keys.len(), n as usize);
    for (h, b) in keys.iter().zip(b64s) {
        assert_eq!(
            hex::decode(h).unwrap(),
            unb64(b.as_str().unwrap()),
            "hex and base64 shares are the same bytes"
        );
    }
    (keys, v["root_token"].as_str().unwrap().to_owned())
}

async fn unseal(s: &Server, key: &str) -> Value {
    let (st, v) = s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test]
async fn init_unseal_seal_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config(&data);
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 501);
    assert_eq!(
        s.call("GET", "sys/init", None, None).await.1,
        json!({ "initialized": false })
    );
    assert_eq!(
        s.call("PUT", "sys/unseal", None, Some(json!({ "key": "00" }))).await.0,
        400
    );
    for bad in [
        json!({ "secret_shares": 3, "secret_threshold": 4 }),
        json!({ "secret_shares": 0, "secret_threshold": 0 }),
        json!({}),
    ] {
        assert_eq!(s.call("PUT", "sys/init", None, Some(bad)).await.0, 400);
    }
    let (keys, root) = init(&s, 5, 3).await;
    assert_eq!(
        s.call(
            "PUT",
            "sys/init",
            None,
            Some(json!({ "secret_shares": 1, "secret_threshold": 1 }))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        s.call("GET", "sys/health", None, None).await.0,
        503,
        "initialised but sealed"
    );
    let (st, v) = s
        .call(
            "POST",
            "transit/encrypt/k",
            Some(&root),
            Some(json!({ "plaintext": b64(b"x") })),
        )
        .await;
    assert_eq!((st, errors(&v).as_str()), (503, "Vault is sealed"));

    // Two of three shares: still sealed. The same share twice does not count twice.
    let v = unseal(&s, &keys[0]).await;
    assert_eq!(
        (
            v["sealed"].as_bool(),
            v["progress"].as_u64(),
            v["t"].as_u64(),
            v["n"].as_u64()
        ),
        (Some(true), Some(1), Some(3), Some(5))
    );
    assert_eq!(unseal(&s, &keys[0]).await["progress"], 1);
    let v = unseal(&s, &b64(&hex::decode(&keys[3]).unwrap())).await;
    assert_eq!((v["sealed"].as_bool(), v["progress"].as_u64()), (Some(true), Some(2)));
    let v = unseal(&s, &keys[4]).await;
    assert_eq!((v["sealed"].as_bool(), v["progress"].as_u64()), (Some(false), Some(0)));
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 200);

    let canary = b"canary-4111-1111-1111-1111";
    let (st, v) = s
        .call(
            "POST",
            "transit/encrypt/k",
            Some(&root),
            Some(json!({ "plaintext": b64(canary) })),
        )
        .await;
    assert_eq!(st, 200);
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (st, v) = s
        .call(
            "POST",
            "auth/token/create",
            Some(&root),
            Some(json!({ "policies": ["p"] })),
        )
        .await;
    assert_eq!(st, 200);
    let child = v["auth"]["client_token"].as_str().unwrap().to_owned();

    // Sealing needs sudo on sys/seal: a limited token is refused.
    assert_eq!(s.call("PUT", "sys/seal", Some(&child), None).await.0, 403);
    assert_eq!(s.call("PUT", "sys/seal", None, None).await.0, 403);
    assert_eq!(s.call("PUT", "sys/seal", Some(&root), None).await.0, 204);
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 503);
    assert_eq!(
        s.call(
            "POST",
            "transit/decrypt/k",
            Some(&root),
            Some(json!({ "ciphertext": ct }))
        )
        .await
        .0,
        503
    );
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&root), None).await.0, 503);
    s.stop();

    // Nothing secret reached the disk: no plaintext, no token id.
    let disk = all_bytes(&data);
    assert!(!disk.is_empty());
    assert!(!contains(&disk, canary), "plaintext canary found on disk");
    assert!(
        !contains(&disk, root.as_bytes()) && !contains(&disk, child.as_bytes()),
        "a token id is on disk"
    );

    // Restart: sealed; a different subset of shares unseals; everything is still there.
    let s = Server::with_config(&data);
    let (_, v) = s.call("GET", "sys/seal-status", None, None).await;
    assert_eq!(
        (v["sealed"].as_bool(), v["t"].as_u64(), v["initialized"].as_bool()),
        (Some(true), Some(3), Some(true))
    );
    for k in [&keys[1], &keys[2], &keys[3]] {
        unseal(&s, k).await;
    }
    let (st, v) = s
        .call(
            "POST",
            "transit/decrypt/k",
            Some(&root),
            Some(json!({ "ciphertext": ct })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(unb64(v["data"]["plaintext"].as_str().unwrap()), canary);
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&child), None).await.0, 200);
}

#[tokio::test]
async fn wrong_shares_reset_progress_and_unseal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_config(&dir.path().join("d"));
    let (keys, _) = init(&s, 3, 2).await;
    let mut forged = hex::decode(&keys[1]).unwrap();
    forged[5] ^= 0xff;
    unseal(&s, &keys[0]).await;
    let (st, v) = s
        .call("PUT", "sys/unseal", None, Some(json!({ "key": hex::encode(&forged) })))
        .await;
    assert_eq!(st, 400, "{v}");
    let (_, v) = s.call("GET", "sys/seal-status", None, None).await;
    assert_eq!((v["sealed"].as_bool(), v["progress"].as_u64()), (Some(true), Some(0)));
    for bad in [
        json!({ "key": "zz-not-a-key" }),
        json!({ "key": "abcd" }),
        json!({}),
        json!({ "key": 5 }),
    ] {
        assert_eq!(
            s.call("PUT", "sys/unseal", None, Some(bad.clone())).await.0,
            400,
            "{bad}"
        );
    }
    assert_eq!(unseal(&s, &keys[0]).await["progress"], 1);
    assert_eq!(
        s.call("PUT", "sys/unseal", None, Some(json!({ "reset": true })))
            .await
            .1["progress"],
        0
    );
    unseal(&s, &keys[2]).await;
    assert_eq!(unseal(&s, &keys[1]).await["sealed"], false);
}

#[tokio::test]
async fn health_answers_vault_shapes_and_codes() {
    let s = Server::dev();
    let (st, v) = s.call("GET", "sys/health", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["initialized"].as_bool(),
            v["sealed"].as_bool(),
            v["standby"].as_bool()
        ),
        (Some(true), Some(false), Some(false))
    );
    let (st, _) = s.call("GET", "sys/health?activecode=299", None, None).await;
    assert_eq!(st, 299);
    // A 1xx is not a final status (hyper would answer 500), and a word is no code: 400, as Vault.
    for bad in [
        "activecode=100",
        "activecode=ok",
        "sealedcode=600",
        "uninitcode=-1",
        "standbycode=x",
    ] {
        let (st, v) = s.call("GET", &format!("sys/health?{bad}"), None, None).await;
        assert_eq!((st, v["errors"].is_array()), (400, true), "{bad}");
    }
    let (st, v) = s.call("GET", "sys/seal-status", None, None).await;
    assert_eq!(
        (st, v["type"].as_str(), v["n"].as_u64()),
        (200, Some("shamir"), Some(1))
    );
    let (st, v) = s.call("GET", "sys/nothing", Some("root"), None).await;
    assert_eq!((st, v["errors"].is_array()), (404, true));
    let (st, _) = s.call("GET", "not-v1", Some("root"), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn config_tables_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_config_extra(
        &dir.path().join("d"),
        "[rotation.default_period]\n\"aes256-gcm96\" = \"2160h\"\n[cache]\nkeys = 2\ntenants = 2\n",
    );
    let (_, root) = common::init_unseal(&s).await;
    let (st, v) = s.call("POST", "transit/keys/q", Some(&root), None).await;
    assert_eq!(
        (st, v["data"]["auto_rotate_period"].as_u64()),
        (200, Some(2160 * 3600)),
        "{v}"
    );
    // More keys than the cache holds still work (evicted ones are unwrapped again).
    for k in ["a", "b", "c", "a", "q"] {
        let (st, _) = s
            .call(
                "POST",
                &format!("transit/encrypt/{k}"),
                Some(&root),
                Some(json!({ "plaintext": b64(b"x") })),
            )
            .await;
        assert_eq!(st, 200);
    }
    drop(s);
    let s = Server::with_config_extra(&dir.path().join("off"), "[audit]\nenabled = false\n");
    let (_, root) = common::init_unseal(&s).await;
    let (st, v) = s.call("GET", "sys/audit/verify", Some(&root), None).await;
    assert_eq!(st, 400, "{v}");
}

/// `sys/metrics`: Prometheus text for a token allowed to read it, counting
/// the audit commits every answered request waited on.
#[tokio::test]
async fn metrics_count_requests_and_audit_commits() {
    let s = Server::dev();
    let scrape = |token: &str, query: &str| {
        let url = format!("{}/v1/sys/metrics{query}", s.addr);
        let token = token.to_owned();
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap();
            let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), ct, r.text().await.unwrap())
        }
    };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let (st, _, before) = scrape("root", "?format=prometheus").await;
    assert_eq!(st, 200, "{before}");
    s.root("POST", "transit/keys/m", None).await;
    for _ in 0..20 {
        let (st, v) = s
            .root("POST", "transit/encrypt/m", Some(json!({ "plaintext": b64(b"x") })))
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, ct, after) = scrape("root", "").await;
    assert_eq!(st, 200, "{after}");
    assert_eq!(ct.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    // 21 answered requests and at least as many records (the scrape itself is audited too).
    let ok = r#"coffer_requests_total{class="2xx"}"#;
    assert!(value(&after, ok) - value(&before, ok) >= 21.0, "{after}");
    let records = value(&after, "coffer_audit_records_total") - value(&before, "coffer_audit_records_total");
    assert!(records >= 21.0, "{records}");
    let commits = value(&after, "coffer_audit_commit_duration_seconds_count")
        - value(&before, "coffer_audit_commit_duration_seconds_count");
    // A commit carries records, or only a checkpoint over records committed
    // since the last one (once the writer idles 10 ms, as on a slow host
    // between requests): at most one of those per batch.
    assert!(
        commits >= 1.0 && commits <= 2.0 * records,
        "{commits} commits, {records} records"
    );
    assert!(value(&after, "coffer_audit_commit_duration_seconds_sum") > 0.0);
    assert_eq!(value(&after, "coffer_audit_failures_total"), 0.0);
    assert!(
        after.contains(r#"coffer_request_duration_seconds_bucket{le="+Inf"}"#),
        "{after}"
    );

    // Other formats are refused; a token needs `read` on sys/metrics; tenants have none.
    let (st, _, body) = scrape("root", "?format=json").await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("unsupported metrics format"), "{body}");
    assert_eq!(scrape("not-a-token", "").await.0, 403);
    s.put_policy("enc", r#"path "transit/encrypt/*" { capabilities = ["update"] }"#)
        .await;
    let (app, _) = s.create_token(json!({ "policies": ["enc"] })).await;
    assert_eq!(scrape(&app, "").await.0, 403);
    s.put_policy("ops", r#"path "sys/metrics" { capabilities = ["read"] }"#)
        .await;
    let (ops, _) = s.create_token(json!({ "policies": ["ops"] })).await;
    assert_eq!(scrape(&ops, "").await.0, 200);
    let (st, v) = s.root("POST", "sys/namespaces/acme", None).await;
    assert!(st == 200 || st == 204, "{v}");
    let (st, v) = s
        .raw(
            "GET",
            "sys/metrics",
            Some("root"),
            None,
            &[("X-Vault-Namespace", "acme")],
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(errors(&v).contains("only available in the root namespace"), "{v}");
}
