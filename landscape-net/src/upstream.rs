//! The traits through which the router reaches upstreams: where the ready endpoints of a
//! service are ([`EndpointSource`]), how to connect to one ([`Connector`]) and how to wake a
//! scaled-to-zero service ([`ServiceWaker`]). The runtime implements them; this module ships
//! simple defaults for hosts that run services themselves.

use crate::error::{Error, WakeError};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// One ready replica of a service port: an address the [`Connector`] understands
/// (`host:port`, e.g. `10.88.0.5:8080`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(Arc<str>);

impl Endpoint {
    /// An endpoint from a `host:port` string.
    pub fn new(authority: impl AsRef<str>) -> Self {
        Endpoint(Arc::from(authority.as_ref()))
    }

    /// The `host:port` string.
    pub fn authority(&self) -> &str {
        &self.0
    }
}

impl From<std::net::SocketAddr> for Endpoint {
    fn from(a: std::net::SocketAddr) -> Self {
        Endpoint::new(a.to_string())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ready endpoints of one service port, as a cheaply cloned snapshot.
pub type Endpoints = Arc<[Endpoint]>;

/// Source of ready endpoints per service port, with changes pushed through a
/// [`tokio::sync::watch`] channel. An empty list means "not running" (possibly asleep).
pub trait EndpointSource: Send + Sync + 'static {
    /// A receiver that always holds the current ready endpoints of `service`'s `port`.
    fn watch(&self, service: &str, port: u16) -> watch::Receiver<Endpoints>;
}

type ChannelKey = (String, Option<u16>);

/// An in-memory [`EndpointSource`]: the host (or a test, or the CLI) sets endpoints explicitly.
///
/// Endpoints set for `(service, None)` apply to every port of the service that has no
/// port-specific entry at the time the router first asks for that port (set port-specific
/// entries before building the router).
#[derive(Default)]
pub struct StaticEndpoints {
    channels: Mutex<HashMap<ChannelKey, watch::Sender<Endpoints>>>,
}

impl StaticEndpoints {
    /// An empty source: every service starts with no endpoints.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn sender(&self, service: &str, port: Option<u16>) -> watch::Sender<Endpoints> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((service.to_string(), port))
            .or_insert_with(|| watch::channel(Endpoints::from(Vec::new())).0)
            .clone()
    }

    /// Replaces the endpoints of `service` (all ports when `port` is `None`) and notifies
    /// every watcher (held requests are released at once).
    pub fn set(&self, service: &str, port: Option<u16>, endpoints: Vec<Endpoint>) {
        let tx = self.sender(service, port);
        tx.send_replace(endpoints.into());
    }

    /// Parses `SERVICE[:PORT]=HOST:PORT[,HOST:PORT...]` (the CLI's `--upstream`) and sets it.
    pub fn set_from_arg(&self, arg: &str) -> Result<(), Error> {
        let (svc, addrs) = arg
            .split_once('=')
            .ok_or_else(|| Error::BadUpstream(arg.into()))?;
        let (svc, port) = match svc.split_once(':') {
            Some((s, p)) => (
                s,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| Error::BadUpstream(arg.into()))?,
                ),
            ),
            None => (svc, None),
        };
        if svc.is_empty() {
            return Err(Error::BadUpstream(arg.into()));
        }
        let mut eps = Vec::new();
        for a in addrs.split(',').filter(|a| !a.is_empty()) {
            match a.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                    eps.push(Endpoint::new(a))
                }
                _ => return Err(Error::BadUpstream(arg.into())),
            }
        }
        if eps.is_empty() {
            return Err(Error::BadUpstream(arg.into()));
        }
        self.set(svc, port, eps);
        Ok(())
    }
}

impl EndpointSource for StaticEndpoints {
    fn watch(&self, service: &str, port: u16) -> watch::Receiver<Endpoints> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(&(service.to_string(), Some(port))) {
            return tx.subscribe();
        }
        // Fall back to the service-wide entry (created on demand so a later `set` is seen).
        let tx = map
            .entry((service.to_string(), None))
            .or_insert_with(|| watch::channel(Endpoints::from(Vec::new())).0);
        tx.subscribe()
    }
}

/// A bidirectional byte stream to an upstream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed upstream stream.
pub type BoxIo = Box<dyn Io>;

/// Opens connections to endpoints. The default is plain TCP ([`TcpConnector`]); the runtime
/// supplies one that hands over sockets from inside a landscape's network namespace.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Connects to `endpoint`. The router applies its connect timeout around this call.
    async fn connect(&self, endpoint: &Endpoint) -> io::Result<BoxIo>;
}

/// Plain TCP with `TCP_NODELAY`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

#[async_trait::async_trait]
impl Connector for TcpConnector {
    async fn connect(&self, endpoint: &Endpoint) -> io::Result<BoxIo> {
        let s = tokio::net::TcpStream::connect(endpoint.authority()).await?;
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    }
}

/// Wakes scaled-to-zero services. The router calls [`ServiceWaker::wake`] once per cold start
/// (concurrent requests are coalesced) and holds requests until an endpoint becomes ready.
#[async_trait::async_trait]
pub trait ServiceWaker: Send + Sync + 'static {
    /// Whether `service` can be woken at all (otherwise requests get 503 at once).
    fn can_wake(&self, _service: &str) -> bool {
        true
    }

    /// Starts `service`. Returning `Ok` does not mean it is ready: the router waits for the
    /// [`EndpointSource`] to report an endpoint. Returning `Err` fails every held request
    /// with 502 immediately.
    async fn wake(&self, service: &str) -> Result<(), WakeError>;
}
