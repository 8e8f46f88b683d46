//! Scale: decrypt latency and memory with 1 tenant and 1 key version, then
//! with 1,000,000 tenants, then with one key of 10,000 versions.
//!
//! `cargo bench -p coffer-server --bench scale` (set `SCALE_TENANTS` /
//! `SCALE_VERSIONS` for a smaller run). In process, through the HTTP router,
//! with the embedded store in a temp dir and the default cache sizes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use coffer_server::{Clock, Core};
use coffer_store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn call(core: &Arc<Core>, method: &str, path: &str, ns: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/v1/{path}"))
        .header("X-Vault-Token", "root");
    if let Some(ns) = ns {
        req = req.header("X-Vault-Namespace", ns);
    }
    let mut req = req.body(Body::from(body.to_string())).expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = coffer_server::app(core.clone(), Default::default())
        .oneshot(req)
        .await
        .expect("router");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// p50 and p99 (µs) of decrypting each (tenant, ciphertext) in turn, `rounds` times over.
async fn decrypt_latency(core: &Arc<Core>, work: &[(Option<String>, String)], rounds: usize) -> (f64, f64) {
    let mut lat = Vec::with_capacity(work.len() * rounds);
    for _ in 0..rounds {
        for (ns, ct) in work {
            let t = Instant::now();
            let (st, _) = call(
                core,
                "POST",
                "transit/decrypt/k",
                ns.as_deref(),
                json!({ "ciphertext": ct }),
            )
            .await;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(st, 200);
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

async fn encrypt(core: &Arc<Core>, ns: Option<&str>) -> String {
    let (st, v) = call(
        core,
        "POST",
        "transit/encrypt/k",
        ns,
        json!({ "plaintext": "c2NhbGU=" }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["data"]["ciphertext"].as_str().expect("ciphertext").to_owned()
}

/// Encrypts once to each tenant's key in turn (keys not in the cache when
/// there are more of them), from `clients` concurrent callers: p50 and p99
/// (µs) and encrypts per second.
async fn encrypt_spread(core: &Arc<Core>, tenants: &[String], clients: usize) -> (f64, f64, f64) {
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let core = core.clone();
        let mine: Vec<String> = tenants.iter().skip(c).step_by(clients).cloned().collect();
        set.spawn(async move {
            let mut lat = Vec::with_capacity(mine.len());
            for ns in &mine {
                let t = Instant::now();
                encrypt(&core, Some(ns)).await;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            lat
        });
    }
    let mut lat = Vec::new();
    while let Some(part) = set.join_next().await {
        lat.extend(part.expect("task"));
    }
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100], rate)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tenants: usize = std::env::var("SCALE_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let versions: u32 = std::env::var("SCALE_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).await.expect("store");
    // SCALE_CACHE sets both cache sizes (keyrings and tenants); default: the server's.
    let mut options = coffer_server::CoreOptions::default();
    if let Some(n) = std::env::var("SCALE_CACHE").ok().and_then(|v| v.parse().ok()) {
        options.key_cache = n;
        options.tenant_cache = n;
    }
    let (key_cache, tenant_cache) = (options.key_cache, options.tenant_cache);
    let core = Arc::new(
        Core::open(Arc::new(store), Clock::default())
            .await
            .expect("core")
            .with_options(options),
    );
    coffer_server::dev_init(&core, Some("root")).await.expect("init");

    // Baseline: one tenant, one version.
    call(&core, "POST", "sys/namespaces/t0", None, json!({})).await;
    let ct = encrypt(&core, Some("t0")).await;
    let base_work = vec![(Some("t0".to_owned()), ct); 2000];
    decrypt_latency(&core, &base_work, 1).await;
    let (b50, b99) = decrypt_latency(&core, &base_work, 5).await;
    let base_rss = rss_kib("VmRSS:");

    // Many tenants: provision them, give 20,000 of them a key, decrypt across them.
    let t = Instant::now();
    // In chunks, so the bench itself does not hold a million names.
    for start in (1..tenants).step_by(10_000) {
        let names: Vec<String> = (start..(start + 10_000).min(tenants))
            .map(|i| format!("t{i}"))
            .collect();
        coffer_server::provision_tenants(&core, &names)
            .await
            .expect("provision");
    }
    let provision_s = t.elapsed().as_secs_f64();
    let used = 20_000.min(tenants);
    let step = (tenants / used).max(1);
    let mut work = Vec::new();
    for i in (0..tenants).step_by(step).take(used) {
        let ns = format!("t{i}");
        let ct = encrypt(&core, Some(&ns)).await;
        work.push((Some(ns), ct));
    }
    let hot: Vec<_> = work.iter().take(2000).cloned().collect();
    decrypt_latency(&core, &hot, 1).await;
    let (m50, m99) = decrypt_latency(&core, &hot, 5).await;
    let (c50, c99) = decrypt_latency(&core, &work, 1).await;
    // Encrypts to the same keys, read back from the store: each needs a
    // reservation of its count of encryptions, written in groups.
    let names: Vec<String> = work.iter().filter_map(|w| w.0.clone()).collect();
    let (e50, e99, e1) = encrypt_spread(&core, &names, 1).await;
    let (f50, f99, f16) = encrypt_spread(&core, &names, 16).await;
    let many_rss = rss_kib("VmRSS:");

    // One key with many versions: decrypt the oldest and the newest.
    call(&core, "POST", "sys/namespaces/deep", None, json!({})).await;
    let v1 = encrypt(&core, Some("deep")).await;
    for _ in 1..versions {
        let (st, _) = call(&core, "POST", "transit/keys/k/rotate", Some("deep"), json!({})).await;
        assert_eq!(st, 200);
    }
    let vn = encrypt(&core, Some("deep")).await;
    let deep: Vec<_> = (0..1000)
        .flat_map(|_| {
            [
                (Some("deep".to_owned()), v1.clone()),
                (Some("deep".to_owned()), vn.clone()),
            ]
        })
        .collect();
    decrypt_latency(&core, &deep, 1).await;
    let (d50, d99) = decrypt_latency(&core, &deep, 5).await;
    let deep_rss = rss_kib("VmRSS:");

    println!("caches: {key_cache} keyrings, {tenant_cache} tenants\n");
    println!("| case | decrypt p50 (µs) | decrypt p99 (µs) | RSS (MiB) |");
    println!("|---|---|---|---|");
    println!(
        "| 1 tenant, 1 version | {b50:.0} | {b99:.0} | {:.1} |",
        base_rss as f64 / 1024.0
    );
    println!(
        "| {tenants} tenants, hot set of 2,000 | {m50:.0} | {m99:.0} | {:.1} |",
        many_rss as f64 / 1024.0
    );
    println!(
        "| {tenants} tenants, {used} keyed tenants round-robin (cache misses) | {c50:.0} | {c99:.0} | {:.1} |",
        many_rss as f64 / 1024.0
    );
    println!(
        "| 1 key, {versions} versions (v1 and v{versions}) | {d50:.0} | {d99:.0} | {:.1} |",
        deep_rss as f64 / 1024.0
    );
    println!();
    println!("| encrypt to {used} keyed tenants round-robin (cache misses) | p50 (µs) | p99 (µs) | encrypts/s |");
    println!("|---|---|---|---|");
    println!("| 1 caller | {e50:.0} | {e99:.0} | {e1:.0} |");
    println!("| 16 callers | {f50:.0} | {f99:.0} | {f16:.0} |");
    println!();
    println!(
        "provisioned {} tenants in {provision_s:.1} s; peak RSS {:.1} MiB",
        tenants - 1,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    println!(
        "ratios vs 1 tenant / 1 version: p50 many-tenant hot {:.2}x, version-heavy {:.2}x; RSS {:.2}x, {:.2}x",
        m50 / b50,
        d50 / b50,
        many_rss as f64 / base_rss as f64,
        deep_rss as f64 / base_rss as f64
    );
}
