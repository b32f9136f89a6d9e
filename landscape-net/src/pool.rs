//! Pool of HTTP/1.1 upstream connections, per endpoint.
//!
//! A connection goes back into the pool as soon as its response head has arrived; while its
//! body is still streaming the connection is not `ready` and checkout skips it. This avoids a
//! task per request for recycling.

use crate::body::ReqBody;
use crate::upstream::Endpoint;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Conns = Vec<(SendRequest<ReqBody>, Instant)>;

/// Keep-alive connections by endpoint.
#[derive(Clone)]
pub(crate) struct Pool {
    conns: Arc<Mutex<HashMap<Endpoint, Conns>>>,
    max_per_endpoint: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_per_endpoint: usize, idle_timeout: Duration) -> Self {
        Pool {
            conns: Arc::default(),
            max_per_endpoint: max_per_endpoint.max(1),
            idle_timeout,
        }
    }

    /// A ready (idle, open) connection to `ep`, most recently returned first. Closed and
    /// expired connections are dropped on the way.
    pub(crate) fn checkout(&self, ep: &Endpoint) -> Option<SendRequest<ReqBody>> {
        let mut m = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.get_mut(ep)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let (s, since) = &list[i];
            if s.is_closed() || (s.is_ready() && since.elapsed() >= self.idle_timeout) {
                list.swap_remove(i);
                continue;
            }
            if s.is_ready() {
                return Some(list.swap_remove(i).0);
            }
        }
        None
    }

    /// Returns a connection whose response head has arrived; it becomes usable once the
    /// response body has been read.
    pub(crate) fn checkin(&self, ep: Endpoint, sender: SendRequest<ReqBody>, now: Instant) {
        if sender.is_closed() {
            return;
        }
        let mut m = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.entry(ep).or_default();
        if list.len() >= self.max_per_endpoint {
            // Prefer dropping a closed one, else the oldest.
            match list.iter().position(|(s, _)| s.is_closed()) {
                Some(i) => {
                    list.swap_remove(i);
                }
                None => {
                    list.remove(0);
                }
            }
        }
        list.push((sender, now));
    }
}
