//! The control API of a running [`Landscape`]: JSON over HTTP/1.1 on a unix socket (mode
//! 0600, in a 0700 state directory), so that `landscape ps`, `logs -f`, `scale`,
//! `restart`, `down` and a second `up` (apply an edited ci.yml) reach a landscape that a
//! background control process (`landscape up -d`) or another terminal runs. A host that
//! embeds [`Landscape`] may serve the same API for its own tools.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/status` | [`StatusReply`] |
//! | `GET /v1/events` | one JSON [`rt::Event`] per line, until the client closes |
//! | `GET /v1/stats` | one [`rt::ReplicaUsage`] per running replica (CPU, memory, processes) |
//! | `POST /v1/scale` `{"service": "api", "replicas": 3}` | `{}` |
//! | `POST /v1/restart` `{"services": ["api"]}` (empty: all) | `{}` |
//! | `POST /v1/apply` | [`crate::compose::Applied`] (the server re-reads its ci.yml) |
//! | `POST /v1/down` | `{}`, then the landscape stops |
//!
//! Errors are `{"error": "..."}` with status 400 (bad request), 404 (unknown path or
//! service), 409 (apply or restart refused or abandoned) or 500.

use crate::compose::Landscape;
use crate::runtime as rt;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// What `GET /v1/status` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    /// The landscape's name.
    pub landscape: String,
    /// The router's address.
    pub listen: String,
    /// Public routes: `(path, host)`, host empty for any.
    pub routes: Vec<(String, String)>,
    /// Pid of the process serving this API.
    pub control_pid: u32,
    /// Every replica has been ready once (see [`Landscape::came_up`]).
    pub ready: bool,
    /// Every replica.
    pub replicas: Vec<rt::ReplicaStatus>,
}

/// Re-reads the landscape's definition and applies it (`POST /v1/apply`); the error is
/// shown to the caller as it is.
pub type Reload = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<crate::compose::Applied, String>> + Send>>
        + Send
        + Sync,
>;

