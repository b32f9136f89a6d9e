//! gRPC through the router: an HTTP/2 client's gRPC call reaches the service over h2c with
//! `te: trailers`, and the response trailers (`grpc-status`) come back; other HTTP/2
//! requests still go upstream over HTTP/1.1; with `grpc_h2c` off, gRPC goes over HTTP/1.1.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use landscape_net::{Route, RouteTable, RouterConfig};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream saw of one request: its HTTP version and its `te` header.
type Seen = Arc<Mutex<Vec<(hyper::Version, Option<String>)>>>;

/// An upstream speaking HTTP/1.1 and h2c (prior knowledge) that answers a gRPC-shaped
/// response: the request body echoed, then trailers `grpc-status: 0`, `grpc-message: echoed`.
async fn grpc_upstream() -> (std::net::SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let te = req
                            .headers()
                            .get("te")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        s.lock().unwrap().push((req.version(), te));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("grpc-message", "echoed".parse().unwrap());
                        let resp = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(GrpcBody {
                                data: Some(body),
                                trailers: Some(trailers),
                            })
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A response body of one data frame and then trailers, as a gRPC server sends.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let f = match self.data.take() {
            Some(d) => Some(Ok(Frame::data(d))),
            None => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
        };
        std::task::Poll::Ready(f)
    }
}

/// One HTTP/2 (prior knowledge) request through the router; the response status, body and
/// trailers.
async fn h2_call(
    router: std::net::SocketAddr,
    content_type: &str,
    body: &'static [u8],
) -> (u16, Bytes, Option<http::HeaderMap>) {
    let io = TcpStream::connect(router).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://svc.test/echo.Echo/Say")
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes(), trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_goes_upstream_over_h2c_with_trailers_back() {
    let (up, seen) = grpc_upstream().await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "svc", 50051)),
        RouterConfig::default(),
    )
    .await;
    r.endpoints.set("svc", None, vec![up.into()]);
    for i in 0..3 {
        let (status, body, trailers) = h2_call(r.addr, "application/grpc", b"\0\0\0\0\x02hi").await;
        assert_eq!(status, 200, "call {i}");
        assert_eq!(&body[..], b"\0\0\0\0\x02hi");
        let t = trailers.expect("trailers reach the client");
        assert_eq!(t.get("grpc-status").unwrap(), "0");
        assert_eq!(t.get("grpc-message").unwrap(), "echoed");
    }
    // A plain HTTP/2 request still goes over HTTP/1.1.
    let (status, body, _) = h2_call(r.addr, "application/json", b"{}").await;
    assert_eq!((status, &body[..]), (200, &b"{}"[..]));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (v, te) in &seen[..3] {
        assert_eq!(*v, hyper::Version::HTTP_2);
        assert_eq!(te.as_deref(), Some("trailers"));
    }
    assert_eq!(seen[3].0, hyper::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_h2c_can_be_turned_off() {
    let (up, seen) = grpc_upstream().await;
    let r = TestRouter::start(
        RouteTable::new().with(Route::to_service("/", "svc", 50051)),
        RouterConfig {
            grpc_h2c: false,
            ..RouterConfig::default()
        },
    )
    .await;
    r.endpoints.set("svc", None, vec![up.into()]);
    let (status, _, _) = h2_call(r.addr, "application/grpc", b"x").await;
    assert_eq!(status, 200);
    assert_eq!(seen.lock().unwrap()[0].0, hyper::Version::HTTP_11);
}
