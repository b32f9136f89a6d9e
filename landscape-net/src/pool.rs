//! Pool of idle HTTP/1.1 upstream connections, per endpoint.

use crate::body::ReqBody;
use crate::upstream::Endpoint;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Idle = Vec<(SendRequest<ReqBody>, Instant)>;

/// Idle keep-alive connections; a connection goes back once its response is complete.
#[derive(Clone)]
pub(crate) struct Pool {
    idle: Arc<Mutex<HashMap<Endpoint, Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: Arc::default(),
            max_idle,
            idle_timeout,
        }
    }

    /// An idle, open connection to `ep`, most recently used first.
    pub(crate) fn checkout(&self, ep: &Endpoint) -> Option<SendRequest<ReqBody>> {
        let mut m = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.get_mut(ep)?;
        while let Some((s, since)) = list.pop() {
            if s.is_ready() && since.elapsed() < self.idle_timeout {
                return Some(s);
            }
        }
        None
    }

    /// Puts `sender` back once the connection is ready for the next request (i.e. the
    /// response body has been read). Connections that close are dropped.
    pub(crate) fn recycle(&self, ep: Endpoint, mut sender: SendRequest<ReqBody>) {
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let mut m = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = m.entry(ep).or_default();
            if list.len() >= pool.max_idle {
                // Drop the oldest.
                list.remove(0);
            }
            list.push((sender, Instant::now()));
        });
    }
}
