//! Transit over HTTP against the real binary: every endpoint and its errors.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, b64, errors, unb64};
use serde_json::{Value, json};

async fn encrypt(s: &Server, key: &str, pt: &[u8], aad: Option<&[u8]>) -> String {
    let mut body = json!({ "plaintext": b64(pt) });
    if let Some(a) = aad {
        body["associated_data"] = json!(b64(a));
    }
    let (st, v) = s.root("POST", &format!("transit/encrypt/{key}"), Some(body)).await;
    assert_eq!(st, 200, "{v}");
    v["data"]["ciphertext"].as_str().unwrap().to_owned()
}

async fn decrypt(s: &Server, key: &str, ct: &str, aad: Option<&[u8]>) -> (u16, Value) {
    let mut body = json!({ "ciphertext": ct });
    if let Some(a) = aad {
        body["associated_data"] = json!(b64(a));
    }
    s.root("POST", &format!("transit/decrypt/{key}"), Some(body)).await
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_with_and_without_aad() {
    let s = Server::dev();
    let ct = encrypt(&s, "orders", b"card 4111", None).await;
    assert!(ct.starts_with("vault:v1:"));
    let (st, v) = decrypt(&s, "orders", &ct, None).await;
    assert_eq!(st, 200);
    assert_eq!(unb64(v["data"]["plaintext"].as_str().unwrap()), b"card 4111");
    // The payload is nonce(12) + ciphertext + tag(16).
    assert_eq!(unb64(ct.trim_start_matches("vault:v1:")).len(), 12 + 9 + 16);

    let bound = encrypt(
        &s,
        "orders",
        b"row secret",
        Some(b"tenant=a,table=users,row=1,col=email"),
    )
    .await;
    let (st, v) = decrypt(&s, "orders", &bound, Some(b"tenant=a,table=users,row=1,col=email")).await;
    assert_eq!(
        (st, unb64(v["data"]["plaintext"].as_str().unwrap())),
        (200, b"row secret".to_vec())
    );
}

#[tokio::test]
async fn decrypt_with_other_rows_aad_or_another_key_fails() {
    let s = Server::dev();
    let ct = encrypt(&s, "orders", b"x", Some(b"row=1")).await;
    for (key, aad) in [
        ("orders", Some(&b"row=2"[..])),
        ("orders", None),
        ("other", Some(&b"row=1"[..])),
    ] {
        if key == "other" {
            encrypt(&s, "other", b"make it exist", None).await;
        }
        let (st, v) = decrypt(&s, key, &ct, aad).await;
        assert_eq!(st, 400, "{key} {aad:?}: {v}");
        assert!(errors(&v).contains("message authentication failed"), "{v}");
    }
}

#[tokio::test]
async fn tampered_and_malformed_ciphertexts_are_400() {
    let s = Server::dev();
    let ct = encrypt(&s, "k", b"tamper me", None).await;
    let mut raw = unb64(ct.trim_start_matches("vault:v1:"));
    raw[14] ^= 1;
    let tampered = format!("vault:v1:{}", b64(&raw));
    for bad in [
        tampered.as_str(),
        "garbage",
        "vault:vX:AAAA",
        "vault:v1:!!!",
        "vault:v1:",
        "vault:v1:AAAA",
        "vault:v99:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "vault:v-1:AAAA",
        "",
    ] {
        let (st, v) = decrypt(&s, "k", bad, None).await;
        assert_eq!(st, 400, "{bad:?}: {v}");
        assert!(!errors(&v).is_empty(), "{bad:?} has a message");
    }
    let (st, v) = decrypt(&s, "missing-key", &ct, None).await;
    assert_eq!(st, 400, "{v}");
    assert!(errors(&v).contains("not found"));
    let (st, _) = s
        .root("POST", "transit/encrypt/k", Some(json!({ "plaintext": "not base64!" })))
        .await;
    assert_eq!(st, 400);
    let (st, _) = s.root("POST", "transit/encrypt/k", Some(json!({}))).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn batches_report_each_item_and_fail_partially() {
    let s = Server::dev();
    let items = json!([
        { "plaintext": b64(b"one") },
        { "plaintext": b64(b"two"), "associated_data": b64(b"aad"), "reference": "r2" },
        { "plaintext": "%%%" },
    ]);
    let (st, v) = s
        .root("POST", "transit/encrypt/b", Some(json!({ "batch_input": items })))
        .await;
    assert_eq!(st, 400, "a failed item makes the batch 400: {v}");
    let res = v["data"]["batch_results"].as_array().unwrap();
    assert!(res[0]["ciphertext"].as_str().unwrap().starts_with("vault:v1:"));
    assert_eq!(res[1]["reference"], "r2");
    assert!(res[2]["error"].as_str().unwrap().contains("base64"));

    let dec = json!([
        { "ciphertext": res[0]["ciphertext"] },
        { "ciphertext": res[1]["ciphertext"], "associated_data": b64(b"aad") },
        { "ciphertext": res[1]["ciphertext"] },
    ]);
    let (st, v) = s
        .root("POST", "transit/decrypt/b", Some(json!({ "batch_input": dec.clone() })))
        .await;
    assert_eq!(st, 400);
    let out = v["data"]["batch_results"].as_array().unwrap();
    assert_eq!(unb64(out[0]["plaintext"].as_str().unwrap()), b"one");
    assert_eq!(unb64(out[1]["plaintext"].as_str().unwrap()), b"two");
    assert_eq!(out[2]["plaintext"], "");
    assert!(out[2]["error"].as_str().unwrap().contains("authentication"));

    let (st, _) = s
        .root(
            "POST",
            "transit/decrypt/b",
            Some(json!({ "batch_input": dec, "partial_failure_response_code": 207 })),
        )
        .await;
    assert_eq!(st, 207);
    let (st, _) = s
        .root("POST", "transit/encrypt/b", Some(json!({ "batch_input": [] })))
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .root("POST", "transit/encrypt/b", Some(json!({ "batch_input": [1, 2] })))
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn rotation_rewrap_and_version_states() {
    let s = Server::dev();
    let v1 = encrypt(&s, "r", b"old", None).await;
    let (st, v) = s.root("POST", "transit/keys/r/rotate", None).await;
    assert_eq!((st, v["data"]["latest_version"].as_u64()), (200, Some(2)));
    let v2 = encrypt(&s, "r", b"new", None).await;
    assert!(v2.starts_with("vault:v2:"));
    assert_eq!(decrypt(&s, "r", &v1, None).await.0, 200);

    let (st, v) = s
        .root("POST", "transit/rewrap/r", Some(json!({ "ciphertext": v1 })))
        .await;
    assert_eq!(st, 200);
    let rewrapped = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(rewrapped.starts_with("vault:v2:"));
    assert_eq!(
        unb64(
            decrypt(&s, "r", &rewrapped, None).await.1["data"]["plaintext"]
                .as_str()
                .unwrap()
        ),
        b"old"
    );

    // Encrypting with an explicit older version works until min_encryption_version forbids it.
    let (st, v) = s
        .root(
            "POST",
            "transit/encrypt/r",
            Some(json!({ "plaintext": b64(b"x"), "key_version": 1 })),
        )
        .await;
    assert!(st == 200 && v["data"]["ciphertext"].as_str().unwrap().starts_with("vault:v1:"));
    let (st, _) = s
        .root(
            "POST",
            "transit/keys/r/config",
            Some(json!({ "min_decryption_version": 2, "min_encryption_version": 2 })),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = decrypt(&s, "r", &v1, None).await;
    assert_eq!(st, 400);
    assert!(errors(&v).contains("version 1 is retired"), "{v}");
    let (st, _) = s
        .root(
            "POST",
            "transit/encrypt/r",
            Some(json!({ "plaintext": b64(b"x"), "key_version": 1 })),
        )
        .await;
    assert_eq!(st, 400);
    let (st, v) = s.root("GET", "transit/keys/r", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        v["data"]["keys"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["2"]
    );

    // Trim destroys v1 for good; lowering min_decryption_version cannot bring it back.
    let (st, v) = s
        .root(
            "POST",
            "transit/keys/r/trim",
            Some(json!({ "min_available_version": 2 })),
        )
        .await;
    assert_eq!((st, v["data"]["min_available_version"].as_u64()), (200, Some(2)), "{v}");
    let (st, _) = s
        .root(
            "POST",
            "transit/keys/r/config",
            Some(json!({ "min_decryption_version": 1 })),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .root(
            "POST",
            "transit/keys/r/trim",
            Some(json!({ "min_available_version": 3 })),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s.root("POST", "transit/keys/r/trim", Some(json!({}))).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn key_lifecycle_and_refused_changes_change_nothing() {
    let s = Server::dev();
    let (st, _) = s.root("LIST", "transit/keys", None).await;
    assert_eq!(st, 404, "no keys yet");
    let (st, v) = s
        .root("POST", "transit/keys/k1", Some(json!({ "type": "chacha20-poly1305" })))
        .await;
    assert_eq!((st, v["data"]["type"].as_str()), (200, Some("chacha20-poly1305")));
    let ct = encrypt(&s, "k1", b"typed", None).await;
    assert_eq!(decrypt(&s, "k1", &ct, None).await.0, 200);
    // Creating again is a no-op.
    let (st, v) = s
        .root("POST", "transit/keys/k1", Some(json!({ "type": "aes256-gcm96" })))
        .await;
    assert_eq!((st, v["data"]["type"].as_str()), (200, Some("chacha20-poly1305")));
    let (st, v) = s.call("GET", "transit/keys?list=true", Some("root"), None).await;
    assert_eq!((st, v["data"]["keys"].clone()), (200, json!(["k1"])));

    let (_, before) = s.root("GET", "transit/keys/k1", None).await;
    for bad in [
        json!({ "min_decryption_version": 9 }),
        json!({ "min_encryption_version": 9 }),
        json!({ "auto_rotate_period": "5m" }),
        json!({ "deletion_allowed": "maybe" }),
        json!({ "min_decryption_version": [1] }),
    ] {
        let (st, v) = s.root("POST", "transit/keys/k1/config", Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    let (_, after) = s.root("GET", "transit/keys/k1", None).await;
    assert_eq!(before["data"], after["data"]);

    for (method, path, body) in [
        ("POST", "transit/keys/nope/rotate", None),
        (
            "POST",
            "transit/keys/nope/config",
            Some(json!({ "deletion_allowed": true })),
        ),
        ("POST", "transit/datakey/plaintext/nope", None),
        ("POST", "transit/hmac/nope", Some(json!({ "input": b64(b"x") }))),
        ("DELETE", "transit/keys/nope", None),
        ("POST", "transit/keys/bad name!", None),
        ("POST", "transit/keys/k2", Some(json!({ "type": "rsa-4096" }))),
        ("POST", "transit/keys/k3", Some(json!({ "derived": true }))),
        ("POST", "transit/keys/k4", Some(json!({ "auto_rotate_period": "10s" }))),
    ] {
        let (st, v) = s.root(method, path, body).await;
        assert_eq!(st, 400, "{method} {path}: {v}");
    }
    assert_eq!(s.root("GET", "transit/keys/nope", None).await.0, 404);
    assert_eq!(
        s.root("GET", "transit/keys/k4", None).await.0,
        404,
        "a refused create leaves no key"
    );

    let (st, v) = s.root("DELETE", "transit/keys/k1", None).await;
    assert_eq!(st, 400);
    assert!(errors(&v).contains("deletion is not allowed"));
    assert_eq!(
        s.root(
            "POST",
            "transit/keys/k1/config",
            Some(json!({ "deletion_allowed": true }))
        )
        .await
        .0,
        200
    );
    assert_eq!(s.root("DELETE", "transit/keys/k1", None).await.0, 204);
    assert_eq!(s.root("GET", "transit/keys/k1", None).await.0, 404);
    assert_eq!(decrypt(&s, "k1", &ct, None).await.0, 400);
    assert_eq!(s.root("GET", "transit/nothing/here", None).await.0, 404);
    assert_eq!(s.root("GET", "transit/encrypt/k1", None).await.0, 405);
}

#[tokio::test]
async fn datakeys_decrypt_to_their_plaintext() {
    let s = Server::dev();
    encrypt(&s, "dk", b"init", None).await;
    for bits in [128u64, 256, 512] {
        let (st, v) = s
            .root("POST", "transit/datakey/plaintext/dk", Some(json!({ "bits": bits })))
            .await;
        assert_eq!(st, 200, "{v}");
        let pt = unb64(v["data"]["plaintext"].as_str().unwrap());
        assert_eq!(pt.len() as u64 * 8, bits);
        let (_, d) = decrypt(&s, "dk", v["data"]["ciphertext"].as_str().unwrap(), None).await;
        assert_eq!(unb64(d["data"]["plaintext"].as_str().unwrap()), pt);
    }
    let (st, v) = s.root("POST", "transit/datakey/wrapped/dk", None).await;
    assert_eq!(st, 200);
    assert!(v["data"].get("plaintext").is_none());
    assert!(v["data"]["ciphertext"].as_str().unwrap().starts_with("vault:v1:"));
    assert_eq!(
        s.root("POST", "transit/datakey/plaintext/dk", Some(json!({ "bits": 100 })))
            .await
            .0,
        400
    );
    assert_eq!(s.root("POST", "transit/datakey/other/dk", None).await.0, 400);
}

#[tokio::test]
async fn hmac_and_verify() {
    let s = Server::dev();
    encrypt(&s, "h", b"init", None).await;
    let input = b64(b"alice@example.com");
    let (st, v) = s.root("POST", "transit/hmac/h", Some(json!({ "input": input }))).await;
    assert_eq!(st, 200);
    let mac = v["data"]["hmac"].as_str().unwrap().to_owned();
    assert_eq!(unb64(mac.trim_start_matches("vault:v1:")).len(), 32);
    let verify = |input: String, mac: String, algo: &'static str| {
        let s = &s;
        async move {
            let (st, v) = s
                .root(
                    "POST",
                    "transit/verify/h",
                    Some(json!({ "input": input, "hmac": mac, "hash_algorithm": algo })),
                )
                .await;
            (st, v["data"]["valid"].clone())
        }
    };
    assert_eq!(verify(input.clone(), mac.clone(), "sha2-256").await, (200, json!(true)));
    assert_eq!(
        verify(b64(b"bob@example.com"), mac.clone(), "sha2-256").await,
        (200, json!(false))
    );
    assert_eq!(
        verify(input.clone(), mac.clone(), "sha2-512").await,
        (200, json!(false))
    );
    assert_eq!(verify(input.clone(), "vault:v1:???".into(), "sha2-256").await.0, 400);

    let (_, v) = s
        .root("POST", "transit/hmac/h/sha2-512", Some(json!({ "input": input })))
        .await;
    assert_eq!(
        unb64(v["data"]["hmac"].as_str().unwrap().trim_start_matches("vault:v1:")).len(),
        64
    );
    assert_eq!(
        s.root("POST", "transit/hmac/h/md5", Some(json!({ "input": input })))
            .await
            .0,
        400
    );

    let (st, v) = s
        .root(
            "POST",
            "transit/hmac/h",
            Some(json!({ "batch_input": [{ "input": input }, { "input": "%" }] })),
        )
        .await;
    assert_eq!(st, 200, "hmac batches answer 200 even with failed items, as Vault");
    assert!(v["data"]["batch_results"][1]["error"].is_string());
}

#[tokio::test]
async fn mounts_can_be_added_and_removed() {
    let s = Server::dev();
    let (st, v) = s.root("GET", "sys/mounts", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["transit/"]["type"], "transit");
    assert_eq!(
        s.root("POST", "sys/mounts/payments", Some(json!({ "type": "transit" })))
            .await
            .0,
        204
    );
    let ct = {
        let (st, v) = s
            .root("POST", "payments/encrypt/k", Some(json!({ "plaintext": b64(b"p") })))
            .await;
        assert_eq!(st, 200);
        v["data"]["ciphertext"].as_str().unwrap().to_owned()
    };
    // The same key name under another mount is another key.
    encrypt(&s, "k", b"x", None).await;
    assert_eq!(decrypt(&s, "k", &ct, None).await.0, 400);
    for (body, path) in [
        (json!({ "type": "transit" }), "sys/mounts/payments"),
        (json!({ "type": "kv" }), "sys/mounts/kv"),
        (json!({}), "sys/mounts/x"),
        (json!({ "type": "transit" }), "sys/mounts/sys"),
        (json!({ "type": "transit" }), "sys/mounts/bad%20path"),
    ] {
        assert_eq!(s.root("POST", path, Some(body)).await.0, 400, "{path}");
    }
    assert_eq!(s.root("DELETE", "sys/mounts/payments", None).await.0, 204);
    assert_eq!(
        s.root("POST", "payments/decrypt/k", Some(json!({ "ciphertext": ct })))
            .await
            .0,
        404
    );
    assert_eq!(
        s.root("POST", "sys/mounts/payments", Some(json!({ "type": "transit" })))
            .await
            .0,
        204
    );
    let (st, _) = s
        .root("POST", "payments/decrypt/k", Some(json!({ "ciphertext": ct })))
        .await;
    assert_eq!(st, 400, "a remounted engine starts empty");
}
