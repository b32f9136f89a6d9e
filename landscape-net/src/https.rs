//! `https://` headless targets (feature `tls`): TCP to the target's address, a TLS handshake
//! with SNI and certificate verification against the router's client configuration (the
//! system's roots unless the host supplied its own), ALPN `h2` + `http/1.1`. When the server
//! picks `h2`, all requests to the target share one multiplexed connection; otherwise
//! HTTP/1.1 connections are kept in a keep-alive pool. Upgrade requests (WebSocket) always use
//! a fresh HTTP/1.1-only connection.

use crate::body::ReqBody;
use crate::pool::Pool;
use crate::proxy::{Failure, Inner};
use crate::routes::Target;
use crate::service::{Picked, Upstream};
use crate::tls::{client_config, rustls, system_roots};
use crate::upstream::Endpoint;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_rustls::TlsConnector;

/// The TLS connectors of a router: one offering `h2` and `http/1.1`, one `http/1.1` only (for
/// upgrades). Built on first use, so a router without `https://` targets never reads the
/// system's certificate store.
pub(crate) struct Client {
    given: Option<Arc<rustls::ClientConfig>>,
    built: tokio::sync::OnceCell<Result<Connectors, String>>,
}

struct Connectors {
    both: TlsConnector,
    h1: TlsConnector,
}

impl Client {
    pub(crate) fn new(given: Option<Arc<rustls::ClientConfig>>) -> Self {
        Client {
            given,
            built: tokio::sync::OnceCell::new(),
        }
    }

    async fn connectors(&self) -> Result<&Connectors, String> {
        let r = self
            .built
            .get_or_init(|| async {
                let base = match &self.given {
                    Some(c) => c.clone(),
                    None => {
                        let roots = tokio::task::spawn_blocking(system_roots)
                            .await
                            .map_err(|e| format!("loading the system root certificates: {e}"))?;
                        client_config(roots).map_err(|e| e.to_string())?
                    }
                };
                let with = |alpn: &[&[u8]]| {
                    let mut c = (*base).clone();
                    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                    TlsConnector::from(Arc::new(c))
                };
                Ok(Connectors {
                    both: with(&[b"h2", b"http/1.1"]),
                    h1: with(&[b"http/1.1"]),
                })
            })
            .await;
        r.as_ref().map_err(|e| e.clone())
    }
}

/// Connection state of one `https://` target (kept for the router's lifetime, across swaps).
pub(crate) struct TargetTls {
    /// SNI and the name the certificate must be valid for, or why the host cannot be one.
    server_name: Result<ServerName<'static>, String>,
    /// `host[:port]` as in the URL: `:authority` of HTTP/2 requests.
    authority: Option<http::uri::Authority>,
    /// `Host` of HTTP/1.1 requests.
    host: Option<HeaderValue>,
    /// The shared HTTP/2 connection and when it was last used.
    h2: Mutex<Option<(http2::SendRequest<ReqBody>, Instant)>>,
    /// The server picked `h2` last time: connect one request at a time (the others then share
    /// the new connection instead of opening their own).
    speaks_h2: AtomicBool,
    h2_connect: tokio::sync::Mutex<()>,
    /// Idle HTTP/1.1 connections.
    h1: Pool,
}

/// The host part of `host[:port]` / `[v6][:port]`, without brackets.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

impl TargetTls {
    pub(crate) fn new(t: &Target, config: &crate::RouterConfig) -> Self {
        let host = host_of(&t.host_header);
        let server_name = ServerName::try_from(host.to_string()).map_err(|_| {
            format!(
                "target host {host:?} is not a valid TLS server name (a DNS name or an IP address)"
            )
        });
        TargetTls {
            server_name,
            authority: t.host_header.parse().ok(),
            host: HeaderValue::from_str(&t.host_header).ok(),
            h2: Mutex::new(None),
            speaks_h2: AtomicBool::new(false),
            h2_connect: tokio::sync::Mutex::new(()),
            h1: Pool::new(config.max_idle_per_endpoint, config.upstream_idle_timeout),
        }
    }

