//! Routing semantics, protocols and limits, through real sockets on 127.0.0.1 against real
//! upstream servers started by the test.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use landscape_net::{Backend, Route, RouteTable, RouterConfig};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_strip_host_and_headless_semantics() {
    let backend = Upstream::start("backend").await;
    let frontend = Upstream::start("frontend").await;
    let public = Upstream::start("public").await;
    let external = Upstream::start("external").await;
    let table = RouteTable::new()
        .with(Route::to_service("/", "frontend", 3000))
        .with(Route::to_service("/api", "backend", 8080).strip(true))
        .with(Route::to_service("/keep", "backend", 8080))
        .with(
            Route::to_target("/ext", &format!("http://{}/base", external.addr))
                .unwrap()
                .strip(true),
        )
        .with_host(
            "ws1-9000-public.dev.example",
            Route::to_service("/", "public", 9000),
        );
    let r = TestRouter::start(table, RouterConfig::default()).await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    r.endpoints.set("frontend", None, vec![frontend.endpoint()]);
    r.endpoints.set("public", None, vec![public.endpoint()]);

    let mut c = Client::connect(r.addr).await.unwrap();
    // Segment-aware prefix + strip keeps a leading slash.
    let g = c.get("app.example", "/api/v1/items?x=1").await.unwrap();
    assert_eq!(
        (
            g.status,
            g.field("server"),
            g.field("path"),
            g.field("query")
        ),
        (200, "backend".into(), "/v1/items".into(), "x=1".into())
    );
    let g = c.get("app.example", "/api").await.unwrap();
    assert_eq!(
        (g.field("server"), g.field("path")),
        ("backend".into(), "/".into())
    );
    // `/apix` is not under `/api`.
    let g = c.get("app.example", "/apix").await.unwrap();
    assert_eq!(
        (g.field("server"), g.field("path")),
        ("frontend".into(), "/apix".into())
    );
    // Without strip the path is kept.
    let g = c.get("app.example", "/keep/a").await.unwrap();
    assert_eq!(
        (g.field("server"), g.field("path")),
        ("backend".into(), "/keep/a".into())
    );
    // Host routes for public ports, case-insensitive, port ignored.
    let g = c
        .get("WS1-9000-public.dev.example:8443", "/p")
        .await
        .unwrap();
    assert_eq!(
        (g.field("server"), g.field("path")),
        ("public".into(), "/p".into())
    );
    // Headless target: base path prepended, Host rewritten to the target.
    let g = c.get("app.example", "/ext/x").await.unwrap();
    assert_eq!(
        (g.field("server"), g.field("path")),
        ("external".into(), "/base/x".into())
    );
    assert_eq!(g.field("host"), external.addr.to_string());
    // Forwarded headers and hop-by-hop removal (including headers named in Connection).
    let req = Request::get("/api/h")
        .header("host", "app.example")
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "x-secret")
        .header("x-secret", "leak")
        .header("keep-alive", "timeout=5")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let g = c.request(req).await.unwrap();
    assert_eq!(g.field("xff"), "203.0.113.7, 127.0.0.1");
    assert_eq!(g.field("xfp"), "http");
    assert_eq!(g.field("xfh"), "app.example");
    assert_eq!(g.field("x-secret"), "");
    assert_eq!(g.field("keep-alive"), "");
    assert_eq!(g.field("host"), "app.example");

    // Unknown route: 404 with a body that names no internals.
    let t = RouteTable::new().with(Route::to_service("/api", "backend", 8080));
    r.router.swap(t);
    let g = c.get("app.example", "/nothing").await.unwrap();
    assert_eq!(g.status, 404);
    assert!(
        !g.body.contains("backend") && !g.body.contains("8080") && !g.body.contains("127.0.0.1"),
        "{}",
        g.body
    );

    // The admin metrics count requests by route and status.
    let text = r.router.metrics_text();
    assert!(
        text.contains(
            r#"landscape_router_requests_total{route="backend:8080/api",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"landscape_router_requests_total{route="",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("landscape_router_request_duration_seconds_count"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_metrics_and_activity() {
    let backend = Upstream::start("backend").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let router = r.router.clone();
    let task = tokio::spawn(async move { router.serve_admin(admin, std::future::pending()).await });
    assert_eq!(get(r.addr, "h", "/").await.status, 200);
    let m = get(admin_addr, "admin", "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains(r#"landscape_router_requests_total{route="backend:80/",status="200"} 1"#),
        "{}",
        m.body
    );
    let a = get(admin_addr, "admin", "/activity").await;
    assert!(
        a.body.lines().any(|l| l.starts_with("backend ")),
        "{}",
        a.body
    );
    let act = r.router.activity("backend").unwrap();
    assert!(act.last_request_unix_ms > 0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_router_counts_as_activity() {
    let backend = Upstream::start("backend").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let mut ws = ws_open(r.addr, "h", "/ws").await;
    for i in 0..20 {
        ws_roundtrip(&mut ws, &format!("hello {i}")).await;
    }
    let act = r.router.activity("backend").unwrap();
    assert_eq!(act.upgraded, 1, "an open WebSocket counts as activity");
    assert!(act.is_active());
    ws.write_all(&frame(8, b"", true)).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, ws.read_to_end(&mut rest)).await;
    drop(ws);
    wait_until("upgraded count back to 0", || {
        r.router.activity("backend").unwrap().upgraded == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_multiplexes_to_http1_upstreams() {
    let backend = Upstream::start("backend").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/api", "backend", 80).strip(true)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::post(format!("http://app.example/api/item/{i}"))
                .body(Full::new(Bytes::from(vec![b'x'; 1000])))
                .unwrap();
            sender.ready().await.unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let status = resp.status().as_u16();
            let body = String::from_utf8(
                resp.into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap();
            (i, status, body)
        }));
    }
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("path=/item/{i}\n")), "{body}");
        assert!(body.contains("version=HTTP/1.1\n"), "{body}");
        assert!(body.contains("host=app.example\n"), "{body}");
        assert!(body.contains("xfh=app.example\n"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_renormalises_over_ready_backends() {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let off = Upstream::start("off").await;
    let table = RouteTable::new().with(Route::split(
        "/",
        vec![
            Backend::new("blue", 80).weighted(3),
            Backend::new("green", 80).weighted(1),
            Backend::new("off", 80).weighted(0),
        ],
    ));
    let r = TestRouter::start(table, RouterConfig::default()).await;
    r.endpoints.set("blue", None, vec![blue.endpoint()]);
    r.endpoints.set("green", None, vec![green.endpoint()]);
    r.endpoints.set("off", None, vec![off.endpoint()]);
    let mut c = Client::connect(r.addr).await.unwrap();
    let mut counts = std::collections::HashMap::<String, u32>::new();
    for _ in 0..400 {
        *counts
            .entry(c.get("h", "/").await.unwrap().field("server"))
            .or_default() += 1;
    }
    assert_eq!(
        counts.get("off"),
        None,
        "weight 0 gets no traffic: {counts:?}"
    );
    let (b, g) = (counts["blue"], counts["green"]);
    assert!(
        b > g,
        "blue (weight 3) should get more than green (weight 1): {counts:?}"
    );
    // Blue loses its endpoints: all traffic goes to green.
    r.endpoints.set("blue", None, vec![]);
    for _ in 0..50 {
        assert_eq!(c.get("h", "/").await.unwrap().field("server"), "green");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_ejected_and_requests_retry_elsewhere() {
    let live = Upstream::start("live").await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "svc", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints
        .set("svc", None, vec![dead.into(), live.endpoint()]);
    let mut c = Client::connect(r.addr).await.unwrap();
    for _ in 0..100 {
        let g = c.get("h", "/").await.unwrap();
        assert_eq!((g.status, g.field("server")), (200, "live".to_string()));
    }
    let text = r.router.metrics_text();
    // Ejection: the dead endpoint was tried a handful of times, not once per request.
    let errors: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"landscape_router_upstream_errors_total{service="svc"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (1..10).contains(&errors),
        "expected a few connect errors, got {errors}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_client_is_cut_off() {
    let backend = Upstream::start("backend").await;
    let cfg = RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        cfg,
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    // Sends half a request head and then nothing.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let res = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(res.is_ok(), "the router kept a slow-header client open");
    // A client that connects and sends nothing at all is cut off too.
    let mut s2 = TcpStream::connect(r.addr).await.unwrap();
    let res = tokio::time::timeout(DEADLINE, s2.read_to_end(&mut buf)).await;
    assert!(res.is_ok(), "the router kept a silent client open");
    // The router still serves.
    assert_eq!(get(r.addr, "h", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_headers_get_431() {
    let backend = Upstream::start("backend").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let big = "a".repeat(100 * 1024);
    let out = raw(
        r.addr,
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );
    assert_eq!(backend.served.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_gets_400_or_close_never_a_panic() {
    let backend = Upstream::start("backend").await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03garbage\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
    ];
    // Pseudo-random bytes (fixed seed).
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..20 {
        let v: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        inputs.push(v);
    }
    for input in inputs {
        let out = raw(r.addr, &input).await;
        let s = String::from_utf8_lossy(&out);
        // An h2 preface followed by junk gets the server's SETTINGS frame, then GOAWAY and close.
        let h2_goaway =
            out.len() >= 9 && out[3] == 0x4 && out.windows(2).any(|w| w == [0x07, 0x00]);
        assert!(
            out.is_empty()
                || h2_goaway
                || s.starts_with("HTTP/1.1 400")
                || s.starts_with("HTTP/1.1 501")
                || s.starts_with("HTTP/1.1 505")
                || s.starts_with("HTTP/1.1 200"),
            "input {:?} got {s}",
            String::from_utf8_lossy(&input)
        );
    }
    assert_eq!(
        get(r.addr, "h", "/").await.status,
        200,
        "the router survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let backend = Upstream::start("backend").await;
    let mut r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let addr = r.addr;
    let slow = tokio::spawn(async move { get(addr, "h", "/slow?ms=500").await });
    wait_until("request in flight", || {
        r.router
            .activity("backend")
            .is_some_and(|a| a.in_flight == 1)
    })
    .await;
    r.shutdown();
    let g = slow.await.unwrap();
    assert_eq!((g.status, g.field("server")), (200, "backend".to_string()));
    let task = r.task.take().unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}

/// Records the endpoints it connects to and delegates to plain TCP (the runtime's connector
/// hands over sockets from a network namespace instead).
struct CountingConnector(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl landscape_net::Connector for CountingConnector {
    async fn connect(&self, ep: &landscape_net::Endpoint) -> std::io::Result<landscape_net::BoxIo> {
        self.0.lock().unwrap().push(ep.authority().to_string());
        landscape_net::TcpConnector.connect(ep).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_use_the_connector_and_targets_plain_tcp() {
    let svc = Upstream::start("svc").await;
    let external = Upstream::start("external").await;
    let connector = std::sync::Arc::new(CountingConnector(Default::default()));
    let endpoints = landscape_net::StaticEndpoints::new();
    endpoints.set("svc", None, vec![svc.endpoint()]);
    let router = landscape_net::Router::builder()
        .endpoints(endpoints)
        .connector(connector.clone())
        .build(
            RouteTable::new()
                .with(Route::to_service("/", "svc", 80))
                .with(Route::to_target("/ext", &format!("http://{}", external.addr)).unwrap()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = router.clone();
    let task = tokio::spawn(async move { r.serve(listener, std::future::pending()).await });
    let mut c = Client::connect(addr).await.unwrap();
    for _ in 0..10 {
        assert_eq!(c.get("h", "/a").await.unwrap().field("server"), "svc");
        assert_eq!(
            c.get("h", "/ext/b").await.unwrap().field("server"),
            "external"
        );
    }
    // Service connections go through the connector; the target never does.
    let seen = connector.0.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| *a == svc.addr.to_string()),
        "{seen:?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_what_outlives_the_drain_deadline() {
    let backend = Upstream::start("backend").await;
    let cfg = RouterConfig {
        drain_timeout: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    let mut r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "backend", 80)),
        cfg,
    )
    .await;
    r.endpoints.set("backend", None, vec![backend.endpoint()]);
    let addr = r.addr;
    // Far longer than the test's own bound: only the drain deadline can end it.
    let stuck = tokio::spawn(async move {
        let mut c = Client::connect(addr).await.unwrap();
        c.get("h", "/slow?ms=3600000").await
    });
    wait_until("request in flight", || {
        r.router
            .activity("backend")
            .is_some_and(|a| a.in_flight == 1)
    })
    .await;
    r.shutdown();
    let task = r.task.take().unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("serve did not return after the drain deadline")
        .unwrap()
        .unwrap();
    let res = tokio::time::timeout(DEADLINE, stuck)
        .await
        .expect("client still waiting")
        .unwrap();
    assert!(
        res.is_err(),
        "the stuck request should have been cut off: {res:?}"
    );
}

/// `upstream_errors_total` counts failed connects and exchanges, once each: a request whose
/// only endpoint refuses the connection is one error (not one more for the 502 it ends in),
/// and a route with no endpoint at all (503) is none. Both HTTP/1.1 paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_counted_once_per_failed_attempt() {
    for fast_http1 in [true, false] {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let r = TestRouter::start(
            RouteTable::new()
                .with(Route::to_service("/dead", "dead", 80))
                .with(Route::to_service("/none", "none", 80)),
            RouterConfig {
                fast_http1,
                ..RouterConfig::default()
            },
        )
        .await;
        r.endpoints.set("dead", None, vec![dead.into()]);
        r.endpoints.set("none", None, vec![]);
        let count = |service: &str| -> u64 {
            let prefix =
                format!("landscape_router_upstream_errors_total{{service=\"{service}\"}} ");
            r.router
                .metrics_text()
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
                .map_or(0, |v| v.parse().unwrap())
        };
        let mut c = Client::connect(r.addr).await.unwrap();
        assert_eq!(c.get("h", "/dead").await.unwrap().status, 502);
        assert_eq!(count("dead"), 1, "fast_http1={fast_http1}");
        let mut c = Client::connect(r.addr).await.unwrap();
        assert_eq!(c.get("h", "/none").await.unwrap().status, 503);
        assert_eq!(count("none"), 0, "fast_http1={fast_http1}");
    }
}
