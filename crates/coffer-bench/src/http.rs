//! Plain HTTP/1.1 over hyper's connection API: one-shot JSON calls for
//! setting targets up and reading their figures (the load itself is
//! `load.rs`'s).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection; its driver runs as its own task.
async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Builds a request with the headers every call carries.
fn request(
    method: Method,
    host: &HeaderValue,
    path: &str,
    token: Option<&HeaderValue>,
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(t) = token {
        b = b.header("X-Vault-Token", t.clone());
    }
    Ok(b.body(Full::new(body))?)
}

/// One request on a fresh connection; returns the status and the JSON body (Null if empty or not JSON).
pub(crate) async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let fut = async {
        let mut sender = connect(addr).await?;
        let host = HeaderValue::from_str(&addr.to_string())?;
        let token = token.map(HeaderValue::from_str).transpose()?;
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = request(method.clone(), &host, path, token.as_ref(), body)?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        anyhow::Ok((status, v))
    };
    match tokio::time::timeout(Duration::from_secs(60), fut).await {
        Ok(r) => r.with_context(|| format!("{method} {path} on {addr}")),
        Err(_) => bail!("{method} {path} on {addr}: no answer within 60 s"),
    }
}

/// As [`call`], failing unless the status is 2xx.
pub(crate) async fn call_ok(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let (status, v) = call(addr, method.clone(), path, token, body).await?;
    if !(200..300).contains(&status) {
        bail!("{method} {path} on {addr}: status {status}: {v}");
    }
    Ok(v)
}
