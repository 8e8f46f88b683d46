//! The load generator: N tasks, each owning one keep-alive HTTP/1.1
//! connection, sending the same pre-serialised body in a closed loop
//! (like `wrk -cN`). Per request it only checks the status and drains the
//! body; latencies go into a vector that is sorted once at the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::header::HeaderValue;

use crate::http::{Sender, connect, request};

/// What to send and for how long.
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    pub(crate) path: String,
    pub(crate) body: Bytes,
    pub(crate) connections: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    /// 2xx answers completed inside the measurement window.
    pub(crate) ok: u64,
    /// Non-2xx answers and I/O errors inside the measurement window.
    pub(crate) errors: u64,
    /// Every request that got an answer (warm-up and stragglers included), for per-request accounting.
    pub(crate) sent: u64,
    /// The measurement window actually used.
    pub(crate) window: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// The first error seen (warm-up included), with a bit of its body.
    pub(crate) first_error: Option<String>,
}

impl Measured {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct TaskStats {
    latencies_us: Vec<u32>,
    errors: u64,
    sent: u64,
    first_error: Option<String>,
}

impl TaskStats {
    fn error(&mut self, in_window: bool, what: impl FnOnce() -> String) {
        if in_window {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

/// Runs the load: connects every connection, then warm-up, then the measured window.
pub(crate) async fn run(load: &Load) -> anyhow::Result<Measured> {
    let host = HeaderValue::from_str(&load.addr.to_string())?;
    let token = HeaderValue::from_str(&load.token)?;
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections.max(1) {
        senders.push(connect(load.addr).await?);
    }
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let expected = (load.duration.as_secs_f64() * 20_000.0 / load.connections.max(1) as f64) as usize;
    let mut tasks = Vec::with_capacity(senders.len());
    for sender in senders {
        let ctx = Ctx {
            addr: load.addr,
            host: host.clone(),
            token: token.clone(),
            path: load.path.clone(),
            body: load.body.clone(),
            start,
            end,
        };
        tasks.push(tokio::spawn(ctx.drive(sender, expected.min(1 << 20))));
    }
    let mut all = TaskStats::default();
    for t in tasks {
        let s = t.await?;
        all.latencies_us.extend_from_slice(&s.latencies_us);
        all.errors += s.errors;
        all.sent += s.sent;
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    Ok(Measured {
        ok: lat.len() as u64,
        errors: all.errors,
        sent: all.sent,
        window: load.duration,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        first_error: all.first_error,
    })
}

/// Nearest-rank percentile of sorted microsecond latencies.
fn percentile(sorted_us: &[u32], p: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Duration::from_micros(u64::from(sorted_us[rank - 1]))
}

struct Ctx {
    addr: SocketAddr,
    host: HeaderValue,
    token: HeaderValue,
    path: String,
    body: Bytes,
    start: Instant,
    end: Instant,
}

impl Ctx {
    /// One connection's closed loop. A request counts in the window if it completes inside it.
    async fn drive(self, mut sender: Sender, expected: usize) -> TaskStats {
        let mut st = TaskStats {
            latencies_us: Vec::with_capacity(expected),
            ..TaskStats::default()
        };
        loop {
            let t0 = Instant::now();
            if t0 >= self.end {
                break;
            }
            let req = match request(
                Method::POST,
                &self.host,
                &self.path,
                Some(&self.token),
                self.body.clone(),
            ) {
                Ok(r) => r,
                Err(e) => {
                    st.error(true, || format!("building the request: {e}"));
                    break;
                }
            };
            let outcome = match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.into_body().collect().await {
                        Ok(_) if status.is_success() => Ok(()),
                        Ok(body) => {
                            let b = body.to_bytes();
                            let snippet = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
                            Err((format!("status {}: {snippet}", status.as_u16()), false))
                        }
                        Err(e) => Err((format!("reading the body: {e}"), true)),
                    }
                }
                Err(e) => Err((format!("sending: {e}"), true)),
            };
            let t1 = Instant::now();
            st.sent += 1;
            let in_window = t1 >= self.start && t1 < self.end;
            match outcome {
                Ok(()) => {
                    if in_window {
                        let us = u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX);
                        st.latencies_us.push(us);
                    }
                }
                Err((msg, broken)) => {
                    st.error(in_window, || msg);
                    if broken || sender.is_closed() {
                        match connect(self.addr).await {
                            Ok(s) => sender = s,
                            Err(e) => {
                                st.error(true, || format!("reconnecting: {e}"));
                                break;
                            }
                        }
                    }
                }
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[7], 0.99), Duration::from_micros(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
