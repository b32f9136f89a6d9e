//! Hold-while-waking: coalesced wake-ups, bounded queues and deadlines, failed wakes.
//! Real upstream servers are started by the test's waker, on 127.0.0.1.

mod common;

use common::*;
use landscape_net::{Route, RouteTable, RouterConfig, ServiceWaker, StaticEndpoints, WakeError};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts a real upstream on wake and publishes it as the service's endpoint.
struct StartOnWake {
    endpoints: Arc<StaticEndpoints>,
    calls: AtomicUsize,
    started: Mutex<Vec<Upstream>>,
    /// Released by the test to let the service "finish starting".
    go: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl ServiceWaker for StartOnWake {
    async fn wake(&self, service: &str) -> Result<(), WakeError> {
        self.calls.fetch_add(1, SeqCst);
        let _permit = self
            .go
            .acquire()
            .await
            .map_err(|_| WakeError("closed".into()))?;
        let up = Upstream::start(service).await;
        self.endpoints.set(service, None, vec![up.endpoint()]);
        self.started.lock().unwrap().push(up);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_to_a_sleeping_service_succeed_after_one_wake() {
    two_hundred_held(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_held_requests_on_the_hyper_path_too() {
    two_hundred_held(false).await;
}

/// `fast`: `RouterConfig::fast_http1` (the lean HTTP/1.1 path holds requests too).
async fn two_hundred_held(fast: bool) {
    let endpoints = StaticEndpoints::new();
    let waker = Arc::new(StartOnWake {
        endpoints: endpoints.clone(),
        calls: AtomicUsize::new(0),
        started: Mutex::default(),
        go: tokio::sync::Semaphore::new(0),
    });
    let r = TestRouter::start_with(
        RouteTable::new().with(Route::to_service("/", "sleepy", 3000)),
        RouterConfig {
            fast_http1: fast,
            ..RouterConfig::default()
        },
        endpoints,
        Some(waker.clone()),
    )
    .await;
    let addr = r.addr;
    let mut tasks = Vec::new();
    for i in 0..200 {
        tasks.push(tokio::spawn(async move {
            get(addr, "h", &format!("/req/{i}")).await
        }));
    }
    // All 200 are held before the service is allowed to come up.
    wait_until("200 held requests", || {
        r.router.activity("sleepy").is_some_and(|a| a.held == 200)
    })
    .await;
    let held_at = Instant::now();
    waker.go.add_permits(1);
    for (i, t) in tasks.into_iter().enumerate() {
        let g = t.await.unwrap();
        assert_eq!(g.status, 200, "request {i}: {}", g.body);
        assert_eq!(g.field("path"), format!("/req/{i}"));
        let cold: u64 = g
            .headers
            .get("x-landscape-cold-start-ms")
            .expect("cold-start header")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cold as u128 <= held_at.elapsed().as_millis() + 60_000);
    }
    assert_eq!(
        waker.calls.load(SeqCst),
        1,
        "concurrent requests must share one wake-up"
    );
    // Once awake, requests are not held and carry no cold-start header.
    let g = get(addr, "h", "/warm").await;
    assert!(g.headers.get("x-landscape-cold-start-ms").is_none());
    assert_eq!(r.router.activity("sleepy").unwrap().held, 0);
    assert!(r
        .router
        .metrics_text()
        .contains("landscape_router_wakes_total 1"));
}

/// Held requests released together share a bounded number of new upstream connections
/// (`release_connections`; the wait for a returned one is unbounded here, so the count is
/// exact) on the lean path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_requests_share_a_bounded_number_of_new_connections() {
    let endpoints = StaticEndpoints::new();
    let waker = Arc::new(StartOnWake {
        endpoints: endpoints.clone(),
        calls: AtomicUsize::new(0),
        started: Mutex::default(),
        go: tokio::sync::Semaphore::new(0),
    });
    let r = TestRouter::start_with(
        RouteTable::new().with(Route::to_service("/", "sleepy", 3000)),
        RouterConfig {
            release_connections: 3,
            release_wait: Duration::from_secs(3600),
            ..RouterConfig::default()
        },
        endpoints,
        Some(waker.clone()),
    )
    .await;
    let addr = r.addr;
    let tasks: Vec<_> = (0..50)
        .map(|i| tokio::spawn(async move { get(addr, "h", &format!("/r/{i}")).await }))
        .collect();
    wait_until("50 held requests", || {
        r.router.activity("sleepy").is_some_and(|a| a.held == 50)
    })
    .await;
    waker.go.add_permits(1);
    for (i, t) in tasks.into_iter().enumerate() {
        let g = t.await.unwrap();
        assert_eq!(g.status, 200, "request {i}: {}", g.body);
        assert_eq!(g.field("path"), format!("/r/{i}"));
    }
    let started = waker.started.lock().unwrap();
    assert_eq!(started[0].served.load(SeqCst), 50);
    let conns = started[0].accepted.load(SeqCst);
    assert!(
        (1..=3).contains(&conns),
        "50 released requests opened {conns} upstream connections"
    );
}

/// Accepts the wake but never becomes ready.
struct NeverReady(AtomicUsize);

#[async_trait::async_trait]
impl ServiceWaker for NeverReady {
    async fn wake(&self, _service: &str) -> Result<(), WakeError> {
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_and_deadline_get_503_with_retry_after() {
    let cfg = RouterConfig {
        max_held_per_service: 5,
        hold_timeout: Duration::from_secs(3),
        ..RouterConfig::default()
    };
    let waker = Arc::new(NeverReady(AtomicUsize::new(0)));
    let r = TestRouter::start_with(
        RouteTable::new().with(Route::to_service("/", "sleepy", 3000)),
        cfg,
        StaticEndpoints::new(),
        Some(waker.clone()),
    )
    .await;
    let addr = r.addr;
    let held: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(addr, "h", "/").await }))
        .collect();
    wait_until("5 held requests", || {
        r.router.activity("sleepy").is_some_and(|a| a.held == 5)
    })
    .await;
    // The queue is full: the sixth is refused at once, before the others time out.
    let over = get(addr, "h", "/").await;
    assert_eq!(over.status, 503);
    assert_eq!(over.headers.get("retry-after").unwrap(), "5");
    assert!(over.body.contains("too many waiting"), "{}", over.body);
    assert_eq!(
        r.router.activity("sleepy").unwrap().held,
        5,
        "overflow answered while the queue was still full"
    );
    for t in held {
        let g = t.await.unwrap();
        assert_eq!(g.status, 503);
        assert_eq!(g.headers.get("retry-after").unwrap(), "5");
        assert!(g.body.contains("starting"), "{}", g.body);
    }
    assert_eq!(waker.0.load(SeqCst), 1);
}

/// Fails every wake after a short while.
struct FailingWake(AtomicUsize);

#[async_trait::async_trait]
impl ServiceWaker for FailingWake {
    async fn wake(&self, _service: &str) -> Result<(), WakeError> {
        self.0.fetch_add(1, SeqCst);
        tokio::task::yield_now().await;
        Err(WakeError("image pull failed: registry unreachable".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_wake_fails_held_requests_at_once_with_502() {
    // A deadline far beyond the test's own bound: a 502 can only come from the failed wake.
    let cfg = RouterConfig {
        hold_timeout: Duration::from_secs(3600),
        ..RouterConfig::default()
    };
    let waker = Arc::new(FailingWake(AtomicUsize::new(0)));
    let r = TestRouter::start_with(
        RouteTable::new().with(Route::to_service("/", "broken", 3000)),
        cfg,
        StaticEndpoints::new(),
        Some(waker.clone()),
    )
    .await;
    let addr = r.addr;
    let tasks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get(addr, "h", "/").await }))
        .collect();
    for t in tasks {
        let g = tokio::time::timeout(DEADLINE, t)
            .await
            .expect("held request not failed promptly")
            .unwrap();
        assert_eq!(g.status, 502);
        assert!(
            g.body.contains("failed to start: image pull failed"),
            "{}",
            g.body
        );
    }
    assert!(waker.0.load(SeqCst) >= 1);
    assert_eq!(r.router.activity("broken").unwrap().held, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_without_waker_gets_503_at_once() {
    for fast in [true, false] {
        let r = TestRouter::start(
            RouteTable::new().with(Route::to_service("/", "down", 3000)),
            RouterConfig {
                hold_timeout: Duration::from_secs(3600),
                fast_http1: fast,
                ..RouterConfig::default()
            },
        )
        .await;
        let mut c = Client::connect(r.addr).await.unwrap();
        for _ in 0..2 {
            // Twice on one connection: the local answer keeps the connection usable.
            let g = tokio::time::timeout(DEADLINE, c.get("h", "/"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(g.status, 503);
            assert_eq!(g.body, "service has no ready instance\n");
            assert!(g.headers.get("retry-after").is_some());
        }
    }
}
