//! The accept loop: TCP, then TLS when configured, then HTTP/1.1 or HTTP/2
//! through hyper. It is ours rather than `axum::serve` so that each request
//! can carry what the connection knows: the peer address, whether it came
//! over TLS, and the client certificate chain that TLS verified.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use crate::config::Limits;
use crate::tls::Tls;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slow-header clients (slowloris) are dropped after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How many connections, and how long one may wait on a read or a write.
pub(crate) struct ConnLimits {
    slots: Arc<Semaphore>,
    idle: Option<Duration>,
}

impl ConnLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        ConnLimits {
            slots: Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS))),
            // A second past the request deadline, so a request's own 503 is never cut off.
            idle: (!limits.idle_timeout.is_zero()).then(|| {
                let after_request = limits.request_timeout.saturating_add(Duration::from_secs(1));
                limits.idle_timeout.max(after_request)
            }),
        }
    }
}

/// The TCP stream under TLS and HTTP, failing reads or writes that wait longer than the idle timeout.
type Tcp = Pin<Box<TimeoutStream<TcpStream>>>;

/// What a request knows about its connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) tls: bool,
    /// The client's certificate chain (leaf first), verified by the TLS layer.
    pub(crate) peer: Option<Arc<[CertificateDer<'static>]>>,
}

pub(crate) async fn run(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    conns: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // At the connection limit, new clients wait in the listen backlog.
        let slot = tokio::select! {
            p = conns.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_read_timeout(conns.idle);
        stream.set_write_timeout(conns.idle);
        let stream: Tcp = Box::pin(stream);
        let watcher = graceful.watcher();
        let (router, builder, tls) = (router.clone(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                let info = ConnInfo {
                    remote,
                    tls: false,
                    peer: None,
                };
                return connection(&builder, stream, router, info, watcher).await;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = stream.get_ref().1.peer_certificates().map(Arc::from);
            let info = ConnInfo {
                remote,
                tls: true,
                peer,
            };
            connection(&builder, stream, router, info, watcher).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}

async fn connection<S>(builder: &auto::Builder<TokioExecutor>, io: S, router: Router, info: ConnInfo, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        tower::ServiceExt::oneshot(router.clone(), req)
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_outlives_its_request_deadline() {
        let limits = |request: u64, idle: u64| Limits {
            request_timeout: Duration::from_secs(request),
            idle_timeout: Duration::from_secs(idle),
            ..Limits::default()
        };
        assert_eq!(ConnLimits::new(&limits(90, 90)).idle, Some(Duration::from_secs(91)));
        assert_eq!(ConnLimits::new(&limits(90, 300)).idle, Some(Duration::from_secs(300)));
        assert_eq!(ConnLimits::new(&limits(0, 0)).idle, None, "no deadline");
    }
}