    /// The open HTTP/2 connection, if it is usable and not idle for too long.
    fn h2_checkout(&self, idle: std::time::Duration) -> Option<http2::SendRequest<ReqBody>> {
        let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some((s, last)) if !s.is_closed() && last.elapsed() < idle => {
                *last = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    fn checkout(&self, ep: &Endpoint, idle: std::time::Duration) -> Option<Sender> {
        if let Some(s) = self.h2_checkout(idle) {
            return Some(Sender::H2(s));
        }
        self.h1.checkout(ep).map(Sender::H1)
    }

    /// The request as HTTP/1.1 (origin-form target, `Host` = the target's host).
    fn for_h1(&self, req: &mut Request<ReqBody>) {
        *req.version_mut() = Version::HTTP_11;
        if req.uri().scheme().is_some() {
            let pq = req.uri().path_and_query().cloned();
            *req.uri_mut() = pq.map(Uri::from).unwrap_or_else(|| Uri::from_static("/"));
        }
        if let Some(h) = &self.host {
            req.headers_mut().insert(header::HOST, h.clone());
        }
    }

    /// The request as HTTP/2 (absolute target: `:scheme https`, `:authority` = the target's
    /// host; no `Host` header).
    fn for_h2(&self, req: &mut Request<ReqBody>) {
        crate::proxy::to_h2(req, http::uri::Scheme::HTTPS, self.authority.clone());
    }
}

/// A connection to a target: HTTP/1.1 (exclusive while in use) or HTTP/2 (shared).
enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

enum ConnErr {
    /// TCP connect failed or timed out: the endpoint may come back.
    Connect(std::io::Error),
    /// TLS failed (certificate, protocol, name): nothing was sent; retrying will not help.
    Tls(String),
}

impl Inner {
    /// Opens a TLS connection to `ep` and speaks what ALPN picked.
    async fn connect_https(
        &self,
        ep: &Endpoint,
        tt: &TargetTls,
        h1_only: bool,
    ) -> Result<Sender, ConnErr> {
        let connectors = self.https.connectors().await.map_err(ConnErr::Tls)?;
        let name = tt.server_name.clone().map_err(ConnErr::Tls)?;
        let connector = if h1_only {
            &connectors.h1
        } else {
            &connectors.both
        };
        let connect = async {
            let io = self.connect_io(ep, true).await.map_err(ConnErr::Connect)?;
            let tls = connector
                .connect(name, io)
                .await
                .map_err(|e| ConnErr::Tls(format!("TLS handshake with {ep} failed: {e}")))?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            let io = TokioIo::new(tls);
            let handshake_failed = |e: hyper::Error| {
                ConnErr::Connect(std::io::Error::other(format!("HTTP handshake: {e}")))
            };
            if h2 {
                let c = &self.config;
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(c.http2_keepalive_interval)
                    .keep_alive_timeout(c.http2_keepalive_interval)
                    .handshake(io)
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "https target connection (h2) closed with an error");
                    }
                });
                Ok(Sender::H2(sender))
            } else {
                let (sender, conn) = http1::Builder::new()
                    .handshake(io)
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(error = %e, "https target connection closed with an error");
                    }
                });
                Ok(Sender::H1(sender))
            }
        };
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(ConnErr::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect and TLS handshake timed out",
            ))),
        }
    }

    /// A pooled connection, or a new one. While the target is known to speak HTTP/2, new
    /// connections are opened one at a time so that a burst of requests shares one.
    async fn https_sender(
        &self,
        ep: &Endpoint,
        tt: &TargetTls,
        upgrade: bool,
        fresh: bool,
    ) -> Result<(Sender, bool), ConnErr> {
        let idle = self.config.upstream_idle_timeout;
        if upgrade {
            return Ok((self.connect_https(ep, tt, true).await?, false));
        }
        if !fresh {
            if let Some(s) = tt.checkout(ep, idle) {
                return Ok((s, true));
            }
        }
        let _one_at_a_time = if tt.speaks_h2.load(Relaxed) {
            let g = tt.h2_connect.lock().await;
            if let Some(s) = tt.h2_checkout(idle) {
                return Ok((Sender::H2(s), false));
            }
            Some(g)
        } else {
            None
        };
        let s = self.connect_https(ep, tt, false).await?;
        match &s {
            Sender::H2(h2) => {
                tt.speaks_h2.store(true, Relaxed);
                let mut slot = tt.h2.lock().unwrap_or_else(|e| e.into_inner());
                *slot = Some((h2.clone(), Instant::now()));
            }
            Sender::H1(_) => tt.speaks_h2.store(false, Relaxed),
        }
        Ok((s, false))
    }

    /// [`Inner::forward`] for an `https://` target: same retry rules (another attempt while
    /// nothing was sent, a replay for idempotent bodiless requests), no retry after a TLS
    /// failure (a bad certificate does not get better).
    pub(crate) async fn forward_https(
        &self,
        up: &Arc<Upstream>,
        tt: &TargetTls,
        mut req: Request<ReqBody>,
        mut replay: Option<(Method, Uri, HeaderMap)>,
        upgrade: bool,
        started: Instant,
    ) -> Result<(Response<Incoming>, Picked), Failure> {
        let mut last = Failure::NoEndpoint;
        let mut fresh = false;
        let mut attempts = 0;
        while attempts < self.config.max_attempts.max(1) {
            attempts += 1;
            let Some(picked) = up.pick(&[]) else { break };
            let ep = picked.endpoint.clone();
            let (sender, reused) = match self.https_sender(&ep, tt, upgrade, fresh).await {
                Ok(s) => s,
                Err(ConnErr::Tls(reason)) => {
                    tracing::warn!(target_host = %ep, error = %reason, "https target: TLS failed; request not forwarded");
                    self.metrics.upstream_error(&up.cell.name);
                    return Err(Failure::Tls(reason));
                }
                Err(ConnErr::Connect(e)) => {
                    tracing::warn!(target_host = %ep, error = %e, "https target: connect failed");
                    self.metrics.upstream_error(&up.cell.name);
                    up.eject(&picked, self.config.eject_for.as_millis() as u64);
                    last = Failure::Connect;
                    fresh = false;
                    continue;
                }
            };
            fresh = false;
            let result = match sender {
                Sender::H2(mut s) => {
                    tt.for_h2(&mut req);
                    s.try_send_request(req).await
                }
                Sender::H1(mut s) => {
                    tt.for_h1(&mut req);
                    let r = s.try_send_request(req).await;
                    if r.is_ok() && !upgrade {
                        tt.h1.checkin(ep.clone(), s, started);
                    }
                    r
                }
            };
            match result {
                Ok(resp) => return Ok((resp, picked)),
                Err(mut e) => {
                    let e: &mut TrySendError<Request<ReqBody>> = &mut e;
                    tracing::debug!(target_host = %ep, error = %e.error(), "https target: exchange failed");
                    self.metrics.upstream_error(&up.cell.name);
                    last = Failure::Exchange;
                    if reused {
                        // A pooled connection the server had closed: once more on a new one.
                        fresh = true;
                        attempts -= 1;
                    }
                    match e.take_message() {
                        Some(m) => req = m,
                        None => match replay.take() {
                            Some((m, u, h)) => {
                                replay = Some((m.clone(), u.clone(), h.clone()));
                                let mut r = Request::new(ReqBody::Empty);
                                *r.method_mut() = m;
                                *r.uri_mut() = u;
                                *r.headers_mut() = h;
                                req = r;
                            }
                            None => return Err(Failure::Exchange),
                        },
                    }
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_without_port_or_brackets() {
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("example.com:8443"), "example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
        assert_eq!(host_of("127.0.0.1:443"), "127.0.0.1");
    }
}
