//! The crate's error type.

/// Everything that can go wrong in landscape-net.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A route could not be built.
    #[error("route {route:?}: {reason}")]
    InvalidRoute {
        /// The route (prefix, URL or host) that was rejected.
        route: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// The landscape cannot be turned into routes.
    #[error("landscape routes: {0}")]
    Spec(String),
    /// A listener could not be bound or accepted connections.
    #[error("{what} {addr}: {source}; check that the address is free and allowed")]
    Listen {
        /// Which listener (`router listener`, `admin listener`).
        what: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be used.
    #[error("tls: {0}")]
    Tls(String),
    /// An `--upstream` argument or other endpoint description could not be parsed.
    #[error("upstream {0:?}: expected SERVICE[:PORT]=HOST:PORT[,HOST:PORT...]")]
    BadUpstream(String),
}

/// Why a wake-up failed; reported to held clients in the 502 body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WakeError(pub String);
