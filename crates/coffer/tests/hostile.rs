//! Malformed and hostile requests, as a corpus of data: each case names
//! the status it must get, none may change anything (the state read back
//! through the API is compared before and after), and the server must keep
//! answering. One line per case is printed, so CI shows every verdict.
//!
//! Unknown JSON fields are *not* refused: Vault ignores them and its
//! clients (hvac) send extra fields, so the corpus checks that they are
//! accepted and change nothing beyond what the request asked for.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Server, b64, errors};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Who {
    Root,
    NoToken,
    Bogus,
    /// A token with only `read` on `transit/keys/*`.
    Reader,
}

/// One request and the status it must get.
enum Case {
    /// Sent with reqwest (Content-Type JSON when there is a body).
    Api {
        method: String,
        path: String,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
        who: Who,
        expect: u16,
    },
    /// Bytes written on a TCP connection as they are, for what an HTTP
    /// client library would refuse to send or would normalise.
    Wire { label: String, bytes: Vec<u8>, expect: u16 },
}

fn api(method: &str, path: &str, body: impl Into<Vec<u8>>, who: Who, expect: u16) -> Case {
    Case::Api {
        method: method.into(),
        path: path.into(),
        body: body.into(),
        headers: Vec::new(),
        who,
        expect,
    }
}

fn post(path: &str, body: Value, expect: u16) -> Case {
    api("POST", path, body.to_string(), Who::Root, expect)
}

fn with_header(mut c: Case, name: &'static str, value: &str) -> Case {
    if let Case::Api { headers, .. } = &mut c {
        headers.push((name, value.to_owned()));
    }
    c
}

fn wire(label: &str, bytes: impl Into<Vec<u8>>, expect: u16) -> Case {
    Case::Wire {
        label: label.into(),
        bytes: bytes.into(),
        expect,
    }
}

/// A GET on the wire with the root token and `path` as sent.
fn wire_get(path: &str, expect: u16) -> Case {
    wire(
        path,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nConnection: close\r\n\r\n"),
        expect,
    )
}

