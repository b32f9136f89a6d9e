//! Behaviour under load and change: upstreams dying, route tables swapping, huge streamed bodies.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::Request;
use hyper_util::rt::TokioIo;
use landscape_net::{Route, RouteTable, RouterConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use tokio::net::TcpStream;

/// Runs `workers` keep-alive clients doing GETs until `stop`; returns (ok, failed, per-server counts).
fn load(
    addr: std::net::SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..workers)
        .map(|w| {
            let stop = stop.clone();
            let ok = ok.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut c = Client::connect(addr).await.unwrap();
                let mut i = 0u64;
                // Bounded: at most 100k requests per worker.
                while !stop.load(SeqCst) && i < 100_000 {
                    i += 1;
                    match c.get("h", &format!("/w{w}/{i}")).await {
                        Ok(g) if g.status == 200 => {
                            ok.fetch_add(1, SeqCst);
                        }
                        Ok(g) => failures.push(format!("status {}: {}", g.status, g.body)),
                        Err(e) => {
                            failures.push(format!("client error: {e}"));
                            c = Client::connect(addr).await.unwrap();
                        }
                    }
                }
                failures
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_under_load_fails_no_idempotent_request() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "svc", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints
        .set("svc", None, vec![a.endpoint(), b.endpoint()]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let workers = load(r.addr, 8, stop.clone(), ok.clone());
    wait_until("traffic on both upstreams", || {
        a.served.load(SeqCst) > 200 && b.served.load(SeqCst) > 200
    })
    .await;
    // Kill `a` mid-traffic: its listener and every open connection, in-flight requests included.
    a.kill();
    let at_kill = ok.load(SeqCst);
    let b_at_kill = b.served.load(SeqCst);
    wait_until("traffic continuing on b", || {
        ok.load(SeqCst) > at_kill + 1000
    })
    .await;
    stop.store(true, SeqCst);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(b.served.load(SeqCst) > b_at_kill + 1000);
    // The kill was felt (failed exchanges or connects) and absorbed by retries.
    assert!(r
        .router
        .metrics_text()
        .contains("landscape_router_upstream_errors_total{service=\"svc\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_swaps_under_load_fail_nothing_and_keep_websockets_open() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let table_a = RouteTable::new().with(Route::to_service("/", "svc-a", 80));
    let table_b = RouteTable::new()
        .with(Route::to_service("/", "svc-b", 80))
        .with(Route::to_service("/extra", "svc-a", 80).strip(true));
    let r = TestRouter::start(table_a.clone(), RouterConfig::default()).await;
    r.endpoints.set("svc-a", None, vec![a.endpoint()]);
    r.endpoints.set("svc-b", None, vec![b.endpoint()]);
    let mut ws = ws_open(r.addr, "h", "/ws").await;
    ws_roundtrip(&mut ws, "before").await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let workers = load(r.addr, 6, stop.clone(), ok.clone());
    for i in 0..200u64 {
        r.router.swap(if i % 2 == 0 {
            table_b.clone()
        } else {
            table_a.clone()
        });
        let target = ok.load(SeqCst) + 5;
        wait_until("requests between swaps", || ok.load(SeqCst) >= target).await;
        if i % 50 == 0 {
            ws_roundtrip(&mut ws, &format!("during {i}")).await;
        }
    }
    stop.store(true, SeqCst);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        a.served.load(SeqCst) > 100 && b.served.load(SeqCst) > 100,
        "both tables served traffic"
    );
    ws_roundtrip(&mut ws, "after").await;
    assert_eq!(r.router.activity("svc-a").unwrap().upgraded, 1);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// The size of the streamed body: `LANDSCAPE_NET_BIG_BODY_MB` (default 1024 = 1 GiB).
fn big_body_bytes() -> u64 {
    std::env::var("LANDSCAPE_NET_BIG_BODY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024u64)
        << 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gigabyte_body_streams_through_with_bounded_memory() {
    let up = Upstream::start("sink").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "sink", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("sink", None, vec![up.endpoint()]);
    let total = big_body_bytes();
    let chunk = Bytes::from(vec![0x5au8; 256 * 1024]);
    let sent = Arc::new(AtomicU64::new(0));
    let received = up.received.clone();
    let overlap = Arc::new(AtomicBool::new(false));
    let rss_before = rss_kib();
    let peak_rss = Arc::new(AtomicU64::new(rss_before));
    let stream = {
        let (sent, received, overlap, peak) = (
            sent.clone(),
            received.clone(),
            overlap.clone(),
            peak_rss.clone(),
        );
        let chunks = total / chunk.len() as u64;
        ChunkBody {
            n: chunks,
            i: 0,
            chunk: chunk.clone(),
            on_chunk: move |i| {
                sent.fetch_add(chunk.len() as u64, SeqCst);
                // Streaming, not buffering: the upstream has bytes while the client is mid-body.
                if i == chunks / 2 && received.load(SeqCst) > 0 {
                    overlap.store(true, SeqCst);
                }
                if i % 64 == 0 {
                    peak.fetch_max(rss_kib(), SeqCst);
                }
            },
        }
    };
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/count")
        .header("host", "h")
        .header("content-length", total.to_string())
        .body(stream)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), format!("count={total}\n"));
    assert!(
        overlap.load(SeqCst),
        "the upstream received nothing until the client had sent half the body"
    );
    let growth_mib = peak_rss.load(SeqCst).saturating_sub(rss_before) / 1024;
    eprintln!(
        "streamed {} MiB; peak RSS growth {growth_mib} MiB",
        total >> 20
    );
    // Client, router and upstream share this process: a buffered body would add `total`.
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB while streaming {} MiB",
        total >> 20
    );
}

/// A request body of `n` frames of `chunk`, calling `on_chunk(i)` before each.
struct ChunkBody<F> {
    n: u64,
    i: u64,
    chunk: Bytes,
    on_chunk: F,
}

impl<F: FnMut(u64) + Unpin> hyper::body::Body for ChunkBody<F> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.i >= this.n {
            return std::task::Poll::Ready(None);
        }
        (this.on_chunk)(this.i);
        this.i += 1;
        std::task::Poll::Ready(Some(Ok(Frame::data(this.chunk.clone()))))
    }
}
