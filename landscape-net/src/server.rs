//! Listeners: the public one (HTTP/1.1 + h2c, upgrades, limits, graceful drain) and the admin
//! one (Prometheus metrics, activity).

use crate::error::Error;
use crate::proxy::Inner;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A stream that first replays bytes already read from it (the lean path handing a
/// connection to hyper).
struct Rewind<S> {
    pre: Vec<u8>,
    pos: usize,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.pre.len() {
            let n = (this.pre.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.pre[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.pre.len() {
                this.pre = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn builder(inner: &Inner) -> auto::Builder<TokioExecutor> {
    let c = &inner.config;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(c.header_read_timeout)
        .max_buf_size(c.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(c.max_header_bytes as u32)
        .keep_alive_interval(Some(c.http2_keepalive_interval))
        .keep_alive_timeout(c.http2_keepalive_interval)
        .max_concurrent_streams(c.http2_max_concurrent_streams);
    b
}

/// Accepts connections until `shutdown` resolves, then drains in-flight requests up to the
/// configured deadline and closes what is left.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve_with(inner, listener, None, shutdown).await
}

#[cfg(feature = "tls")]
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
pub(crate) type Acceptor = std::convert::Infallible;

/// Serves plain HTTP, or HTTPS when `tls` is given.
pub(crate) async fn serve_with(
    inner: Arc<Inner>,
    listener: TcpListener,
    tls: Option<Acceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let builder = Arc::new(builder(&inner));
    let graceful = GracefulShutdown::new();
    // Tells connections on the lean path to finish (the hyper ones hear `graceful`).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: log and keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let mut stop = stop_rx.clone();
        #[allow(clippy::clone_on_copy)] // `Infallible` without the `tls` feature
        let tls = tls.clone();
        conns.spawn(async move {
            // Detecting HTTP/1 vs h2c waits for the first bytes; a client that sends nothing is
            // cut off after the header read timeout.
            let mut b = [0u8; 1];
            match tokio::time::timeout(inner.config.header_read_timeout, stream.peek(&mut b)).await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let svc_inner = inner.clone();
            // Computed once per connection; cloning a shared header value is a refcount.
            let client_ip =
                http::HeaderValue::from_maybe_shared(bytes::Bytes::from(peer.ip().to_string()))
                    .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
            let proto = if tls.is_some() { "https" } else { "http" };
            let svc = service_fn(move |req: Request<Incoming>| {
                let inner = svc_inner.clone();
                let ip = client_ip.clone();
                async move { Ok::<_, Infallible>(inner.handle(req, ip, proto).await) }
            });
            let result = match tls {
                None if inner.config.fast_http1 => {
                    let mut stream = stream;
                    let ip = peer.ip().to_string();
                    match crate::h1::serve(&inner, &mut stream, ip.as_bytes(), proto, &mut stop)
                        .await
                    {
                        crate::h1::Lean::Done => Ok(()),
                        crate::h1::Lean::Fallback(pre) => {
                            let io = Rewind {
                                pre,
                                pos: 0,
                                io: stream,
                            };
                            let conn =
                                builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
                            watcher.watch(conn.into_owned()).await
                        }
                    }
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
                #[cfg(feature = "tls")]
                Some(acceptor) => {
                    let hs = tokio::time::timeout(
                        inner.config.header_read_timeout,
                        acceptor.accept(stream),
                    );
                    let stream = match hs.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
                #[cfg(not(feature = "tls"))]
                Some(never) => match never {},
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    let drain = inner.config.drain_timeout;
    let _ = stop_tx.send(true);
    let all_done = async {
        graceful.shutdown().await;
        while conns.join_next().await.is_some() {}
    };
    if tokio::time::timeout(drain, all_done).await.is_err() {
        tracing::warn!(
            remaining = conns.len(),
            "drain deadline passed; closing remaining connections"
        );
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// The admin listener: `GET /metrics` (Prometheus text), `GET /activity`, `GET /healthz`.
pub(crate) async fn serve_admin(
    inner: Arc<Inner>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    tokio::pin!(shutdown);
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        let inner = inner.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let inner = inner.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, inner.metrics_text()),
                        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
                        "/activity" => {
                            let mut s = String::from(
                                "# service last_request_unix_ms in_flight upgraded held\n",
                            );
                            for (svc, a) in inner.all_activity() {
                                s.push_str(&format!(
                                    "{svc} {} {} {} {}\n",
                                    a.last_request_unix_ms, a.in_flight, a.upgraded, a.held
                                ));
                            }
                            (StatusCode::OK, s)
                        }
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    conns.abort_all();
    Ok(())
}
