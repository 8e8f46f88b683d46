//! The load generator, built like `wrk`: T threads, each running its own
//! single-threaded runtime with its share of N keep-alive HTTP/1.1
//! connections. Each connection sends the same pre-serialised request in a
//! closed loop, reads the answer's head with `httparse` and skips its body
//! (by length or chunks); latencies go into a vector sorted once at the end.
//!
//! No HTTP client library on this path: the generator shares the machine
//! with the server, so every microsecond it spends is taken from the
//! server. hyper's client cost 16 µs of CPU per request here, and woke
//! a second task (often on the other thread) for every answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to send and for how long.
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    pub(crate) path: String,
    pub(crate) body: Bytes,
    pub(crate) connections: usize,
    pub(crate) threads: usize,
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
    let connections = load.connections.max(1);
    let threads = load.threads.clamp(1, connections);
    let request = Bytes::from(serialise(load));
    // The connections open in the first 100 ms; warm-up and window follow, unmeasured setup excluded.
    let start = Instant::now() + load.warmup + Duration::from_millis(100);
    let end = start + load.duration;
    let expected = ((load.duration.as_secs_f64() * 20_000.0 / connections as f64) as usize).min(1 << 20);
    let mut threads_done = Vec::with_capacity(threads);
    for t in 0..threads {
        // The connections spread over the threads as evenly as `wrk` spreads them.
        let share = connections / threads + usize::from(t < connections % threads);
        let ctx = Ctx {
            addr: load.addr,
            request: request.clone(),
            start,
            end,
            expected,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name(format!("load-{t}")).spawn(move || {
            let _ = tx.send(ctx.drive_thread(share));
        })?;
        threads_done.push(rx);
    }
    let mut all = TaskStats::default();
    for done in threads_done {
        for s in done.await.map_err(|_| anyhow!("a load thread panicked"))?? {
            all.latencies_us.extend_from_slice(&s.latencies_us);
            all.errors += s.errors;
            all.sent += s.sent;
            if all.first_error.is_none() {
                all.first_error = s.first_error;
            }
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

/// The request every connection sends, head and body, as `wrk -s` would.
fn serialise(load: &Load) -> Vec<u8> {
    let mut r = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nX-Vault-Token: {}\r\nContent-Length: {}\r\n\r\n",
        load.path,
        load.addr,
        load.token,
        load.body.len()
    )
    .into_bytes();
    r.extend_from_slice(&load.body);
    r
}

/// Nearest-rank percentile of sorted microsecond latencies.
fn percentile(sorted_us: &[u32], p: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Duration::from_micros(u64::from(sorted_us[rank - 1]))
}

#[derive(Clone)]
struct Ctx {
    addr: SocketAddr,
    request: Bytes,
    start: Instant,
    end: Instant,
    expected: usize,
}

/// One keep-alive connection and what has been read from it but not used yet.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// One answer: its status, whether the server closes the connection after it, and for a non-2xx a bit of its body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    close: bool,
    snippet: Option<String>,
}

impl Ctx {
    /// One thread's share: its own single-threaded runtime, its connections, one task each.
    fn drive_thread(self, connections: usize) -> anyhow::Result<Vec<TaskStats>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let mut conns = Vec::with_capacity(connections);
            for _ in 0..connections {
                conns.push(Conn::open(self.addr).await?);
            }
            let tasks: Vec<_> = conns.into_iter().map(|c| tokio::spawn(self.clone().drive(c))).collect();
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(t.await?);
            }
            Ok(out)
        })
    }

    /// One connection's closed loop. A request counts in the window if it completes inside it.
    async fn drive(self, mut conn: Conn) -> TaskStats {
        let mut st = TaskStats {
            latencies_us: Vec::with_capacity(self.expected),
            ..TaskStats::default()
        };
        loop {
            let t0 = Instant::now();
            if t0 >= self.end {
                break;
            }
            let outcome = conn.exchange(&self.request).await;
            let t1 = Instant::now();
            st.sent += 1;
            let in_window = t1 >= self.start && t1 < self.end;
            let reconnect = match outcome {
                Ok(a) if (200..300).contains(&a.status) => {
                    if in_window {
                        st.latencies_us
                            .push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX));
                    }
                    a.close
                }
                Ok(a) => {
                    let snippet = a.snippet.unwrap_or_default();
                    st.error(in_window, || format!("status {}: {snippet}", a.status));
                    a.close
                }
                Err(e) => {
                    st.error(in_window, || format!("{e:#}"));
                    true
                }
            };
            if reconnect {
                match Conn::open(self.addr).await {
                    Ok(c) => conn = c,
                    Err(e) => {
                        st.error(true, || format!("reconnecting: {e:#}"));
                        break;
                    }
                }
            }
        }
        st
    }
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        })
    }

    /// Sends the request and reads one whole answer.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        self.stream.write_all(request).await.context("sending")?;
        loop {
            match parse_answer(&self.buf)? {
                Some((answer, used)) => {
                    self.buf.advance(used);
                    return Ok(answer);
                }
                None => {
                    if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                        self.buf.reserve(64 * 1024);
                    }
                    if self
                        .stream
                        .read_buf(&mut self.buf)
                        .await
                        .context("reading the answer")?
                        == 0
                    {
                        bail!("the server closed the connection mid-answer");
                    }
                }
            }
        }
    }
}