/// Binds the control socket at `path` (replacing a stale one; refusing when a live
/// landscape answers there) with mode 0600.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if UnixStream::connect(path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "a landscape already answers on {}; use `landscape down` first",
                path.display()
            ),
        ));
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves the control API for `land` on `listener` until `down` is requested (then it
/// returns, after answering; the caller stops the landscape).
pub async fn serve(listener: UnixListener, land: Arc<Landscape>, reload: Reload) {
    let (down_tx, mut down_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            _ = down_rx.recv() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (land, reload, down) = (land.clone(), reload.clone(), down_tx.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &land, &reload, &down).await {
                        tracing::debug!("control request: {e}");
                    }
                });
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(r: &mut BufReader<UnixStream>) -> std::io::Result<Request> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts
        .next()
        .ok_or_else(|| bad("empty request"))?
        .to_string();
    let path = parts.next().ok_or_else(|| bad("no path"))?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            }
        }
    }
    if len > 1 << 20 {
        return Err(bad("body too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Request { method, path, body })
}

async fn respond(s: &mut UnixStream, code: u16, body: &serde_json::Value) -> std::io::Result<()> {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(text.as_bytes()).await?;
    s.shutdown().await
}

fn error(msg: impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({ "error": msg.to_string() })
}

async fn handle(
    stream: UnixStream,
    land: &Landscape,
    reload: &Reload,
    down: &tokio::sync::mpsc::Sender<()>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    let req = read_request(&mut r).await?;
    let mut s = r.into_inner();
    let ok = serde_json::json!({});
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/status") => {
            let reply = StatusReply {
                landscape: land.name().to_string(),
                listen: land.local_addr().to_string(),
                routes: land.routes(),
                control_pid: std::process::id(),
                ready: land.came_up(),
                replicas: land.status().replicas,
            };
            let v = serde_json::to_value(reply).map_err(std::io::Error::other)?;
            respond(&mut s, 200, &v).await
        }
        ("GET", "/v1/stats") => {
            let land2 = land.usage();
            let v = serde_json::to_value(land2).map_err(std::io::Error::other)?;
            respond(&mut s, 200, &v).await
        }
        ("GET", "/v1/events") => {
            let mut events = land.events();
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n",
            )
            .await?;
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        let mut line = serde_json::to_string(&ev).map_err(std::io::Error::other)?;
                        line.push('\n');
                        s.write_all(line.as_bytes()).await?;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
        ("POST", "/v1/scale") => {
            #[derive(Deserialize)]
            struct Scale {
                service: String,
                replicas: u32,
            }
            let Ok(sc) = serde_json::from_slice::<Scale>(&req.body) else {
                return respond(
                    &mut s,
                    400,
                    &error("expected {\"service\": NAME, \"replicas\": N}"),
                )
                .await;
            };
            if !land
                .status()
                .replicas
                .iter()
                .any(|r| r.service == sc.service)
                && !land
                    .supervisor()
                    .services()
                    .iter()
                    .any(|d| d.name == sc.service)
            {
                let msg = format!("no service {:?} in landscape {}", sc.service, land.name());
                return respond(&mut s, 404, &error(msg)).await;
            }
            match land.scale(&sc.service, sc.replicas).await {
                Ok(()) => respond(&mut s, 200, &ok).await,
                Err(e) => respond(&mut s, 500, &error(e)).await,
            }
        }
        ("POST", "/v1/restart") => {
            #[derive(Deserialize, Default)]
            struct Restart {
                #[serde(default)]
                services: Vec<String>,
            }
            let r: Restart = if req.body.is_empty() {
                Restart::default()
            } else {
                match serde_json::from_slice(&req.body) {
                    Ok(r) => r,
                    Err(e) => return respond(&mut s, 400, &error(e)).await,
                }
            };
            match land.restart(&r.services).await {
                Ok(()) => respond(&mut s, 200, &ok).await,
                // An unknown service is 404; a restart that could not be done, 409.
                Err(e @ crate::compose::UpError::Invalid(_)) => {
                    respond(&mut s, 404, &error(e)).await
                }
                Err(e) => respond(&mut s, 409, &error(e)).await,
            }
        }
        ("POST", "/v1/apply") => match reload().await {
            Ok(applied) => {
                let v = serde_json::to_value(applied).map_err(std::io::Error::other)?;
                respond(&mut s, 200, &v).await
            }
            Err(e) => respond(&mut s, 409, &error(e)).await,
        },
        ("POST", "/v1/down") => {
            respond(&mut s, 200, &ok).await?;
            let _ = down.send(()).await;
            Ok(())
        }
        (m, p) => respond(&mut s, 404, &error(format!("no such request: {m} {p}"))).await,
    }
}

/// Sends one request to the control socket at `sock`; the status code and the JSON body.
pub async fn call(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let mut r = send(sock, method, path, body).await?;
    let code = read_head(&mut r).await?;
    let mut text = String::new();
    r.read_to_string(&mut text).await?;
    let v = serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad answer from {}: {e}", sock.display()),
        )
    })?;
    Ok((code, v))
}

/// Opens `GET path` as a stream of lines (e.g. `/v1/events`).
pub async fn lines(
    sock: &Path,
    path: &str,
) -> std::io::Result<tokio::io::Lines<BufReader<UnixStream>>> {
    let mut r = send(sock, "GET", path, None).await?;
    let code = read_head(&mut r).await?;
    if code != 200 {
        return Err(std::io::Error::other(format!("{path}: status {code}")));
    }
    Ok(r.lines())
}

async fn send(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<BufReader<UnixStream>> {
    let mut s = UnixStream::connect(sock).await?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: landscape\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    Ok(BufReader::new(s))
}

async fn read_head(r: &mut BufReader<UnixStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {line:?}"),
            )
        })?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 || h.trim_end().is_empty() {
            return Ok(code);
        }
    }
}
