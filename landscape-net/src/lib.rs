//! The landscape router: one public entry per landscape. Path routes (`/api` → `backend:8080`),
//! host routes for public ports, headless targets; load balancing over ready replicas with
//! passive ejection and retries; weighted splits; holding requests while a scaled-to-zero
//! service wakes; atomic hot reload of the whole route table; HTTP/1.1, h2c and WebSocket
//! pass-through with streaming bodies.
//!
//! ```
//! use landscape_net::{Route, RouteTable, Router, StaticEndpoints};
//! use landscape_net::tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let rt = landscape_net::tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! rt.block_on(async {
//!     let endpoints = StaticEndpoints::new();
//!     let table = RouteTable::new().with(Route::to_service("/api", "backend", 8080).strip(true));
//!     let router = Router::builder().endpoints(endpoints.clone()).build(table);
//!     let listener = landscape_net::tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = landscape_net::tokio::spawn({
//!         let router = router.clone();
//!         async move { router.serve(listener, std::future::pending()).await }
//!     });
//!     // No route for `/other`: 404 with a short body that names no internals.
//!     let mut s = landscape_net::tokio::net::TcpStream::connect(addr).await.unwrap();
//!     s.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
//!     let mut out = String::new();
//!     s.read_to_string(&mut out).await.unwrap();
//!     assert!(out.starts_with("HTTP/1.1 404"));
//!     server.abort();
//! });
//! ```
#![warn(missing_docs)]

mod body;
mod error;
mod h1;
#[cfg(feature = "tls")]
mod https;
mod metrics;
mod pool;
mod proxy;
pub mod routes;
mod server;
mod service;
pub mod spec;
pub mod standalone;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstream;

pub use body::{ReqBody, RespBody};
pub use error::{Error, WakeError};
pub use routes::{Action, Backend, Route, RouteTable, Target};
pub use service::Activity;
pub use upstream::{
    BoxIo, Connector, Endpoint, EndpointSource, Endpoints, Io, ServiceWaker, StaticEndpoints,
    TcpConnector,
};

#[doc(hidden)]
pub use tokio;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Limits, timeouts and policies. `Default` gives sane production values.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Largest request head (request line + headers) in bytes; larger gets 431. Minimum 8 KiB.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head; also the idle keep-alive limit of
    /// HTTP/1 connections (the timer runs while waiting for the next request).
    pub header_read_timeout: Duration,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Idle upstream connections older than this are not reused.
    pub upstream_idle_timeout: Duration,
    /// Idle upstream connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// How long a request is held while its service wakes.
    pub hold_timeout: Duration,
    /// Requests held per service at most; more get 503.
    pub max_held_per_service: usize,
    /// New upstream connections (per endpoint) that requests released together from a hold
    /// open at once; the other released requests reuse them as they come back instead of each
    /// opening its own (lean HTTP/1.1 path). 0 = no bound.
    pub release_connections: usize,
    /// How long a released request waits for one of those connections to come back before
    /// opening its own (the most a slow upstream can add to a held request).
    pub release_wait: Duration,
    /// `Retry-After` seconds on 503.
    pub retry_after_secs: u32,
    /// How long an endpoint that failed to connect is skipped.
    pub eject_for: Duration,
    /// Upstream attempts per request (different endpoints).
    pub max_attempts: usize,
    /// Graceful shutdown: how long in-flight requests may finish.
    pub drain_timeout: Duration,
    /// HTTP/2 ping interval (and ping timeout) for idle detection.
    pub http2_keepalive_interval: Duration,
    /// HTTP/2 concurrent streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Serve plain HTTP/1.1 requests to ready HTTP/1.1 upstreams on the lean path (own
    /// parser, pooled raw connections, no per-request tasks); anything else, and every
    /// request when this is off, takes the hyper path. Same semantics either way.
    pub fast_http1: bool,
    /// Send HTTP/2 gRPC requests (`content-type: application/grpc…`) to service endpoints over
    /// HTTP/2 without TLS (h2c, prior knowledge), as gRPC servers expect; other requests go
    /// upstream over HTTP/1.1. Default `true`.
    pub grpc_h2c: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_header_bytes: 32 * 1024,
            header_read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            upstream_idle_timeout: Duration::from_secs(60),
            max_idle_per_endpoint: 256,
            hold_timeout: Duration::from_secs(30),
            max_held_per_service: 1000,
            release_connections: 4,
            release_wait: Duration::from_millis(20),
            retry_after_secs: 5,
            eject_for: Duration::from_secs(5),
            max_attempts: 3,
            drain_timeout: Duration::from_secs(30),
            http2_keepalive_interval: Duration::from_secs(20),
            http2_max_concurrent_streams: 256,
            fast_http1: true,
            grpc_h2c: true,
        }
    }
}

