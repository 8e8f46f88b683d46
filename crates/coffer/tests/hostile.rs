//! Malformed and hostile requests: each gets a 4xx with a message, none
//! changes anything, and the server keeps answering.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, b64};
use serde_json::{Value, json};

/// Method, path, body, extra headers.
type Case = (&'static str, String, Vec<u8>, Vec<(&'static str, &'static str)>);

/// Everything a request could have changed, read back through the API.
async fn snapshot(s: &Server) -> Value {
    let mut out = json!({});
    for path in ["transit/keys", "sys/policies/acl", "sys/mounts"] {
        let m = if path == "sys/mounts" { "GET" } else { "LIST" };
        let (_, mut v) = s.root(m, path, None).await;
        v["request_id"] = Value::Null;
        out[path] = v;
    }
    let (_, mut v) = s.root("GET", "transit/keys/k", None).await;
    v["request_id"] = Value::Null;
    out["key"] = v;
    out
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_change_nothing() {
    let s = Server::dev();
    let (_, v) = s
        .root("POST", "transit/encrypt/k", Some(json!({ "plaintext": b64(b"x") })))
        .await;
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    let before = snapshot(&s).await;

    let cases: Vec<Case> = vec![
        ("POST", "transit/encrypt/k".into(), b"{not json".to_vec(), vec![]),
        ("POST", "transit/encrypt/k".into(), b"[1,2,3]".to_vec(), vec![]),
        ("POST", "transit/encrypt/k".into(), b"\"str\"".to_vec(), vec![]),
        ("POST", "transit/encrypt/k".into(), vec![0xff, 0xfe, b'{', b'}'], vec![]),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": 5}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": "@@@"}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": "eA==", "key_version": "x"}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": "eA==", "key_version": -1}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": "eA==", "key_version": 99}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": "eA==", "associated_data": 1}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"plaintext": "eA==", "context": "Zm9v"}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"batch_input": {}}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/encrypt/k".into(),
            br#"{"batch_input": "x"}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            br#"{"ciphertext": ["a"]}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/decrypt/k".into(),
            format!(r#"{{"ciphertext": "{ct}x"}}"#).into_bytes(),
            vec![],
        ),
        (
            "POST",
            "transit/rewrap/k".into(),
            br#"{"ciphertext": "vault:v1:"}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/keys/k/config".into(),
            br#"{"min_decryption_version": 1e99}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/keys/k/config".into(),
            br#"{"min_decryption_version": 4294967296}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/keys/k/config".into(),
            br#"{"deletion_allowed": {}}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "transit/keys/k/trim".into(),
            br#"{"min_available_version": "two"}"#.to_vec(),
            vec![],
        ),
        ("POST", "transit/keys/..".into(), vec![], vec![]),
        ("POST", "transit/keys/a%2Fb".into(), vec![], vec![]),
        ("POST", format!("transit/keys/{}", "n".repeat(300)), vec![], vec![]),
        ("GET", "transit//keys".into(), vec![], vec![]),
        ("BREW", "transit/keys/k".into(), vec![], vec![]),
        (
            "POST",
            "sys/mounts/x".into(),
            br#"{"type": ["transit"]}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "sys/policies/acl/x".into(),
            br#"{"policy": 1}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "auth/token/create".into(),
            br#"{"policies": [1]}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "auth/token/create".into(),
            br#"{"meta": {"a": 1}}"#.to_vec(),
            vec![],
        ),
        (
            "POST",
            "auth/token/create".into(),
            br#"{"num_uses": -3}"#.to_vec(),
            vec![],
        ),
        (
            "GET",
            "transit/keys/k".into(),
            vec![],
            vec![("X-Vault-Namespace", "nobody")],
        ),
    ];
    let n = cases.len();
    for (method, path, body, headers) in cases {
        let mut hs = headers.clone();
        hs.push(("Content-Type", "application/json"));
        let body = if body.is_empty() { None } else { Some(body) };
        let (st, v) = s.raw(method, &path, Some("root"), body, &hs).await;
        assert!((400..500).contains(&st), "{method} {path}: status {st} {v}");
        if st != 404 && st != 413 && st != 405 {
            assert!(!common::errors(&v).is_empty(), "{method} {path}: no error message: {v}");
        }
    }
    assert_eq!(
        snapshot(&s).await,
        before,
        "a refused request changed state ({n} cases)"
    );
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 200);
}

/// Paths a normalising client would rewrite, sent as raw bytes.
#[tokio::test]
async fn dot_segments_are_refused_on_the_wire() {
    use std::io::{Read, Write};
    let s = Server::dev();
    let hostport = s.addr.trim_start_matches("http://").to_owned();
    for path in [
        "/v1/transit/../sys/mounts",
        "/v1/transit/%2E%2E/sys/mounts",
        "/v1/./sys/mounts",
        "/v1/transit/keys/..",
        "/v1//sys/mounts",
    ] {
        let mut c = std::net::TcpStream::connect(&hostport).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        let status = resp.split_whitespace().nth(1).unwrap_or("");
        assert!(status.starts_with('4'), "{path}: {status}");
    }
    // A token header that is not text is refused, not guessed at.
    let mut c = std::net::TcpStream::connect(&hostport).unwrap();
    c.write_all(b"GET /v1/transit/keys HTTP/1.1\r\nHost: x\r\nX-Vault-Token: r\xffoot\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).unwrap();
    assert!(resp.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&resp));
}
