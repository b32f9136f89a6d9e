//! `https://` headless targets: a real TLS upstream on 127.0.0.1 (the test CA and
//! `localhost`/127.0.0.1 leaf of `tests/data`), reached through the router over HTTP/2 or
//! HTTP/1.1 as the upstream's ALPN decides; untrusted or wrong-name certificates → 502 with the
//! reason, nothing forwarded. Without the `tls` feature such a target answers 502 naming it.

mod common;

use common::*;
use landscape_net::{Route, RouteTable, Router};
use tokio::net::TcpListener;

/// Serves `router` on 127.0.0.1:0 until the returned task is aborted.
async fn serve(router: &Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = router.clone();
    let task = tokio::spawn(async move {
        let _ = r.serve(listener, std::future::pending()).await;
    });
    (addr, task)
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn https_target_without_tls_feature_is_a_clear_502() {
    let table =
        RouteTable::new().with(Route::to_target("/ext", "https://127.0.0.1:9/base").unwrap());
    let router = Router::builder().build(table);
    let (addr, task) = serve(&router).await;
    let got = get(addr, "a.example", "/ext/x").await;
    assert_eq!(got.status, 502);
    assert!(got.body.contains("`tls` feature"), "{}", got.body);
    task.abort();
}

#[cfg(feature = "tls")]
mod with_tls {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Request;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use landscape_net::tls::{client_config, roots_from_pem, rustls, server_config};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use tokio::task::JoinSet;

    const CA: &[u8] = include_bytes!("data/ca.pem");
    const CERT: &[u8] = include_bytes!("data/cert.pem");
    const KEY: &[u8] = include_bytes!("data/key.pem");

    /// A TLS upstream (the `localhost`/127.0.0.1 test certificate) that describes each request
    /// it gets, including the SNI the client sent.
    struct TlsUpstream {
        port: u16,
        /// TCP connections accepted.
        accepted: Arc<AtomicU64>,
        /// TLS handshakes completed.
        handshakes: Arc<AtomicU64>,
        /// Requests answered.
        served: Arc<AtomicU64>,
        tasks: JoinSet<()>,
    }

    impl TlsUpstream {
        async fn start(ip: &str, alpn: &[&[u8]]) -> TlsUpstream {
            let listener = TcpListener::bind((ip, 0)).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let cfg = server_config(CERT, KEY).unwrap();
            let mut cfg = (*cfg).clone();
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            let accepted = Arc::new(AtomicU64::new(0));
            let handshakes = Arc::new(AtomicU64::new(0));
            let served = Arc::new(AtomicU64::new(0));
            let mut tasks = JoinSet::new();
            let (a, h, s) = (accepted.clone(), handshakes.clone(), served.clone());
            tasks.spawn(async move {
                let mut conns = JoinSet::new();
                while let Ok((tcp, _)) = listener.accept().await {
                    a.fetch_add(1, SeqCst);
                    let (acceptor, h, s) = (acceptor.clone(), h.clone(), s.clone());
                    conns.spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        h.fetch_add(1, SeqCst);
                        let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                        let svc = service_fn(move |req| describe(req, sni.clone(), s.clone()));
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    });
                    while conns.try_join_next().is_some() {}
                }
            });
            TlsUpstream {
                port,
                accepted,
                handshakes,
                served,
                tasks,
            }
        }
    }

    impl Drop for TlsUpstream {
        fn drop(&mut self) {
            self.tasks.abort_all();
        }
    }

    async fn describe(
        req: Request<Incoming>,
        sni: String,
        served: Arc<AtomicU64>,
    ) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
        served.fetch_add(1, SeqCst);
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let h = |k: &str| {
            parts
                .headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        // HTTP/1.1 carries the host in `Host`, HTTP/2 in `:authority`.
        let host = match parts.uri.authority() {
            Some(a) => a.to_string(),
            None => h("host"),
        };
        let text = format!(
            "method={}\npath={}\nquery={}\nversion={:?}\nhost={}\nsni={}\nbody_len={}\nbody_sum={}\nxfp={}\nxfh={}\n",
            parts.method,
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            parts.version,
            host,
            sni,
            body.len(),
            body.iter().map(|b| *b as u64).sum::<u64>(),
            h("x-forwarded-proto"),
            h("x-forwarded-host"),
        );
        Ok(hyper::Response::new(Full::new(Bytes::from(text))))
    }

    /// A router that trusts only the test CA, with `/ext` → `url` (prefix stripped).
    fn router_trusting_test_ca(url: &str) -> Router {
        let mut roots = rustls::RootCertStore::empty();
        for c in roots_from_pem(CA).unwrap() {
            roots.add(c).unwrap();
        }
        Router::builder()
            .upstream_tls(client_config(roots).unwrap())
            .build(RouteTable::new().with(Route::to_target("/ext", url).unwrap().strip(true)))
    }

    fn post(path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
        Request::post(path)
            .header("host", "public.example")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_target_over_h2_get_post_sni_host_and_one_shared_connection() {
        let up = TlsUpstream::start("127.0.0.1", &[b"h2", b"http/1.1"]).await;
        let router = router_trusting_test_ca(&format!("https://localhost:{}/base/", up.port));
        let (addr, task) = serve(&router).await;

        // GET: base path joined with the stripped path, query kept; SNI and authority are
        // the target's, the client's host goes to X-Forwarded-Host.
        let got = get(addr, "public.example", "/ext/a/b?q=1").await;
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.field("version"), "HTTP/2.0");
        assert_eq!(got.field("method"), "GET");
        assert_eq!(got.field("path"), "/base/a/b");
        assert_eq!(got.field("query"), "q=1");
        assert_eq!(got.field("host"), format!("localhost:{}", up.port));
        assert_eq!(got.field("sni"), "localhost");
        assert_eq!(got.field("xfp"), "http");
        assert_eq!(got.field("xfh"), "public.example");

        // POST with a body (256 KiB, more than one HTTP/2 flow-control window).
        let body: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let sum: u64 = body.iter().map(|b| *b as u64).sum();
        let mut c = Client::connect(addr).await.unwrap();
        let got = c.request(post("/ext/upload", body)).await.unwrap();
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.field("method"), "POST");
        assert_eq!(got.field("path"), "/base/upload");
        assert_eq!(got.field("body_len"), (256 * 1024).to_string());
        assert_eq!(got.field("body_sum"), sum.to_string());

        // Concurrent requests share the one HTTP/2 connection.
        let mut set = JoinSet::new();
        for i in 0..20 {
            set.spawn(async move { get(addr, "public.example", &format!("/ext/c{i}")).await });
        }
        while let Some(r) = set.join_next().await {
            let got = r.unwrap();
            assert_eq!(got.status, 200, "{}", got.body);
            assert_eq!(got.field("version"), "HTTP/2.0");
        }
        assert_eq!(up.served.load(SeqCst), 22);
        assert_eq!(up.handshakes.load(SeqCst), 1, "one multiplexed connection");
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_target_over_http11_when_the_server_does_not_offer_h2() {
        let up = TlsUpstream::start("127.0.0.1", &[b"http/1.1"]).await;
        let router = router_trusting_test_ca(&format!("https://127.0.0.1:{}", up.port));
        let (addr, task) = serve(&router).await;
        let mut c = Client::connect(addr).await.unwrap();
        for i in 0..10 {
            let got = c
                .get("public.example", &format!("/ext/x{i}"))
                .await
                .unwrap();
            assert_eq!(got.status, 200, "{}", got.body);
            assert_eq!(got.field("version"), "HTTP/1.1");
            assert_eq!(got.field("path"), format!("/x{i}"));
            assert_eq!(got.field("host"), format!("127.0.0.1:{}", up.port));
            // An IP address is verified against the certificate's IP SAN; no SNI is sent.
            assert_eq!(got.field("sni"), "-");
        }
        let got = c.request(post("/ext/p", vec![7u8; 70_000])).await.unwrap();
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.field("version"), "HTTP/1.1");
        assert_eq!(got.field("body_len"), "70000");
        assert_eq!(got.field("body_sum"), (7 * 70_000).to_string());
        assert_eq!(up.served.load(SeqCst), 11);
        assert_eq!(
            up.handshakes.load(SeqCst),
            1,
            "sequential requests reuse the pooled connection"
        );
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn untrusted_certificate_is_502_with_the_reason_and_nothing_is_forwarded() {
        let up = TlsUpstream::start("127.0.0.1", &[b"h2", b"http/1.1"]).await;
        // Default client configuration: the system's roots, which do not know the test CA.
        let router = Router::builder()
            .build(RouteTable::new().with(
                Route::to_target("/ext", &format!("https://localhost:{}", up.port)).unwrap(),
            ));
        let (addr, task) = serve(&router).await;
        let mut c = Client::connect(addr).await.unwrap();
        for req in [
            Request::get("/ext/x")
                .header("host", "public.example")
                .body(Full::new(Bytes::new()))
                .unwrap(),
            post("/ext/y", b"secret body".to_vec()),
        ] {
            let got = c.request(req).await.unwrap();
            assert_eq!(got.status, 502, "{}", got.body);
            assert!(
                got.body.contains("TLS") && got.body.contains("UnknownIssuer"),
                "{}",
                got.body
            );
        }
        assert!(up.accepted.load(SeqCst) >= 1, "the router did connect");
        assert_eq!(up.handshakes.load(SeqCst), 0);
        assert_eq!(up.served.load(SeqCst), 0, "nothing was forwarded");
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn certificate_for_another_name_is_502_and_nothing_is_forwarded() {
        // The certificate is for localhost and 127.0.0.1; the target is 127.0.0.2.
        let up = TlsUpstream::start("127.0.0.2", &[b"h2", b"http/1.1"]).await;
        let router = router_trusting_test_ca(&format!("https://127.0.0.2:{}", up.port));
        let (addr, task) = serve(&router).await;
        let got = get(addr, "public.example", "/ext/x").await;
        assert_eq!(got.status, 502, "{}", got.body);
        assert!(
            got.body.contains("TLS") && got.body.contains("not valid for name"),
            "{}",
            got.body
        );
        assert_eq!(up.served.load(SeqCst), 0, "nothing was forwarded");
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_target_that_refuses_connections_is_502() {
        // A port with nothing listening (bound, then closed).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let router = router_trusting_test_ca(&format!("https://localhost:{port}"));
        let (addr, task) = serve(&router).await;
        let got = get(addr, "public.example", "/ext/x").await;
        assert_eq!(got.status, 502, "{}", got.body);
        assert!(got.body.contains("connection failed"), "{}", got.body);
        task.abort();
    }
}
