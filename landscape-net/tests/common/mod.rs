//! Helpers for the router tests: real upstream HTTP servers on 127.0.0.1:0 (hyper), a router
//! on 127.0.0.1:0, and small real clients.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use landscape_net::{RouteTable, Router, RouterConfig, StaticEndpoints};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Upper bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A real HTTP/1.1 upstream. Responds with a description of the request it received;
/// `/ws` upgrades and echoes WebSocket frames; `/count` counts the request body; `/slow?ms=N`
/// waits before answering.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    /// Body bytes received by `/count` so far (live, while streaming).
    pub received: Arc<AtomicU64>,
    /// Requests served.
    pub served: Arc<AtomicU64>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let tasks: Arc<Mutex<JoinSet<()>>> = Arc::new(Mutex::new(JoinSet::new()));
        let (n, r, s, t, a) = (
            name.to_string(),
            received.clone(),
            served.clone(),
            tasks.clone(),
            accepted.clone(),
        );
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, SeqCst);
                let (n, r, s) = (n.clone(), r.clone(), s.clone());
                let svc = service_fn(move |req| handle(n.clone(), r.clone(), s.clone(), req));
                let mut set = t.lock().unwrap();
                set.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
                while set.try_join_next().is_some() {}
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            received,
            served,
            accepted,
            tasks,
        }
    }

    pub fn endpoint(&self) -> landscape_net::Endpoint {
        self.addr.into()
    }

    /// Kills the server: the listener and every open connection, mid-request included.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn handle(
    name: String,
    received: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    mut req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, hyper::Error>>, Infallible> {
    served.fetch_add(1, SeqCst);
    let path = req.uri().path().to_string();
    if path == "/ws" || path.ends_with("/ws") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                ws_echo(TokioIo::new(up)).await;
            }
        });
        let r = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Empty::new().map_err(|e| match e {}).boxed())
            .unwrap();
        return Ok(r);
    }
    if path.ends_with("/count") {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            let Ok(f) = f else { break };
            if let Some(d) = f.data_ref() {
                n += d.len() as u64;
                received.fetch_add(d.len() as u64, SeqCst);
            }
        }
        return Ok(Response::new(
            Full::new(Bytes::from(format!("count={n}\n")))
                .map_err(|e| match e {})
                .boxed(),
        ));
    }
    // Read the whole request body before answering, like a well-behaved application (an
    // upstream that answers early and closes races with connection reuse).
    let (parts, mut body) = req.into_parts();
    while let Some(f) = body.frame().await {
        if f.is_err() {
            break;
        }
    }
    let req = Request::from_parts(parts, ());
    if path.ends_with("/slow") {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let h = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let body = format!(
        "server={name}\npath={}\nquery={}\nversion={:?}\nhost={}\nxff={}\nxfp={}\nxfh={}\nx-secret={}\nkeep-alive={}\n",
        path,
        req.uri().query().unwrap_or(""),
        req.version(),
        h("host"),
        h("x-forwarded-for"),
        h("x-forwarded-proto"),
        h("x-forwarded-host"),
        h("x-secret"),
        h("keep-alive"),
    );
    Ok(Response::new(
        Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed(),
    ))
}

/// Echoes WebSocket frames (unmasking client frames, sending unmasked) until a close frame or EOF.
async fn ws_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    loop {
        let Some((opcode, payload)) = read_frame(&mut s).await else {
            return;
        };
        if opcode == 8 {
            let _ = s.write_all(&frame(8, &payload, false)).await;
            return;
        }
        if s.write_all(&frame(opcode, &payload, false)).await.is_err() {
            return;
        }
    }
}

/// Encodes one final WebSocket frame.
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let m = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(m | payload.len() as u8);
    } else {
        out.push(m | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads one WebSocket frame, unmasking it. `None` on EOF.
pub async fn read_frame<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let mut len = (h[1] & 0x7f) as usize;
    if len == 126 {
        let mut l = [0u8; 2];
        s.read_exact(&mut l).await.ok()?;
        len = u16::from_be_bytes(l) as usize;
    } else if len == 127 {
        return None;
    }
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key).await.ok()?;
    }
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.ok()?;
    if masked {
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some((opcode, p))
}

/// A router serving on 127.0.0.1:0; stops when dropped.
pub struct TestRouter {
    pub router: Router,
    pub addr: SocketAddr,
    pub endpoints: Arc<StaticEndpoints>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), landscape_net::Error>>>,
}

impl TestRouter {
    pub async fn start(table: RouteTable, config: RouterConfig) -> TestRouter {
        Self::start_with(table, config, StaticEndpoints::new(), None).await
    }

    pub async fn start_with(
        table: RouteTable,
        config: RouterConfig,
        endpoints: Arc<StaticEndpoints>,
        waker: Option<Arc<dyn landscape_net::ServiceWaker>>,
    ) -> TestRouter {
        let mut b = Router::builder()
            .config(config)
            .endpoints(endpoints.clone());
        if let Some(w) = waker {
            b = b.waker(w);
        }
        let router = b.build(table);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let r = router.clone();
        let task = tokio::spawn(async move {
            r.serve(listener, async move {
                let _ = rx.await;
            })
            .await
        });
        TestRouter {
            router,
            addr,
            endpoints,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Signals graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A response as the tests see it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Got {
    /// A `key=value` line of an upstream's echo body.
    pub fn field(&self, key: &str) -> String {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .to_string()
    }
}

/// A keep-alive HTTP/1.1 client connection to the router.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(Client { sender })
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Result<Got, hyper::Error> {
        self.request(
            Request::get(path)
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
    }

    pub async fn request(&mut self, req: Request<Full<Bytes>>) -> Result<Got, hyper::Error> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Got {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    let mut c = Client::connect(addr).await.unwrap();
    c.get(host, path).await.unwrap()
}

/// Sends raw bytes and reads until the server closes (or `DEADLINE`).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    out
}

/// Polls `f` until it is true or `DEADLINE` passes (then panics with `what`).
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Opens a WebSocket through the router; returns the stream after the 101.
pub async fn ws_open(addr: SocketAddr, host: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the response head byte by byte so no frame bytes are consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "router closed during the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
    s
}

/// Sends one text message and expects it echoed.
pub async fn ws_roundtrip(s: &mut TcpStream, msg: &str) {
    s.write_all(&frame(1, msg.as_bytes(), true)).await.unwrap();
    let (op, p) = tokio::time::timeout(DEADLINE, read_frame(s))
        .await
        .unwrap()
        .expect("websocket closed");
    assert_eq!(op, 1);
    assert_eq!(String::from_utf8_lossy(&p), msg);
}
