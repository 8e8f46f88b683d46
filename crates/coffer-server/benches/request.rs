//! The request path in process: routing, token and policy check, JSON,
//! base64, AES-GCM and the response, without TCP and with audit off (the
//! audit's own cost is `coffer-store`'s `audit_commit` bench). Per request
//! and per item, for single requests and batches.
//!
//! `cargo bench -p coffer-server --bench request`
//!
//! Timings on a shared VM move by ±20%; instruction counts do not. With
//! `REQUEST_BENCH_CASE=encrypt_batch1000 REQUEST_BENCH_ITERS=N` the binary
//! runs that case N times and exits, for `valgrind --tool=callgrind`: the
//! difference between two values of N, divided, is the count per request.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use coffer_server::{Clock, Core};
use coffer_store::sqlite::SqliteStore;
use criterion::{Criterion, Throughput, criterion_group};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(app: &axum::Router, path: &str, body: &str) -> (u16, axum::body::Bytes) {
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("/v1/{path}"))
        .header("X-Vault-Token", "root")
        .body(Body::from(body.to_owned()))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = app.clone().oneshot(req).await.expect("router");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await.expect("body");
    (status, bytes)
}

struct Setup {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
    /// (case name, path, body, items per request)
    cases: Vec<(String, &'static str, String, u64)>,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let app = rt.block_on(async {
        let store = SqliteStore::open(dir.path()).await.expect("store");
        let core = Arc::new(Core::open(Arc::new(store), Clock::default()).await.expect("core"));
        coffer_server::dev_init(&core, Some("root")).await.expect("init");
        let app = coffer_server::app(core, Default::default());
        let (st, _) = call(&app, "transit/keys/k", "{}").await;
        assert!(st == 200 || st == 204, "creating the key: {st}");
        app
    });
    // 32-byte plaintexts, as the load benchmark sends.
    let pt = "dXNlci0wMDAwMDEtc2VjcmV0LXRva2VuLWFiY2RlZmdo";
    let one = json!({ "plaintext": pt }).to_string();
    let (st, enc) = rt.block_on(call(&app, "transit/encrypt/k", &one));
    assert_eq!(st, 200);
    let enc: Value = serde_json::from_slice(&enc).expect("json");
    let ct = enc["data"]["ciphertext"].as_str().expect("ciphertext").to_owned();
    let dec = json!({ "ciphertext": ct }).to_string();
    let mut cases = vec![
        ("encrypt".to_owned(), "transit/encrypt/k", one, 1),
        ("decrypt".to_owned(), "transit/decrypt/k", dec, 1),
    ];
    for n in [100u64, 1000] {
        let items: Vec<Value> = (0..n).map(|_| json!({ "plaintext": pt })).collect();
        let body = json!({ "batch_input": items }).to_string();
        let (st, out) = rt.block_on(call(&app, "transit/encrypt/k", &body));
        assert_eq!(st, 200);
        let out: Value = serde_json::from_slice(&out).expect("json");
        let cts: Vec<Value> = out["data"]["batch_results"]
            .as_array()
            .expect("batch_results")
            .iter()
            .map(|r| json!({ "ciphertext": r["ciphertext"] }))
            .collect();
        let dec = json!({ "batch_input": cts }).to_string();
        cases.push((format!("encrypt_batch{n}"), "transit/encrypt/k", body, n));
        cases.push((format!("decrypt_batch{n}"), "transit/decrypt/k", dec, n));
    }
    Setup {
        rt,
        app,
        _dir: dir,
        cases,
    }
}

fn run_once(s: &Setup, path: &str, body: &str) -> axum::body::Bytes {
    let (st, out) = s.rt.block_on(call(&s.app, path, body));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&out));
    out
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("request");
    for (name, path, body, items) in &s.cases {
        g.throughput(Throughput::Elements(*items));
        g.bench_function(name.as_str(), |b| b.iter(|| black_box(run_once(&s, path, body))));
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(iters) = std::env::var("REQUEST_BENCH_ITERS") {
        let iters: u32 = iters.parse().expect("REQUEST_BENCH_ITERS: a number");
        // Without a case, every case.
        let case = std::env::var("REQUEST_BENCH_CASE").ok();
        let s = setup();
        let cases: Vec<_> = s
            .cases
            .iter()
            .filter(|c| case.as_ref().is_none_or(|n| *n == c.0))
            .collect();
        assert!(!cases.is_empty(), "no case {case:?}");
        for (_, path, body, _) in cases {
            for _ in 0..iters {
                black_box(run_once(&s, path, body));
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
