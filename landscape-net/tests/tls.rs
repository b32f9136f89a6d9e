//! HTTPS on the public listener (feature `tls`): ALPN picks HTTP/2 or HTTP/1.1; upstreams stay
//! plain HTTP/1.1 and see `X-Forwarded-Proto: https`. The certificate in `tests/data` is a
//! test-only fixture (a private CA and a `localhost`/127.0.0.1 leaf, valid for 100 years).
#![cfg(feature = "tls")]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use landscape_net::tls::{rustls, server_config};
use landscape_net::{Route, RouteTable, Router, RouterConfig, StaticEndpoints};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

const CA: &[u8] = include_bytes!("data/ca.pem");
const CERT: &[u8] = include_bytes!("data/cert.pem");
const KEY: &[u8] = include_bytes!("data/key.pem");

async fn tls_client(
    addr: std::net::SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(CA) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_h2_and_http11() {
    let backend = Upstream::start("backend").await;
    let endpoints = StaticEndpoints::new();
    endpoints.set("backend", None, vec![backend.endpoint()]);
    let router = Router::builder()
        .config(RouterConfig::default())
        .endpoints(endpoints)
        .build(RouteTable::new().with(Route::to_service("/", "backend", 80)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = server_config(CERT, KEY).unwrap();
    let r = router.clone();
    let task =
        tokio::spawn(async move { r.serve_tls(listener, cfg, std::future::pending()).await });

    // HTTP/2 negotiated by ALPN.
    let tls = tls_client(addr, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = h2
        .send_request(
            Request::get("https://localhost/x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        body.contains("xfp=https\n") && body.contains("path=/x\n"),
        "{body}"
    );

    // HTTP/1.1 negotiated by ALPN.
    let tls = tls_client(addr, b"http/1.1").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = h1
        .send_request(
            Request::get("/y")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        body.contains("xfp=https\n") && body.contains("path=/y\n"),
        "{body}"
    );
    task.abort();
}

#[test]
fn bad_tls_material_is_reported() {
    let e = server_config(b"not pem", KEY).unwrap_err().to_string();
    assert!(e.contains("certificate chain"), "{e}");
    let e = server_config(
        CERT,
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("key"), "{e}");
}
