//! Request limits (`[limits]`): body size, batch size, per-token rate,
//! request timeout; and process hardening (core dumps off, memory locked).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};

use common::{Server, b64, errors};
use serde_json::json;

async fn limited(rest: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::with_config_text(
        &dir.path().join("d"),
        "tls_disable = true\n",
        &format!("[limits]\n{rest}"),
    );
    s.init_unseal().await;
    (dir, s)
}

#[tokio::test]
async fn oversized_bodies_get_413_with_a_json_error() {
    let (_d, s) = limited("max_request_bytes = 4096\n").await;
    let small = json!({ "plaintext": b64(&[7u8; 1000]) });
    assert_eq!(s.root("POST", "transit/encrypt/k", Some(small)).await.0, 200);
    let big = json!({ "plaintext": b64(&[7u8; 4000]) });
    let (st, v) = s.root("POST", "transit/encrypt/k", Some(big)).await;
    assert_eq!(st, 413, "{v}");
    assert!(errors(&v).contains("limits.max_request_bytes"), "{v}");

    // Chunked, so no Content-Length announces the size: still cut off at the limit.
    let mut c = std::net::TcpStream::connect(s.hostport()).unwrap();
    let root = s.root_token.clone().unwrap();
    write!(
        c,
        "POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {root}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for _ in 0..5 {
        let _ = write!(c, "400\r\n{}\r\n", "A".repeat(1024));
    }
    let _ = write!(c, "0\r\n\r\n");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("limits.max_request_bytes"), "{resp}");
    assert_eq!(
        s.root("LIST", "transit/keys", None).await.1["data"]["keys"],
        json!(["k"])
    );
}

#[tokio::test]
async fn oversized_batches_get_400_naming_the_limit() {
    let (_d, s) = limited("max_batch_items = 3\n").await;
    let items = |n: usize| json!({ "batch_input": vec![json!({ "plaintext": b64(b"x") }); n] });
    let (st, v) = s.root("POST", "transit/encrypt/k", Some(items(3))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["batch_results"].as_array().unwrap().len(), 3);
    for path in [
        "transit/encrypt/k",
        "transit/decrypt/k",
        "transit/hmac/k",
        "transit/encrypt/new",
    ] {
        let (st, v) = s.root("POST", path, Some(items(4))).await;
        assert_eq!(st, 400, "{path}: {v}");
        let e = errors(&v);
        assert!(
            e.contains("limits.max_batch_items") && e.contains('4') && e.contains('3'),
            "{e}"
        );
    }
    // The refused upsert created nothing.
    assert_eq!(s.root("GET", "transit/keys/new", None).await.0, 404);
}

#[tokio::test]
async fn rate_limit_is_per_token_with_retry_after() {
    let (_d, s) = limited("rate_limit = 0.2\nrate_limit_burst = 3\n").await;
    let (_, v) = s
        .root("POST", "auth/token/create", Some(json!({ "policies": ["root"] })))
        .await;
    let other = v["auth"]["client_token"].as_str().unwrap().to_owned();
    // The root token already spent one request on the create above.
    for _ in 0..2 {
        assert_eq!(s.root("GET", "auth/token/lookup-self", None).await.0, 200);
    }
    let (st, v) = s.root("GET", "auth/token/lookup-self", None).await;
    assert_eq!(st, 429, "{v}");
    assert!(errors(&v).contains("rate limit"), "{v}");
    let retry = s.last_headers.lock().unwrap()["retry-after"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    // Another token has its own bucket; unauthenticated status calls are not limited.
    assert_eq!(s.call("GET", "auth/token/lookup-self", Some(&other), None).await.0, 200);
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 200);
}

#[tokio::test]
async fn slow_requests_get_503_with_a_json_error() {
    let (_d, s) = limited("request_timeout = \"2s\"\n").await;
    // A client that announces a body and then stalls: the deadline covers reading it.
    let mut c = std::net::TcpStream::connect(s.hostport()).unwrap();
    let root = s.root_token.clone().unwrap();
    write!(
        c,
        "POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {root}\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n{{\"plaintext\": "
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("limits.request_timeout"), "{resp}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // Nothing was created, and the server still answers.
    assert_eq!(s.root("GET", "transit/keys/k", None).await.0, 404);
}

fn proc_field(pid: u32, file: &str, prefix: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /proc/{pid}/{file}"))
        .to_owned()
}

fn can_lock_memory() -> bool {
    let caps = proc_field(std::process::id(), "status", "CapEff:");
    let caps = u64::from_str_radix(caps.trim_start_matches("CapEff:").trim(), 16).unwrap();
    let unlimited = proc_field(std::process::id(), "limits", "Max locked memory").contains("unlimited");
    unlimited || caps & (1 << 14) != 0
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn server_disables_core_dumps_and_locks_memory_when_permitted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_config(&dir.path().join("d"));
    let core = proc_field(s.pid(), "limits", "Max core file size");
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let locked = proc_field(s.pid(), "status", "VmLck:");
    let kb: u64 = locked.split_whitespace().nth(1).unwrap().parse().unwrap();
    if can_lock_memory() {
        assert!(kb > 0, "memory not locked although permitted: {locked}");
    }
    // Locking must not make the allocator's reserved address space resident
    // (without MCL_ONFAULT an idle server held over 1 GiB).
    let rss = proc_field(s.pid(), "status", "VmRSS:");
    let rss_kb: u64 = rss.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rss_kb < 128 * 1024, "idle server resident memory: {rss}");
    // With disable_mlock nothing is locked; core dumps stay off.
    let cfg = dir.path().join("off.toml");
    std::fs::write(
        &cfg,
        format!(
            "disable_mlock = true\n[storage]\npath = {:?}\n[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n",
            dir.path().join("e").display().to_string()
        ),
    )
    .unwrap();
    let off = Server::spawn(&["server", "--config", cfg.to_str().unwrap()]);
    let locked = proc_field(off.pid(), "status", "VmLck:");
    assert_eq!(locked.split_whitespace().nth(1), Some("0"), "{locked}");
    let core = proc_field(off.pid(), "limits", "Max core file size");
    assert!(core.contains(" 0 "), "{core}");
}