/// Builds a [`Router`].
pub struct RouterBuilder {
    config: RouterConfig,
    endpoints: Option<Arc<dyn EndpointSource>>,
    connector: Arc<dyn Connector>,
    waker: Option<Arc<dyn ServiceWaker>>,
    #[cfg(feature = "tls")]
    upstream_tls: Option<Arc<tls::rustls::ClientConfig>>,
}

impl RouterBuilder {
    /// Replaces the configuration.
    pub fn config(mut self, config: RouterConfig) -> Self {
        self.config = config;
        self
    }

    /// Where ready endpoints come from (default: an empty [`StaticEndpoints`]).
    pub fn endpoints(mut self, source: Arc<dyn EndpointSource>) -> Self {
        self.endpoints = Some(source);
        self
    }

    /// How upstream connections are opened (default: [`TcpConnector`]).
    pub fn connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = connector;
        self
    }

    /// Wakes services with no ready endpoint (default: none; such requests get 503).
    pub fn waker(mut self, waker: Arc<dyn ServiceWaker>) -> Self {
        self.waker = Some(waker);
        self
    }

    /// The TLS client configuration for `https://` headless targets (feature `tls`): which
    /// roots are trusted, protocol versions, client certificates. Its ALPN list is replaced by
    /// `h2` + `http/1.1`. Default: the system's root certificates ([`tls::system_roots`]),
    /// read when the first request goes to an `https://` target. See [`tls::client_config`].
    #[cfg(feature = "tls")]
    pub fn upstream_tls(mut self, config: Arc<tls::rustls::ClientConfig>) -> Self {
        self.upstream_tls = Some(config);
        self
    }

    /// The router, serving `table`.
    pub fn build(self, table: RouteTable) -> Router {
        let endpoints = self.endpoints.unwrap_or_else(|| StaticEndpoints::new());
        #[allow(unused_mut)] // without `tls`
        let mut inner = proxy::Inner::new(self.config, endpoints, self.connector, self.waker);
        #[cfg(feature = "tls")]
        {
            inner.https = https::Client::new(self.upstream_tls);
        }
        inner.swap(table);
        Router {
            inner: Arc::new(inner),
        }
    }
}

/// The router. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Router {
    inner: Arc<proxy::Inner>,
}

impl Router {
    /// A builder with default configuration, no waker and plain TCP.
    pub fn builder() -> RouterBuilder {
        RouterBuilder {
            config: RouterConfig::default(),
            endpoints: None,
            connector: Arc::new(TcpConnector),
            waker: None,
            #[cfg(feature = "tls")]
            upstream_tls: None,
        }
    }

    /// Replaces the whole route table atomically. Requests in flight and open connections
    /// (including upgraded ones) keep going; new requests see the new table.
    pub fn swap(&self, table: RouteTable) {
        self.inner.swap(table);
    }

    /// The route table currently served.
    pub fn table(&self) -> RouteTable {
        self.inner.table.load().table.clone()
    }

    /// Activity of a service (for idleness decisions), if the router has seen it.
    pub fn activity(&self, service: &str) -> Option<Activity> {
        self.inner.activity(service)
    }

    /// Activity of every service the router knows, sorted by name.
    pub fn all_activity(&self) -> Vec<(String, Activity)> {
        self.inner.all_activity()
    }

    /// Prometheus text exposition of the router's metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics_text()
    }

    /// The configuration in use.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// Serves the public listener until `shutdown` resolves, then drains in-flight requests
    /// for up to [`RouterConfig::drain_timeout`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        server::serve(self.inner.clone(), listener, shutdown).await
    }

    /// Serves HTTPS on `listener` (feature `tls`): HTTP/1.1 or HTTP/2 as negotiated by ALPN,
    /// `X-Forwarded-Proto: https`. The TLS handshake must finish within the header read
    /// timeout. See [`tls::server_config`].
    #[cfg(feature = "tls")]
    pub async fn serve_tls(
        &self,
        listener: tokio::net::TcpListener,
        config: Arc<tls::rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        server::serve_with(self.inner.clone(), listener, Some(acceptor), shutdown).await
    }

    /// Serves the admin listener (`/metrics`, `/activity`, `/healthz`) until `shutdown`.
    pub async fn serve_admin(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        server::serve_admin(self.inner.clone(), listener, shutdown).await
    }
}
