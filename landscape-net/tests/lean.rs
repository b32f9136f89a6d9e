//! The lean HTTP/1.1 path (`RouterConfig::fast_http1`, on by default) and the hyper path must
//! behave the same: keep-alive reuse, both body framings in both directions, pipelining,
//! garbage, upstreams that close early, hop-by-hop headers, big streamed responses.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use landscape_net::{Endpoint, Route, RouteTable, RouterConfig};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A hyper upstream that counts its connections. `/echo` streams the request body back
/// (with `x-req-te`/`x-req-cl` telling the framing it received), `/len?n=N` answers N bytes
/// with a length, `/chunked?n=N` streams N bytes without one, `/hop` answers hop-by-hop
/// headers.
struct Shaper {
    addr: std::net::SocketAddr,
    conns: Arc<AtomicU64>,
    _tasks: JoinSet<()>,
}

fn query_n(req: &Request<Incoming>) -> u64 {
    req.uri()
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// `n` bytes of `b'z'` in 64 KiB frames, no length known up front.
struct Gen {
    left: u64,
    frame: Bytes,
}

impl hyper::body::Body for Gen {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let k = self.left.min(self.frame.len() as u64) as usize;
        self.left -= k as u64;
        Poll::Ready(Some(Ok(Frame::data(self.frame.slice(..k)))))
    }
}

async fn shape(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let h = |k: &str| {
        req.headers()
            .get(k)
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let r = match req.uri().path() {
        "/echo" => {
            let (te, cl) = (h("transfer-encoding"), h("content-length"));
            let mut resp = Response::new(req.into_body().boxed());
            resp.headers_mut().insert("x-req-te", te.parse().unwrap());
            resp.headers_mut().insert("x-req-cl", cl.parse().unwrap());
            resp
        }
        "/len" => Response::new(
            Full::new(Bytes::from(vec![b'x'; query_n(&req) as usize]))
                .map_err(|e| match e {})
                .boxed(),
        ),
        "/chunked" => Response::new(
            Gen {
                left: query_n(&req),
                frame: Bytes::from(vec![b'z'; 64 * 1024]),
            }
            .boxed(),
        ),
        "/hop" => Response::builder()
            .header("connection", "x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-public", "yes")
            .body(
                Full::new(Bytes::from("hop"))
                    .map_err(|e| match e {})
                    .boxed(),
            )
            .unwrap(),
        _ => Response::new(Full::new(Bytes::from("ok")).map_err(|e| match e {}).boxed()),
    };
    Ok(r)
}

impl Shaper {
    async fn start() -> Shaper {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let c = conns.clone();
        tasks.spawn(async move {
            let mut set = JoinSet::new();
            while let Ok((s, _)) = l.accept().await {
                c.fetch_add(1, SeqCst);
                set.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), service_fn(shape))
                        .await;
                });
                while set.try_join_next().is_some() {}
            }
        });
        Shaper {
            addr,
            conns,
            _tasks: tasks,
        }
    }
}

/// A raw upstream that misbehaves: for each connection it reads one request head and then
/// `/midway`: promises 1000 bytes, sends 10, closes; `/nothing`: closes without a word;
/// `/once`: answers `ok` keeping the connection "alive", then closes it anyway.
struct Broken {
    addr: std::net::SocketAddr,
    closed: Arc<AtomicU64>,
    _tasks: JoinSet<()>,
}

impl Broken {
    async fn start() -> Broken {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let closed = Arc::new(AtomicU64::new(0));
        let c = closed.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut set = JoinSet::new();
            while let Ok((mut s, _)) = l.accept().await {
                let c = c.clone();
                set.spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&b[..n]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    if head.starts_with("GET /midway") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                            .await;
                    } else if head.starts_with("GET /once") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                    drop(s);
                    c.fetch_add(1, SeqCst);
                });
                while set.try_join_next().is_some() {}
            }
        });
        Broken {
            addr,
            closed,
            _tasks: tasks,
        }
    }
}

async fn router_to(eps: Vec<Endpoint>, fast: bool) -> TestRouter {
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "svc", 80)),
        RouterConfig {
            fast_http1: fast,
            ..RouterConfig::default()
        },
    )
    .await;
    r.endpoints.set("svc", None, eps);
    r
}

/// A request body of the given frames with no length known up front (sent chunked).
struct Frames(Vec<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(self.0.remove(0)))))
    }
}