/// The trail's records with this status, from `sys/audit/export`.
async fn records_with_status(s: &Server, st: u16) -> Vec<serde_json::Value> {
    let (_, v) = s.root("GET", "sys/audit/export", None).await;
    v["data"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["st"] == st)
        .cloned()
        .collect()
}

#[tokio::test]
async fn refusals_before_the_handler_are_audited() {
    let (_d, s) = limited("max_request_bytes = 4096\nrequest_timeout = \"1s\"\nidle_timeout = \"5s\"\n").await;
    let big = json!({ "plaintext": b64(&[7u8; 4000]) });
    assert_eq!(s.root("POST", "transit/encrypt/k", Some(big)).await.0, 413);
    let mut c = std::net::TcpStream::connect(s.hostport()).unwrap();
    write!(
        c,
        "POST /v1/transit/encrypt/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    let too_large = records_with_status(&s, 413).await;
    assert!(
        too_large.iter().any(|r| r["path"] == "/v1/transit/encrypt/k"),
        "{too_large:?}"
    );
    let slow = records_with_status(&s, 503).await;
    assert!(
        slow.iter()
            .any(|r| r["path"] == "/v1/transit/encrypt/slow" && r["err"].as_str().unwrap().contains("request_timeout")),
        "{slow:?}"
    );
}

#[tokio::test]
async fn json_that_would_swell_in_memory_is_refused() {
    let (_d, s) = limited("").await;
    // 2 bytes of text per value, 200,000 values: far under the body limit, 413 all the same.
    let body = format!("{{\"batch_input\":[{}0]}}", "0,".repeat(200_000));
    let (st, v) = s
        .raw(
            "POST",
            "transit/encrypt/k",
            s.root_token.as_deref(),
            Some(body.into_bytes()),
            &[],
        )
        .await;
    assert_eq!(st, 413, "{v}");
    assert!(errors(&v).contains("JSON values"), "{v}");
    // Commas inside strings are text, not values.
    let text = b64(",".repeat(300_000).as_bytes());
    let (st, v) = s
        .root("POST", "transit/encrypt/k", Some(json!({ "plaintext": text })))
        .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn request_data_in_flight_is_bounded() {
    let (_d, s) = limited("max_request_bytes = 4096\nmax_inflight_bytes = 16384\n").await;
    let root = s.root_token.clone().unwrap();
    // Four clients hold the budget with bodies they do not finish.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = std::net::TcpStream::connect(s.hostport()).unwrap();
        write!(
            c,
            "POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {root}\r\n\
             Content-Length: 4000\r\nConnection: close\r\n\r\n{{\"plaintext\": \"{}",
            "A".repeat(3000)
        )
        .unwrap();
        held.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let body = json!({ "plaintext": b64(&[7u8; 2000]) });
    let (st, v) = s.root("POST", "transit/encrypt/k", Some(body.clone())).await;
    assert_eq!(st, 503, "{v}");
    assert!(errors(&v).contains("limits.max_inflight_bytes"), "{v}");
    assert_eq!(s.last_headers.lock().unwrap()["retry-after"], "1");
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.root("POST", "transit/encrypt/k", Some(body)).await.0, 200);
}

#[tokio::test]
async fn connections_are_capped_and_silent_ones_closed() {
    let (_d, mut s) = limited("max_connections = 2\nrequest_timeout = \"1s\"\nidle_timeout = \"2s\"\n").await;
    // Pooled connections would count: one request, one connection.
    s.use_client(reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // Two clients connect and say nothing, not even which HTTP they speak.
    let silent: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(s.hostport()).unwrap())
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        s.call("GET", "sys/health", None, None),
    )
    .await;
    assert!(waiting.is_err(), "a third connection waits while two are open");
    // The idle timeout closes the silent ones; then the server answers again.
    for mut c in silent {
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "closed by the server"
        );
    }
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 200);
}
