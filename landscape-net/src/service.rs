//! Per-service state that outlives route-table swaps: ready endpoints with load-balancing
//! counters, passive ejection, activity, and the hold-while-waking machinery.

use crate::upstream::{Endpoint, Endpoints};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Activity of one service, for the runtime's idleness decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Unix time (ms) of the last request routed to the service; 0 = never.
    pub last_request_unix_ms: u64,
    /// Requests in flight (from routing until the response body ends).
    pub in_flight: usize,
    /// Open upgraded connections (WebSockets); each counts as activity while open.
    pub upgraded: usize,
    /// Requests currently held while the service wakes.
    pub held: usize,
}

impl Activity {
    /// Whether anything is going on right now.
    pub fn is_active(&self) -> bool {
        self.in_flight > 0 || self.upgraded > 0 || self.held > 0
    }
}

/// Outcome of one wake-up, published to held requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct WakeEvent {
    pub(crate) epoch: u64,
    pub(crate) failure: Option<Arc<str>>,
}

#[derive(Default)]
pub(crate) struct WakeState {
    pub(crate) in_progress: bool,
    pub(crate) epoch: u64,
}

/// State of one service (all its ports).
pub(crate) struct ServiceCell {
    pub(crate) name: Arc<str>,
    last_request: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) upgraded: AtomicUsize,
    pub(crate) held: AtomicUsize,
    pub(crate) wake: Mutex<WakeState>,
    pub(crate) wake_tx: watch::Sender<WakeEvent>,
}

impl ServiceCell {
    pub(crate) fn new(name: &str) -> Self {
        ServiceCell {
            name: name.into(),
            last_request: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            upgraded: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            wake: Mutex::new(WakeState::default()),
            wake_tx: watch::channel(WakeEvent::default()).0,
        }
    }

    pub(crate) fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_request.store(ms, Relaxed);
    }

    pub(crate) fn activity(&self) -> Activity {
        Activity {
            last_request_unix_ms: self.last_request.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            upgraded: self.upgraded.load(Relaxed),
            held: self.held.load(Relaxed),
        }
    }
}

/// Load-balancing counters of one endpoint, and its idle connections of the lean HTTP/1.1
/// path (dropped with the endpoint when it leaves the ready set).
#[derive(Default)]
pub(crate) struct EpStats {
    pub(crate) outstanding: AtomicUsize,
    /// Milliseconds since the router's epoch until which the endpoint is ejected.
    ejected_until: AtomicU64,
    /// Idle keep-alive connections (most recently used last) and when they became idle.
    pub(crate) idle: Mutex<Vec<(crate::upstream::BoxIo, Instant)>>,
    /// New connections opened by requests just released from a hold and still in use (see
    /// `h1::release_conn`).
    pub(crate) burst: AtomicUsize,
    /// Signalled when a connection goes idle or a burst connection is given up.
    pub(crate) returned: tokio::sync::Notify,
}

struct Snapshot {
    source: Endpoints,
    eps: Vec<(Endpoint, Arc<EpStats>)>,
}

/// One service port (or a headless target): its endpoints and balancing state.
pub(crate) struct Upstream {
    pub(crate) cell: Arc<ServiceCell>,
    pub(crate) port: u16,
    /// A headless target outside the landscape (connected with plain TCP).
    pub(crate) external: bool,
    /// TLS state of an `https://` target.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<crate::https::TargetTls>>,
    pub(crate) rx: watch::Receiver<Endpoints>,
    snapshot: ArcSwap<Snapshot>,
    rr: AtomicUsize,
    epoch: Instant,
}

/// A chosen endpoint; decrements its outstanding counter when dropped.
pub(crate) struct Picked {
    pub(crate) endpoint: Endpoint,
    pub(crate) stats: Arc<EpStats>,
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.stats.outstanding.fetch_sub(1, Relaxed);
    }
}

impl Upstream {
    pub(crate) fn new(cell: Arc<ServiceCell>, port: u16, rx: watch::Receiver<Endpoints>) -> Self {
        let source = rx.borrow().clone();
        let eps = source.iter().map(|e| (e.clone(), Arc::default())).collect();
        Upstream {
            cell,
            port,
            external: false,
            #[cfg(feature = "tls")]
            tls: None,
            rx,
            snapshot: ArcSwap::from_pointee(Snapshot { source, eps }),
            rr: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn current(&self) -> Arc<Snapshot> {
        let snap = self.snapshot.load_full();
        let cur = self.rx.borrow().clone();
        if Arc::ptr_eq(&cur, &snap.source) {
            return snap;
        }
        // Endpoints changed: keep the counters of endpoints that stayed.
        let eps = cur
            .iter()
            .map(|e| {
                let stats = snap
                    .eps
                    .iter()
                    .find(|(o, _)| o == e)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                (e.clone(), stats)
            })
            .collect();
        let new = Arc::new(Snapshot { source: cur, eps });
        // Concurrent callers that saw the same change agree on one snapshot (and so on one
        // set of counters and idle connections per endpoint).
        let prev = self.snapshot.compare_and_swap(&snap, new.clone());
        if Arc::ptr_eq(&*prev, &snap) {
            new
        } else {
            self.snapshot.load_full()
        }
    }

    /// Whether the service port has at least one ready endpoint.
    pub(crate) fn has_ready(&self) -> bool {
        !self.rx.borrow().is_empty()
    }

    /// Least outstanding requests, ties broken round-robin; ejected endpoints are skipped
    /// unless every endpoint is ejected; `exclude` lists endpoints already tried.
    pub(crate) fn pick(&self, exclude: &[Endpoint]) -> Option<Picked> {
        let snap = self.current();
        let n = snap.eps.len();
        if n == 0 {
            return None;
        }
        // The clock is read only if some endpoint was ever ejected.
        let mut now: Option<u64> = None;
        let start = self.rr.fetch_add(1, Relaxed);
        let mut best: Option<(usize, usize, bool)> = None; // (index, outstanding, ejected)
        for k in 0..n {
            let i = (start + k) % n;
            let (ep, st) = &snap.eps[i];
            if exclude.contains(ep) {
                continue;
            }
            let until = st.ejected_until.load(Relaxed);
            let ejected = until != 0 && until > *now.get_or_insert_with(|| self.now_ms());
            let out = st.outstanding.load(Relaxed);
            let better = match best {
                None => true,
                Some((_, bo, bej)) => (bej && !ejected) || (bej == ejected && out < bo),
            };
            if better {
                best = Some((i, out, ejected));
            }
        }
        let (i, _, _) = best?;
        let (ep, st) = &snap.eps[i];
        st.outstanding.fetch_add(1, Relaxed);
        Some(Picked {
            endpoint: ep.clone(),
            stats: st.clone(),
        })
    }

    /// Passive ejection after a failed connect.
    pub(crate) fn eject(&self, picked: &Picked, for_ms: u64) {
        picked
            .stats
            .ejected_until
            .store(self.now_ms() + for_ms, Relaxed);
    }
}