/// Bodies no JSON parser may accept as an object.
fn bad_json() -> Vec<(&'static str, Vec<u8>)> {
    let mut deep = "[".repeat(10_000).into_bytes();
    deep.extend("]".repeat(10_000).bytes());
    vec![
        ("truncated object", b"{not json".to_vec()),
        ("array", b"[1,2,3]".to_vec()),
        ("string", b"\"str\"".to_vec()),
        ("null", b"null".to_vec()),
        ("number", b"123".to_vec()),
        ("cut off", b"{\"a\":".to_vec()),
        ("missing colon", b"{\"a\" 1}".to_vec()),
        ("single quotes", b"{'a': 1}".to_vec()),
        ("trailing brace", b"{\"a\":1}}".to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, b'{', b'}']),
        ("invalid UTF-8 in a string", b"{\"plaintext\": \"\xff\xfe\"}".to_vec()),
        ("byte order mark", b"\xef\xbb\xbf{}".to_vec()),
        ("nested 10000 deep", deep),
        ("lone surrogate", br#"{"a": "\ud800"}"#.to_vec()),
        ("NaN", br#"{"a": NaN}"#.to_vec()),
        ("number overflow", br#"{"a": 1e999}"#.to_vec()),
    ]
}

/// Endpoints that take a JSON body; all parse it the same way first.
const WRITE_PATHS: [&str; 16] = [
    "transit/encrypt/k",
    "transit/decrypt/k",
    "transit/rewrap/k",
    "transit/hmac/k",
    "transit/verify/k",
    "transit/keys/k/config",
    "transit/keys/k/rotate",
    "transit/keys/k/trim",
    "transit/datakey/plaintext/k",
    "sys/policies/acl/p",
    "sys/mounts/m",
    "auth/token/create",
    "auth/cert/certs/r",
    "auth/cert/login",
    "sys/unseal",
    "sys/init",
];

fn corpus(ct: &str, reader_accessor: &str) -> Vec<Case> {
    let mut c = Vec::new();

    // 1. Bodies that are not a JSON object, on every endpoint that parses one.
    for path in WRITE_PATHS {
        for (_, body) in bad_json() {
            c.push(api("POST", path, body, Who::Root, 400));
        }
    }

    // 2. Wrong types and invalid values, field by field.
    let enc = "transit/encrypt/k";
    for bad in [
        json!({ "plaintext": 5 }),
        json!({ "plaintext": true }),
        json!({ "plaintext": [] }),
        json!({ "plaintext": {} }),
        json!({ "plaintext": "@@@" }),
        json!({ "plaintext": "eA=" }),
        json!({ "plaintext": "e" }),
        json!({ "plaintext": "eA== " }),
        json!({}),
        json!({ "plaintext": "eA==", "key_version": "x" }),
        json!({ "plaintext": "eA==", "key_version": -1 }),
        json!({ "plaintext": "eA==", "key_version": 1.5 }),
        json!({ "plaintext": "eA==", "key_version": 99 }),
        json!({ "plaintext": "eA==", "key_version": "99999999999" }),
        json!({ "plaintext": "eA==", "associated_data": 1 }),
        json!({ "plaintext": "eA==", "associated_data": "@@" }),
        json!({ "plaintext": "eA==", "context": "Zm9v" }),
        json!({ "plaintext": "eA==", "derived": true }),
        json!({ "batch_input": {} }),
        json!({ "batch_input": "x" }),
        json!({ "batch_input": 5 }),
        json!({ "batch_input": [] }),
        json!({ "batch_input": [1] }),
        json!({ "batch_input": [[]] }),
        json!({ "batch_input": [{ "plaintext": 5 }] }),
        json!({ "batch_input": [{ "plaintext": "eA==", "key_version": 99 }] }),
    ] {
        c.push(post(enc, bad, 400));
    }
    // An upsert whose input is refused must not create the key.
    for bad in [
        json!({ "plaintext": "@@@" }),
        json!({ "plaintext": "eA==", "key_version": 5 }),
        json!({ "plaintext": "eA==", "type": "nope" }),
        json!({ "plaintext": "eA==", "type": 5 }),
        json!({ "batch_input": [{ "plaintext": 5 }, { "plaintext": "!" }] }),
        json!({}),
    ] {
        c.push(post("transit/encrypt/fresh", bad, 400));
    }
    for bad in [
        json!({ "ciphertext": ["a"] }),
        json!({ "ciphertext": 5 }),
        json!({ "ciphertext": "" }),
        json!({}),
        json!({ "ciphertext": "vault:v1:" }),
        json!({ "ciphertext": "vault:v1:@@@" }),
        json!({ "ciphertext": "vault:v99:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }),
        json!({ "ciphertext": "vault:vx:AAAA" }),
        json!({ "ciphertext": "vault:v1:AAAA" }),
        json!({ "ciphertext": "v1:AAAA" }),
        json!({ "ciphertext": format!("{ct}x") }),
        json!({ "ciphertext": ct, "associated_data": b64(b"other row") }),
        json!({ "ciphertext": ct, "associated_data": "@@" }),
        json!({ "batch_input": [{ "ciphertext": 5 }] }),
    ] {
        // Vault answers a rewrap batch with failed items 200, the errors per item.
        let rewrap = if bad.get("batch_input").is_some() { 200 } else { 400 };
        c.push(post("transit/decrypt/k", bad.clone(), 400));
        c.push(post("transit/rewrap/k", bad, rewrap));
    }
    for (path, bad) in [
        ("transit/hmac/k", json!({ "input": 5 })),
        ("transit/hmac/k", json!({ "input": "@@" })),
        ("transit/hmac/k", json!({})),
        ("transit/hmac/k", json!({ "input": "eA==", "algorithm": "md5" })),
        ("transit/hmac/k", json!({ "input": "eA==", "key_version": 99 })),
        ("transit/hmac/k/sha2-999", json!({ "input": "eA==" })),
        ("transit/verify/k", json!({ "input": "eA==", "signature": "x" })),
        ("transit/verify/k", json!({ "input": "eA==" })),
        ("transit/verify/k", json!({ "hmac": "vault:v1:AAAA" })),
        ("transit/verify/k", json!({ "input": "eA==", "hmac": "not an hmac" })),
        ("transit/datakey/bogus/k", json!({})),
        ("transit/datakey/plaintext/k", json!({ "bits": 7 })),
        ("transit/datakey/plaintext/k", json!({ "bits": "x" })),
        ("transit/datakey/wrapped/nokey", json!({})),
        ("transit/keys/k/config", json!({ "min_decryption_version": "x" })),
        ("transit/keys/k/config", json!({ "min_decryption_version": -1 })),
        ("transit/keys/k/config", json!({ "min_decryption_version": 1e99 })),
        (
            "transit/keys/k/config",
            json!({ "min_decryption_version": 4294967296u64 }),
        ),
        ("transit/keys/k/config", json!({ "min_decryption_version": 99 })),
        ("transit/keys/k/config", json!({ "min_encryption_version": 99 })),
        ("transit/keys/k/config", json!({ "deletion_allowed": {} })),
        ("transit/keys/k/config", json!({ "deletion_allowed": "maybe" })),
        ("transit/keys/k/config", json!({ "auto_rotate_period": "soon" })),
        ("transit/keys/k/config", json!({ "auto_rotate_period": -5 })),
        ("transit/keys/k/config", json!({ "exportable": 5 })),
        ("transit/keys/k/trim", json!({ "min_available_version": "two" })),
        ("transit/keys/k/trim", json!({})),
        ("transit/keys/k/trim", json!({ "min_available_version": 99 })),
        ("transit/keys/new1", json!({ "type": "nope" })),
        ("transit/keys/new2", json!({ "type": 5 })),
        ("transit/keys/new3", json!({ "derived": true })),
        ("transit/keys/new4", json!({ "convergent_encryption": true })),
        ("transit/keys/new5", json!({ "exportable": "x" })),
        ("transit/keys/new6", json!({ "auto_rotate_period": "x" })),
        // Past a century the deadline would wrap into the past: rotation every pass.
        ("transit/keys/k/config", json!({ "auto_rotate_period": u64::MAX })),
        ("transit/keys/k/config", json!({ "auto_rotate_period": "876001h" })),
        ("transit/keys/new7", json!({ "auto_rotate_period": i64::MAX })),
        // An upsert refused as a whole creates no key.
        (
            "transit/encrypt/new8",
            json!({ "batch_input": [{ "plaintext": "aGk=", "reference": 1 }] }),
        ),
        (
            "transit/encrypt/new9",
            json!({ "batch_input": [{ "plaintext": "aGk=" }, 5] }),
        ),
        (
            "transit/encrypt/new10",
            json!({ "batch_input": [{ "plaintext": "aGk=" }], "partial_failure_response_code": 100 }),
        ),
        (
            "transit/decrypt/k",
            json!({ "batch_input": [{ "ciphertext": "x" }], "partial_failure_response_code": 100 }),
        ),
        (
            "transit/decrypt/k",
            json!({ "batch_input": [{ "ciphertext": "x" }], "partial_failure_response_code": 600 }),
        ),
        ("transit/keys/a%20b", json!({})),
        ("transit/keys/%C3%B1", json!({})),
        ("transit/keys/a;b", json!({})),
        ("transit/keys/a%2Fb", json!({})),
        (&format!("transit/keys/{}", "n".repeat(300)), json!({})),
        ("sys/policies/acl/p", json!({ "policy": 1 })),
        (
            "sys/policies/acl/READER",
            json!({ "policy": "path \"*\" { capabilities = [\"sudo\"] }" }),
        ),
        ("sys/policies/acl/p", json!({ "policy": "not hcl {" })),
        (
            "sys/policies/acl/p",
            json!({ "policy": "path \"x\" { capabilities = [\"fly\"] }" }),
        ),
        (
            "sys/policies/acl/p",
            json!({ "policy": "path \"x\" { capabilities = [\"read\"]\n allowed_parameters = { \"a\" = [] } }" }),
        ),
        ("sys/policies/acl/p", json!({})),
        ("sys/policies/acl/p", json!({ "policy": "   " })),
        (
            "sys/policies/acl/bad%20name",
            json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" }),
        ),
        (
            "sys/policies/acl/root",
            json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" }),
        ),
        (
            "sys/policies/acl/default",
            json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" }),
        ),
        ("sys/mounts/m", json!({ "type": ["transit"] })),
        ("sys/mounts/m", json!({ "type": "kv" })),
        ("sys/mounts/m", json!({})),
        ("sys/mounts/m", json!({ "type": "transit", "description": 5 })),
        ("sys/mounts/sys", json!({ "type": "transit" })),
        ("sys/mounts/auth/x", json!({ "type": "transit" })),
        ("sys/mounts/transit", json!({ "type": "transit" })),
        ("sys/mounts/transit/sub", json!({ "type": "transit" })),
        ("sys/mounts/bad%20path", json!({ "type": "transit" })),
        ("auth/token/create", json!({ "policies": [1] })),
        ("auth/token/create", json!({ "policies": { "a": 1 } })),
        ("auth/token/create", json!({ "meta": { "a": 1 } })),
        ("auth/token/create", json!({ "meta": "x" })),
        ("auth/token/create", json!({ "num_uses": -3 })),
        ("auth/token/create", json!({ "num_uses": "x" })),
        ("auth/token/create", json!({ "ttl": "forever" })),
        ("auth/token/create", json!({ "type": "batch" })),
        ("auth/token/create", json!({ "period": "1h" })),
        ("auth/token/create", json!({ "explicit_max_ttl": "x" })),
        ("auth/token/create", json!({ "renewable": "perhaps" })),
        ("auth/token/create", json!({ "no_parent": "x" })),
        ("auth/token/create", json!({ "display_name": 5 })),
        ("auth/token/create", json!({ "id": 5 })),
        ("auth/token/create", json!({ "id": "" })),
        ("auth/token/create", json!({ "id": "root" })),
        ("auth/token/create", json!({ "policies": [""] })),
        ("auth/token/lookup", json!({ "token": 5 })),
        ("auth/token/lookup-accessor", json!({ "accessor": "nope" })),
        ("auth/token/lookup-accessor", json!({})),
        ("auth/token/revoke", json!({})),
        ("auth/token/revoke-accessor", json!({ "accessor": 5 })),
        ("auth/token/renew", json!({ "token": 5 })),
        ("auth/cert/certs/r", json!({ "certificate": 5 })),
        ("auth/cert/certs/r", json!({ "certificate": "garbage" })),
        (
            "auth/cert/certs/r",
            json!({ "certificate": "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n" }),
        ),
        (
            "auth/cert/certs/r",
            json!({ "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }),
        ),
        ("auth/cert/certs/r", json!({})),
        ("auth/cert/certs/svc", json!({ "ttl": "soon" })),
        ("auth/cert/certs/svc", json!({ "allowed_common_names": 5 })),
        ("auth/cert/certs/svc", json!({ "policies": [1] })),
        ("auth/cert/certs/svc", json!({ "token_policies": [""] })),
        // Vault: auth methods cannot create root tokens.
        ("auth/cert/certs/svc", json!({ "policies": ["reader", "root"] })),
        ("auth/cert/certs/svc", json!({ "token_policies": ["root"] })),
        ("auth/cert/certs/svc", json!({ "allowed_dns_sans": ["x".repeat(300)] })),
        ("auth/cert/certs/bad%20name", json!({})),
        ("auth/cert/login", json!({})),
        ("auth/cert/login", json!({ "name": "svc" })),
        ("sys/unseal", json!({ "key": 5 })),
        ("sys/unseal", json!({ "key": "zz!" })),
        ("sys/unseal", json!({})),
        ("sys/unseal", json!({ "reset": "x" })),
        ("sys/init", json!({ "secret_shares": 1, "secret_threshold": 1 })),
        ("sys/init", json!({ "secret_shares": "x" })),
        ("sys/capabilities-self", json!({})),
        ("sys/capabilities-self", json!({ "paths": 5 })),
        ("transit/random/0", json!({})),
        ("transit/random/131073", json!({})),
        ("transit/random/99999999999999999999999", json!({})),
        ("transit/random/lava/32", json!({})),
        ("transit/random", json!({ "bytes": -1 })),
        ("transit/random", json!({ "bytes": "many" })),
        ("transit/random", json!({ "format": "octal" })),
        ("transit/hash", json!({})),
        ("transit/hash", json!({ "input": "!!" })),
        ("transit/hash/md5", json!({ "input": "eA==" })),
        ("transit/hash", json!({ "input": "eA==", "format": "raw" })),
    ] {
        c.push(post(path, bad, 400));
    }

    // 3. Unknown paths, methods and operations.
    for (m, path, expect) in [
        ("POST", "transit/keys/k/explode", 404),
        ("GET", "sys/bogus", 404),
        ("POST", "auth/token/bogus", 404),
        ("GET", "auth/cert/bogus", 404),
        ("GET", "auth/cert/certs/none", 404),
        ("GET", "nomount/keys", 404),
        ("GET", "transit/encrypt/k", 405),
        ("DELETE", "transit/encrypt/k", 405),
        ("LIST", "transit/keys/k", 405),
        ("BREW", "transit/keys/k", 405),
        ("PUT", "auth/cert/certs", 405),
        ("DELETE", "transit/keys/k", 400),
        ("DELETE", "transit/keys/nokey", 400),
        ("DELETE", "sys/policies/acl/root", 400),
        ("DELETE", "sys/policies/acl/default", 400),
        ("GET", "transit/keys/k?list=true", 405),
        ("GET", "sys/policies/acl/%FF", 400),
    ] {
        c.push(api(m, path, Vec::new(), Who::Root, expect));
    }

    // 4. Who is asking: nobody, an unknown token, a token without the right.
    for who in [Who::NoToken, Who::Bogus] {
        for (m, path) in [
            ("GET", "transit/keys/k"),
            ("LIST", "transit/keys"),
            ("POST", "transit/keys/k/rotate"),
            ("POST", "sys/seal"),
            ("DELETE", "sys/policies/acl/reader"),
            ("POST", "auth/token/create"),
            ("POST", "auth/cert/certs/svc"),
            ("GET", "auth/token/lookup-self"),
        ] {
            c.push(api(m, path, Vec::new(), who, 403));
        }
    }
    for (m, path, body) in [
        ("POST", "transit/keys/k/rotate", "{}"),
        ("POST", "transit/keys/k/config", r#"{"deletion_allowed": true}"#),
        ("POST", "sys/seal", ""),
        (
            "PUT",
            "sys/policies/acl/reader",
            r#"{"policy": "path \"*\" { capabilities = [\"sudo\"] }"}"#,
        ),
        ("DELETE", "sys/policies/acl/reader", ""),
        ("POST", "sys/mounts/evil", r#"{"type": "transit"}"#),
        ("POST", "auth/token/create", r#"{"policies": ["root"]}"#),
        ("POST", "auth/cert/certs/evil", "{}"),
        ("POST", "transit/encrypt/k", r#"{"plaintext": "eA=="}"#),
        ("POST", "transit/decrypt/k", &format!(r#"{{"ciphertext": "{ct}"}}"#)),
        ("LIST", "transit/keys", ""),
        ("GET", "transit/keys/k/../../sys/mounts", ""),
    ] {
        c.push(api(m, path, body, Who::Reader, 403));
    }
    c.push(with_header(
        api("GET", "transit/keys/k", "", Who::NoToken, 403),
        "Authorization",
        "Bearer ",
    ));
    c.push(with_header(
        api("GET", "transit/keys/k", "", Who::NoToken, 403),
        "Authorization",
        "Basic cm9vdDpyb290",
    ));
    c.push(with_header(
        api("GET", "transit/keys/k", "", Who::NoToken, 403),
        "X-Vault-Token",
        &"t".repeat(10_000),
    ));
    // Two token headers: the first counts, the second does not smuggle root in.
    c.push(with_header(
        api("POST", "transit/keys/k/rotate", "", Who::Bogus, 403),
        "X-Vault-Token",
        "root",
    ));
    c.push(with_header(
        api("GET", "transit/keys/k", "", Who::Root, 400),
        "X-Vault-Namespace",
        "nobody",
    ));
    c.push(api(
        "POST",
        "auth/token/lookup-accessor",
        format!(r#"{{"accessor": "{reader_accessor}x"}}"#),
        Who::Root,
        400,
    ));

    // 5. Sizes: bodies over the 32 MiB limit, huge invalid base64, batches over 10000 items.
    //    (The oversized body is announced, not sent: the server answers before reading it,
    //    and a client still writing 33 MiB could see the connection reset instead.)
    c.push(wire(
        "33 MiB body announced",
        format!(
            "POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{{\"plaintext\": \"AAAA",
            33 * 1024 * 1024
        ),
        413,
    ));
    let junk = "!".repeat(8 * 1024 * 1024);
    c.push(api(
        "POST",
        enc,
        format!(r#"{{"plaintext": "{junk}"}}"#),
        Who::Root,
        400,
    ));
    c.push(api(
        "POST",
        "transit/hmac/k",
        format!(r#"{{"input": "{junk}"}}"#),
        Who::Root,
        400,
    ));
    c.push(api(
        "POST",
        enc,
        format!(r#"{{"plaintext": "eA==", "associated_data": "{junk}"}}"#),
        Who::Root,
        400,
    ));
    for (path, item) in [
        (enc, json!({ "plaintext": "" })),
        ("transit/encrypt/fresh", json!({ "plaintext": "" })),
        ("transit/decrypt/k", json!({ "ciphertext": ct })),
        ("transit/rewrap/k", json!({ "ciphertext": ct })),
        ("transit/hmac/k", json!({ "input": "" })),
        ("transit/verify/k", json!({ "input": "", "hmac": "vault:v1:AAAA" })),
    ] {
        c.push(post(path, json!({ "batch_input": vec![item; 10_001] }), 400));
    }

    // 6. Unknown fields are ignored, as Vault does (hvac sends extra nulls);
    //    these requests succeed and change nothing.
    c.push(post(
        enc,
        json!({ "plaintext": "eA==", "bogus": 1, "nested": { "x": [1] } }),
        200,
    ));
    c.push(post(
        "transit/decrypt/k",
        json!({ "ciphertext": ct, "unknown": null }),
        200,
    ));
    c.push(post("auth/token/lookup-self", json!({ "extra": true }), 200));
    c.push(post(
        "sys/capabilities-self",
        json!({ "path": "transit/keys/k", "whatever": [] }),
        200,
    ));

    // 7. On the wire: path tricks, broken framing, header abuse.
    for (path, expect) in [
        ("/v1/transit/../sys/mounts", 404),
        ("/v1/transit/%2E%2E/sys/mounts", 404),
        ("/v1/./sys/mounts", 404),
        ("/v1/transit/keys/..", 404),
        ("/v1//sys/mounts", 404),
        ("/v1/transit/keys/k%00", 400),
        ("/v1/sys/mounts/..%2F..%2Fetc", 400),
        ("/../../etc/passwd", 404),
        ("/v1", 404),
        ("/", 404),
        ("/v2/sys/health", 404),
        ("*", 404),
    ] {
        c.push(wire_get(path, expect));
    }
    c.push(wire_get(&format!("/v1/transit/keys/{}", "a/".repeat(2500)), 404));
    let req =
        |head: &str| format!("{head}\r\nHost: x\r\nX-Vault-Token: root\r\nConnection: close\r\n\r\n").into_bytes();
    c.push(wire(
        "invalid UTF-8 in the path",
        req("GET /v1/transit/keys/\u{ff} HTTP/1.1"),
        400,
    ));
    c.push(wire(
        "raw 0xff in the path",
        b"GET /v1/transit/keys/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    ));
    c.push(wire(
        "token not text",
        b"GET /v1/transit/keys HTTP/1.1\r\nHost: x\r\nX-Vault-Token: r\xffoot\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    ));
    c.push(wire(
        "namespace not text",
        b"GET /v1/transit/keys HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nX-Vault-Namespace: \xfe\r\nConnection: close\r\n\r\n"
            .to_vec(),
        400,
    ));
    c.push(wire(
        "NUL in a header",
        b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\nConnection: close\r\n\r\n".to_vec(),
        400,
    ));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    c.push(wire(
        "200 headers",
        format!("GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n"),
        431,
    ));
    c.push(wire(
        "a 1 MiB header",
        format!(
            "GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(1 << 20)
        ),
        431,
    ));
    c.push(wire(
        "Content-Length not a number",
        b"POST /v1/transit/keys/k/rotate HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nContent-Length: abc\r\nConnection: close\r\n\r\n{}".to_vec(),
        400,
    ));
    c.push(wire(
        "two Content-Lengths",
        b"POST /v1/transit/keys/k/rotate HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nContent-Length: 2\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{}".to_vec(),
        400,
    ));
    // Both framings: hyper drops Content-Length, reads the chunks and closes the
    // connection afterwards (RFC 9112 §6.3), so nothing can be smuggled behind it;
    // the chunked body here is invalid, so the answer is 400.
    c.push(wire(
        "Content-Length with chunked",
        b"POST /v1/transit/keys/k/config HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1d\r\n{\"deletion_allowed\": \"maybe\"}\r\n0\r\n\r\n".to_vec(),
        400,
    ));
    c.push(wire(
        "bad chunk size",
        b"POST /v1/transit/keys/k/rotate HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
        400,
    ));
    c.push(wire(
        "oversized body announced with Expect: 100-continue",
        b"POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\nContent-Length: 999999999999\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".to_vec(),
        413,
    ));
    c.push(wire("not HTTP", b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400));
    c.push(wire("space in the method", req("GE T /v1/sys/health HTTP/1.1"), 400));
    c
}

/// Everything a request could have changed, read back through the API.
async fn snapshot(s: &Server, reader_accessor: &str, ct: &str) -> Value {
    let mut out = json!({});
    for (m, path) in [
        ("LIST", "transit/keys"),
        ("GET", "transit/keys/k"),
        ("GET", "transit/keys/fresh"),
        ("LIST", "sys/policies/acl"),
        ("GET", "sys/policies/acl/reader"),
        ("GET", "sys/mounts"),
        ("LIST", "auth/cert/certs"),
        ("GET", "auth/cert/certs/svc"),
        ("GET", "auth/token/lookup-self"),
        ("GET", "sys/seal-status"),
    ] {
        let (st, mut v) = s.root(m, path, None).await;
        v["request_id"] = Value::Null;
        v["data"]["ttl"] = Value::Null;
        out[format!("{m} {path}")] = json!([st, v]);
    }
    let (st, mut v) = s
        .root(
            "POST",
            "auth/token/lookup-accessor",
            Some(json!({ "accessor": reader_accessor })),
        )
        .await;
    v["request_id"] = Value::Null;
    v["data"]["ttl"] = Value::Null;
    out["reader token"] = json!([st, v]);
    let (_, v) = s
        .root("POST", "transit/decrypt/k", Some(json!({ "ciphertext": ct })))
        .await;
    out["decrypt"] = v["data"].clone();
    out
}

/// Sends raw bytes; returns the status (0 if the server closed without answering) and the body.
fn send_wire(hostport: &str, bytes: &[u8]) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(hostport).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before reading everything; that is fine.
    let _ = c.write_all(bytes);
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `errors`, or the per-item errors of a batch answer.
fn messages(v: &Value) -> String {
    let top = errors(v);
    if !top.is_empty() {
        return top;
    }
    v["data"]["batch_results"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["error"].as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn shown(s: &str) -> String {
    let s: String = s.escape_debug().collect();
    if s.len() > 72 {
        format!("{}...({} chars)", &s[..60], s.len())
    } else {
        s
    }
}

#[tokio::test]
async fn malformed_requests_get_the_right_4xx_and_change_nothing() {
    let s = Server::dev();
    // State the corpus must leave alone.
    let (_, v) = s
        .root("POST", "transit/encrypt/k", Some(json!({ "plaintext": b64(b"x") })))
        .await;
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (st, _) = s
        .root(
            "PUT",
            "sys/policies/acl/reader",
            Some(json!({ "policy": "path \"transit/keys/*\" { capabilities = [\"read\"] }" })),
        )
        .await;
    assert_eq!(st, 204);
    let (_, v) = s
        .root("POST", "auth/token/create", Some(json!({ "policies": ["reader"] })))
        .await;
    let reader = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let reader_accessor = v["auth"]["accessor"].as_str().unwrap().to_owned();
    let ca = common::pki::Ca::new("hostile test CA");
    let (st, v) = s
        .root(
            "POST",
            "auth/cert/certs/svc",
            Some(json!({ "certificate": ca.pem, "policies": ["reader"] })),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let before = snapshot(&s, &reader_accessor, &ct).await;

    let cases = corpus(&ct, &reader_accessor);
    let hostport = s.hostport();
    let mut failures = Vec::new();
    let mut out = std::io::stdout().lock();
    for (i, case) in cases.iter().enumerate() {
        let (method, path, status, expect, message) = match case {
            Case::Api {
                method,
                path,
                body,
                headers,
                who,
                expect,
            } => {
                let token = match who {
                    Who::Root => Some("root"),
                    Who::NoToken => None,
                    Who::Bogus => Some("bogus-token"),
                    Who::Reader => Some(reader.as_str()),
                };
                let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let body = if body.is_empty() { None } else { Some(body.clone()) };
                let (st, v) = s.raw(method, path, token, body, &hs).await;
                (method.clone(), path.clone(), st, *expect, messages(&v))
            }
            Case::Wire { label, bytes, expect } => {
                let (st, body) = send_wire(&hostport, bytes);
                let msg = serde_json::from_str::<Value>(&body)
                    .map(|v| errors(&v))
                    .unwrap_or_default();
                ("wire".to_owned(), label.clone(), st, *expect, msg)
            }
        };
        // Our own 4xx answers say why (a plain 404/405 carries no message, as in Vault);
        // hyper's framing errors (431, and 400s on the wire) have no JSON body.
        let needs_message =
            matches!(case, Case::Api { .. }) && (400..500).contains(&status) && ![404, 405].contains(&status);
        let ok = status == expect && (!needs_message || !message.is_empty());
        // Written past the test harness's capture, so CI logs show every case.
        writeln!(
            out,
            "hostile {i:>3} {:<6} {:<60} -> {status} {}",
            method,
            shown(&path),
            if ok {
                "ok".to_owned()
            } else {
                format!("FAILED (expected {expect}) {message}")
            }
        )
        .unwrap();
        if !ok {
            failures.push(format!(
                "{i} {method} {}: {status} (expected {expect}) {message}",
                shown(&path)
            ));
        }
    }
    drop(out);
    assert!(cases.len() >= 200, "the corpus has only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let after = snapshot(&s, &reader_accessor, &ct).await;
    assert_eq!(after, before, "a refused request changed state ({} cases)", cases.len());
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 200);
}