async fn send<B>(addr: std::net::SocketAddr, req: Request<B>) -> (Response<()>, Bytes)
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (p, b) = resp.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    (Response::from_parts(p, ()), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_upstream_connection() {
    for fast in [true, false] {
        let up = Shaper::start().await;
        let r = router_to(vec![up.addr.into()], fast).await;
        let mut c = Client::connect(r.addr).await.unwrap();
        for i in 0..20 {
            let g = c.get("h", &format!("/len?n={i}")).await.unwrap();
            assert_eq!(g.status, 200);
            assert_eq!(g.body.len(), i);
        }
        assert_eq!(up.conns.load(SeqCst), 1, "fast_http1={fast}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_with_both_framings() {
    for fast in [true, false] {
        let up = Shaper::start().await;
        let r = router_to(vec![up.addr.into()], fast).await;
        // Content-Length request body, echoed back.
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (resp, got) = send(
            r.addr,
            Request::post("/echo")
                .header("host", "h")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-req-cl"], "300000");
        assert_eq!(got.as_ref(), &body[..], "fast_http1={fast}");
        // Chunked request body, echoed back chunked.
        let frames: Vec<Bytes> = (0..50)
            .map(|i| Bytes::from(format!("frame {i};").repeat(i + 1)))
            .collect();
        let want: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let (resp, got) = send(
            r.addr,
            Request::post("/echo")
                .header("host", "h")
                .body(Frames(frames))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-req-te"], "chunked");
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        assert_eq!(got.as_ref(), &want[..], "fast_http1={fast}");
        // Responses: with a length, chunked, and HEAD (no body, length kept).
        let (resp, got) = send(
            r.addr,
            Request::get("/len?n=70000")
                .header("host", "h")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.headers()["content-length"], "70000");
        assert_eq!(got.len(), 70000);
        let (_, got) = send(
            r.addr,
            Request::get("/chunked?n=200001")
                .header("host", "h")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(got.len(), 200001);
        assert!(got.iter().all(|&b| b == b'z'));
        let (resp, got) = send(
            r.addr,
            Request::head("/len?n=100")
                .header("host", "h")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "100");
        assert!(got.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_removed() {
    for fast in [true, false] {
        let up = Shaper::start().await;
        let r = router_to(vec![up.addr.into()], fast).await;
        let g = get(r.addr, "h", "/hop").await;
        assert_eq!(g.body, "hop");
        assert_eq!(g.headers["x-public"], "yes");
        for gone in ["x-private", "keep-alive", "connection"] {
            assert!(
                !g.headers.contains_key(gone),
                "{gone} kept (fast_http1={fast})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start("svc").await;
    let r = router_to(vec![up.endpoint()], true).await;
    let out = raw(
        r.addr,
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let s = String::from_utf8_lossy(&out);
    assert_eq!(s.matches("HTTP/1.1 200").count(), 3, "{s}");
    let a = s.find("path=/a\n").unwrap();
    let b = s.find("path=/b\nquery=x=1\n").unwrap();
    let c = s.find("path=/c\n").unwrap();
    assert!(a < b && b < c, "{s}");
    // The last one asked to close: the router said so.
    assert!(s
        .rsplit("HTTP/1.1 200")
        .next()
        .unwrap()
        .contains("connection: close"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_good_requests_gets_400_or_close_never_a_panic() {
    let up = Upstream::start("svc").await;
    let r = router_to(vec![up.endpoint()], true).await;
    let good = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let tails: Vec<&[u8]> = vec![
        b"\x00\x01garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly a few bytes",
        b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nab",
    ];
    for tail in tails {
        let mut input = good.clone();
        input.extend_from_slice(tail);
        // Half-close after sending, so that a router waiting for more body bytes sees EOF.
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(&input).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
            .await
            .expect("the router kept the connection open")
            .ok();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let rest = &text["HTTP/1.1 200".len()..];
        let second = rest.find("HTTP/1.1 ").map(|i| &rest[i..]);
        assert!(
            second
                .is_none_or(|s| { s.starts_with("HTTP/1.1 400") || s.starts_with("HTTP/1.1 200") }),
            "tail {:?} got {text}",
            String::from_utf8_lossy(tail)
        );
    }
    assert_eq!(
        get(r.addr, "h", "/").await.status,
        200,
        "the router survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_mid_response_closes_the_client_only() {
    for fast in [true, false] {
        let bad = Broken::start().await;
        let r = router_to(vec![bad.addr.into()], fast).await;
        let out = raw(r.addr, b"GET /midway HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let s = String::from_utf8_lossy(&out);
        assert!(s.starts_with("HTTP/1.1 200"), "{s}");
        assert!(s.ends_with("0123456789"), "{s}");
        // Closed without an answer: an idempotent request is retried (here the one endpoint
        // keeps failing: 502), a POST is not retried.
        let g = get(r.addr, "h", "/nothing").await;
        assert_eq!(g.status, 502, "fast_http1={fast}");
        let (resp, _) = send(
            r.addr,
            Request::post("/nothing")
                .header("host", "h")
                .body(Full::new(Bytes::from("x")))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), 502);
        // With a good endpoint next to it, GETs succeed.
        let good = Shaper::start().await;
        r.endpoints
            .set("svc", None, vec![bad.addr.into(), good.addr.into()]);
        for _ in 0..10 {
            assert_eq!(get(r.addr, "h", "/nothing").await.status, 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_by_the_upstream_is_not_used() {
    for fast in [true, false] {
        let bad = Broken::start().await;
        let r = router_to(vec![bad.addr.into()], fast).await;
        let mut c = Client::connect(r.addr).await.unwrap();
        for i in 1..=5 {
            let g = c.get("h", "/once").await.unwrap();
            assert_eq!(
                (g.status, g.body.as_str()),
                (200, "ok"),
                "fast_http1={fast}"
            );
            // The upstream has closed the connection the router just pooled.
            let closed = bad.closed.clone();
            wait_until("upstream closed", || closed.load(SeqCst) >= i).await;
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_chunked_response_streams_with_bounded_memory() {
    // `LANDSCAPE_NET_BIG_BODY_MB` (default 1024) as for the request-body test.
    let total: u64 = std::env::var("LANDSCAPE_NET_BIG_BODY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024u64)
        << 20;
    let up = Shaper::start().await;
    let r = router_to(vec![up.addr.into()], true).await;
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let before = rss_kib();
    let mut peak = before;
    let resp = sender
        .send_request(
            Request::get(format!("/chunked?n={total}"))
                .header("host", "h")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut n, mut frames) = (0u64, 0u64);
    while let Some(f) = body.frame().await {
        if let Some(d) = f.unwrap().data_ref() {
            n += d.len() as u64;
        }
        frames += 1;
        if frames % 256 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    assert_eq!(n, total);
    let growth = peak.saturating_sub(before) / 1024;
    eprintln!("streamed {} MiB; peak RSS growth {growth} MiB", total >> 20);
    assert!(growth < 64, "RSS grew by {growth} MiB");
}
