//! Hold overhead benchmark (run by `benches/router-hold.sh`): how long after a sleeping
//! service's endpoint becomes ready do the held requests get their responses?
//!
//! Each round: the service has no endpoint; `HELD` clients send a request each (all held);
//! then the endpoint is published at T0, and every client records when its response headers
//! arrive. Prints the distribution of (arrival - T0) over all rounds:
//! `hold_ready_to_response_ms p50=<x> p99=<y> max=<z> n=<n> upstream_conns_per_round=<c>`.
//! Every round is a real cold start: a new upstream listener (a new instance), so the router
//! has no idle connection to it; also printed: new upstream connections per round.
//! Client, router and upstream share one process, so the figure is an upper bound.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use landscape_net::{
    Route, RouteTable, Router, RouterConfig, ServiceWaker, StaticEndpoints, WakeError,
};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

struct NoopWake;

#[async_trait::async_trait]
impl ServiceWaker for NoopWake {
    async fn wake(&self, _service: &str) -> Result<(), WakeError> {
        Ok(())
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A new upstream on 127.0.0.1:0 that answers every request with a small body.
async fn start_upstream(
    accepted: Arc<AtomicUsize>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let up = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = up.local_addr().expect("upstream addr");
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = up.accept().await {
            accepted.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

fn main() {
    let rounds = env("ROUNDS", 30);
    let held = env("HELD", 50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        // Upstream connections accepted over all rounds.
        let accepted = Arc::new(AtomicUsize::new(0));
        let endpoints = StaticEndpoints::new();
        let config = RouterConfig {
            hold_timeout: Duration::from_secs(60),
            ..RouterConfig::default()
        };
        let router = Router::builder()
            .config(config)
            .endpoints(endpoints.clone())
            .waker(Arc::new(NoopWake))
            .build(RouteTable::new().with(Route::to_service("/", "sleepy", 3000)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let addr = listener.local_addr().expect("router addr");
        let r = router.clone();
        tokio::spawn(async move { r.serve(listener, std::future::pending()).await });

        let mut samples: Vec<f64> = Vec::new();
        for _ in 0..rounds {
            endpoints.set("sleepy", None, vec![]);
            // Each cold start is a new instance: a new upstream listener (so the router has
            // no idle connection to it).
            let (up_addr, upstream) = start_upstream(accepted.clone()).await;
            let mut clients = Vec::new();
            for _ in 0..held {
                clients.push(tokio::spawn(async move {
                    let s = TcpStream::connect(addr).await.expect("connect");
                    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                        .await
                        .expect("handshake");
                    tokio::spawn(conn);
                    let req = hyper::Request::get("/")
                        .header("host", "x")
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let resp = tx.send_request(req).await.expect("response");
                    let at = Instant::now();
                    assert_eq!(resp.status(), 200);
                    let _ = resp.into_body().collect().await;
                    at
                }));
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while router.activity("sleepy").map(|a| a.held).unwrap_or(0) < held {
                assert!(Instant::now() < deadline, "requests were not held");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let t0 = Instant::now();
            endpoints.set("sleepy", None, vec![up_addr.into()]);
            for c in clients {
                let at = c.await.expect("client task");
                samples.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
            upstream.abort();
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "hold_ready_to_response_ms p50={:.3} p99={:.3} max={:.3} n={} upstream_conns_per_round={:.1}",
            pct(0.5),
            pct(0.99),
            samples[samples.len() - 1],
            samples.len(),
            accepted.load(Relaxed) as f64 / rounds as f64
        );
    });
}