/// One whole answer at the start of `buf` and the bytes it takes, or None if more must be read.
fn parse_answer(buf: &[u8]) -> anyhow::Result<Option<(Answer, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(buf).context("a malformed answer")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = head.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = head.version == Some(0);
    for h in head.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("a bad Content-Length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body = &buf[head_len..];
    let used = if status == 204 || status == 304 || (100..200).contains(&status) {
        0
    } else if chunked {
        match chunked_len(body)? {
            Some(n) => n,
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if body.len() < n {
            return Ok(None);
        }
        n
    } else {
        bail!("an answer with neither Content-Length nor chunked encoding (status {status})");
    };
    let snippet = (!(200..300).contains(&status)).then(|| String::from_utf8_lossy(&body[..used.min(300)]).into_owned());
    Ok(Some((Answer { status, close, snippet }, head_len + used)))
}

/// The bytes a chunked body at the start of `buf` takes, or None if it is incomplete.
fn chunked_len(buf: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut pos = 0;
    loop {
        let (size_line, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((n, size))) => (n, usize::try_from(size).context("a chunk too large")?),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => bail!("a malformed chunk size"),
        };
        let chunk_end = pos + size_line + size;
        if buf.len() < chunk_end + 2 {
            return Ok(None);
        }
        if &buf[chunk_end..chunk_end + 2] != b"\r\n" {
            bail!("a chunk not followed by CRLF (trailers are not supported)");
        }
        pos = chunk_end + 2;
        if size == 0 {
            return Ok(Some(pos));
        }
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

    fn answer(status: u16, close: bool, snippet: Option<&str>) -> Answer {
        Answer {
            status,
            close,
            snippet: snippet.map(str::to_owned),
        }
    }

    #[test]
    fn reads_answers_by_length() {
        let a = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(parse_answer(a).unwrap(), Some((answer(200, false, None), a.len() - 8)));
        // Every prefix short of the whole body asks for more.
        for cut in 0..a.len() - 8 {
            assert_eq!(parse_answer(&a[..cut]).unwrap(), None, "cut at {cut}");
        }
        let refused = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"errors\":[\"no\"]}";
        assert_eq!(
            parse_answer(refused).unwrap(),
            Some((answer(403, true, Some("{\"errors\":[\"no\"]}")), refused.len()))
        );
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            parse_answer(empty).unwrap(),
            Some((answer(204, false, None), empty.len()))
        );
    }

    #[test]
    fn reads_chunked_answers() {
        let a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        assert_eq!(parse_answer(a).unwrap(), Some((answer(200, false, None), a.len())));
        for cut in 0..a.len() {
            assert_eq!(parse_answer(&a[..cut]).unwrap(), None, "cut at {cut}");
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
        assert!(parse_answer(bad).is_err());
    }

    #[test]
    fn refuses_answers_it_cannot_frame() {
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nrest").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_answer(b"SMTP ready\r\n\r\n").is_err());
    }

    #[test]
    fn serialises_one_request() {
        let load = Load {
            addr: "127.0.0.1:8200".parse().unwrap(),
            token: "t0k".into(),
            path: "/v1/transit/encrypt/bench".into(),
            body: Bytes::from_static(b"{}"),
            connections: 1,
            threads: 1,
            warmup: Duration::ZERO,
            duration: Duration::ZERO,
        };
        let r = serialise(&load);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        let n = match req.parse(&r).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(
            (req.method, req.path),
            (Some("POST"), Some("/v1/transit/encrypt/bench"))
        );
        let get = |name: &str| req.headers.iter().find(|h| h.name == name).map(|h| h.value.to_vec());
        assert_eq!(get("X-Vault-Token"), Some(b"t0k".to_vec()));
        assert_eq!(get("Content-Length"), Some(b"2".to_vec()));
        assert_eq!(&r[n..], b"{}");
    }
}
