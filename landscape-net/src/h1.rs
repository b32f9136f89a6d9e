//! The lean HTTP/1.1 path: a plain HTTP/1.1 request to an HTTP/1.1 upstream over a pooled
//! connection, handled in the client connection's own task without hyper.
//!
//! Request and response heads are parsed with `httparse` and rewritten into one buffer each
//! (hop-by-hop headers removed, `X-Forwarded-*` set); `Content-Length` and chunked bodies are
//! copied through as they arrive, in both directions, with bounded buffers; close-delimited
//! responses are passed on with `Connection: close`. Small responses reach the client in one
//! write (head and body together).
//!
//! Anything unusual is left to the hyper path: the connection, with the bytes read so far, is
//! handed to hyper for the rest of its life ([`Lean::Fallback`]). That covers h2c, upgrades
//! (WebSocket), `Expect`, HTTP/1.0 clients, absolute-form targets, unusual characters in the
//! path, conflicting framing headers, malformed or oversize heads (hyper answers 400/431),
//! unknown routes (404) and `https` targets. Requests for a service that must be woken are
//! held here too (the same [`Inner::hold`] as on the hyper path).

use crate::body::Finish;
use crate::proxy::{choose, is_idempotent, Failure, Inner};
use crate::routes::Target;
use crate::service::{EpStats, Upstream};
use crate::upstream::{BoxIo, Endpoint};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

/// Headers per head at most (as hyper's default); more goes to the hyper path.
const MAX_HEADERS: usize = 100;
/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Head and body bytes gathered into one write to the client at most.
const COALESCE: usize = 32 * 1024;
/// Spare room for each read of a body: a 64 KiB body takes one read and one write per side
/// on loopback (with 16 KiB, four of each: 0.83 of nginx's CPU per request at 32
/// connections instead of 0.63). Between requests the buffers go back to [`IDLE_BUF`].
const READ_CHUNK: usize = 64 * 1024;
/// The most a connection's read buffers keep while it waits for its next request.
const IDLE_BUF: usize = 16 * 1024;
/// Headers named in `Connection` that are dropped, at most (more: hyper path).
const MAX_NAMED: usize = 8;

/// How a connection left the lean path.
pub(crate) enum Lean {
    /// The connection is finished (closed, timed out, shut down).
    Done,
    /// The rest of the connection goes to hyper; these bytes were read and not consumed.
    Fallback(Vec<u8>),
}

/// A read buffer: `v[pos..]` holds unconsumed bytes.
pub(crate) struct InBuf {
    v: Vec<u8>,
    pos: usize,
}

impl InBuf {
    pub(crate) fn with_capacity(n: usize) -> Self {
        InBuf {
            v: Vec::with_capacity(n),
            pos: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.v[self.pos..]
    }

    fn len(&self) -> usize {
        self.v.len() - self.pos
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer grown past `max` (by a body) gives its room back.
    fn trim(&mut self, max: usize) {
        if self.is_empty() && self.v.capacity() > max {
            self.v = Vec::with_capacity(max.min(8192));
            self.pos = 0;
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n.min(self.len());
        if self.pos == self.v.len() {
            self.v.clear();
            self.pos = 0;
        }
    }

    /// Reads once from `r` into spare room of at least `min_spare` bytes. `Ok(0)` is EOF.
    async fn fill<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        r: &mut R,
        min_spare: usize,
    ) -> io::Result<usize> {
        if self.v.capacity() - self.v.len() < min_spare {
            if self.pos > 0 {
                self.v.drain(..self.pos);
                self.pos = 0;
            }
            if self.v.capacity() - self.v.len() < min_spare {
                self.v.reserve(min_spare);
            }
        }
        r.read_buf(&mut self.v).await
    }

    fn into_vec(mut self) -> Vec<u8> {
        self.v.drain(..self.pos);
        self.v
    }
}

/// Incremental scanner of chunked transfer coding. The bytes are forwarded as they are; the
/// scanner only finds where the body ends and rejects malformed framing.
#[derive(Default, Debug)]
pub(crate) struct Chunked {
    st: ChunkState,
    size: u64,
    digits: u8,
    line: usize,
    /// Payload bytes seen (without framing).
    pub(crate) data: u64,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Malformed chunked framing.
#[derive(Debug)]
pub(crate) struct BadChunk;

/// Longest chunk-size line (with extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

impl Chunked {
    /// Whether the last chunk and the trailers have been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.st == ChunkState::Done
    }

    /// Scans `buf`; returns how many of its bytes belong to the body (all of them unless the
    /// body ends inside `buf`).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<usize, BadChunk> {
        use ChunkState::*;
        let mut i = 0;
        while i < buf.len() {
            match self.st {
                Done => return Ok(i),
                Data => {
                    let k = (buf.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                    i += k;
                    self.size -= k as u64;
                    self.data += k as u64;
                    if self.size == 0 {
                        self.st = DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            let b = buf[i];
            i += 1;
            self.st = match (self.st, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits >= 16 {
                        return Err(BadChunk);
                    }
                    self.digits += 1;
                    self.size = (self.size << 4) | (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.line += 1;
                    Size
                }
                (Size, b';' | b' ' | b'\t') if self.digits > 0 => {
                    self.line += 1;
                    Ext
                }
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Ext, b'\r') => SizeLf,
                (Ext, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(BadChunk);
                    }
                    Ext
                }
                (SizeLf, b'\n') => {
                    self.line = 0;
                    self.digits = 0;
                    if self.size == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | TrailerLine, b) if b != b'\r' && b != b'\n' => {
                    self.line += 1;
                    if self.line > MAX_TRAILERS {
                        return Err(BadChunk);
                    }
                    TrailerLine
                }
                (TrailerLine, b'\r') => TrailerLf,
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => Done,
                _ => return Err(BadChunk),
            };
        }
        Ok(i)
    }
}

/// Framing of a body.
#[derive(Debug)]
enum Framing {
    None,
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes (responses only).
    Close,
}

impl Framing {
    /// Bytes at the front of `buf` that belong to the body, and whether the body ends there.
    fn take(&mut self, buf: &[u8]) -> Result<(usize, bool), BadChunk> {
        match self {
            Framing::None => Ok((0, true)),
            Framing::Length(rem) => {
                let k = (*rem).min(buf.len() as u64) as usize;
                *rem -= k as u64;
                Ok((k, *rem == 0))
            }
            Framing::Chunked(c) => {
                let k = c.scan(buf)?;
                Ok((k, c.is_done()))
            }
            Framing::Close => Ok((buf.len(), false)),
        }
    }
}

/// Characters accepted in a request target on this path (RFC 3986 unreserved, reserved and
/// `%`); anything else is left to hyper's stricter parser.
fn uri_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b)
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

fn is_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Visible ASCII, space and tab (what `HeaderValue::to_str` accepts).
fn visible(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn parse_len(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// Comma-separated tokens of a header value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What a parsed request head needs for forwarding (owned: the buffer is read again later).
struct Plan {
    head_len: usize,
    up: Arc<Upstream>,
    route: Arc<str>,
    stats: Arc<crate::metrics::RouteStats>,
    method: http::Method,
    head_req: bool,
    idempotent: bool,
    body: Framing,
    client_close: bool,
    /// No ready endpoint: hold until the service is up.
    hold: bool,
}

enum Parsed {
    Partial,
    Fallback,
    Ready(Plan),
}

/// Parses a request head in `data`, routes it and writes the upstream request head into
/// `out`. Falls back on anything this path does not handle.
fn plan(inner: &Inner, data: &[u8], out: &mut Vec<u8>, client_ip: &[u8], proto: &str) -> Parsed {
    let mut hdrs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(data, &mut hdrs) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Fallback,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Fallback;
    };
    if !target.starts_with('/') || !target.bytes().all(uri_byte_ok) || method == "CONNECT" {
        return Parsed::Fallback;
    }
    let mut host: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut client_close = false;
    let mut xff: Option<&[u8]> = None;
    let mut named: [&[u8]; MAX_NAMED] = [&[]; MAX_NAMED];
    let mut n_named = 0;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Parsed::Fallback;
            }
            host = Some(h.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            match parse_len(h.value) {
                Some(n) if length.is_none() => length = Some(n),
                _ => return Parsed::Fallback,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !h.value.eq_ignore_ascii_case(b"chunked") {
                return Parsed::Fallback;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    client_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                } else if t.eq_ignore_ascii_case(b"upgrade")
                    || t.eq_ignore_ascii_case(b"host")
                    || t.eq_ignore_ascii_case(b"content-length")
                    || t.eq_ignore_ascii_case(b"transfer-encoding")
                    || n_named == MAX_NAMED
                {
                    return Parsed::Fallback;
                } else {
                    named[n_named] = t;
                    n_named += 1;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("expect") {
            return Parsed::Fallback;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") && xff.is_none() {
            xff = Some(h.value);
        }
    }
    if chunked && length.is_some() {
        return Parsed::Fallback;
    }
    let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
        return Parsed::Fallback;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };

    // Route (404 and https targets: hyper path).
    let compiled = inner.table.load();
    let Some((id, route)) = compiled.table.lookup(Some(host), path) else {
        return Parsed::Fallback;
    };
    let cr = compiled.route(id);
    let Some((up, ready)) = choose(&cr.backends) else {
        return Parsed::Fallback;
    };
    let target_route: Option<&Target> = cr.target.as_ref();
    if target_route.is_some_and(|t| t.scheme != "http") {
        return Parsed::Fallback;
    }

    // The upstream request head.
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if let Some(t) = target_route {
        out.extend_from_slice(t.base_path.as_bytes());
    }
    out.extend_from_slice(route.rewrite(path).as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name;
        if is_hop(name)
            || named[..n_named]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            match target_route {
                Some(t) => push_header(out, b"Host", t.host_header.as_bytes()),
                None => push_header(out, name.as_bytes(), h.value),
            }
            continue;
        }
        // `Transfer-Encoding: chunked` stays: the chunked body is forwarded as it is.
        push_header(out, name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prev) = xff.filter(|v| visible(v)) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(proto.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");

    let body = if chunked {
        Framing::Chunked(Chunked::default())
    } else {
        match length {
            Some(n) if n > 0 => Framing::Length(n),
            _ => Framing::None,
        }
    };
    let Ok(m) = http::Method::from_bytes(method.as_bytes()) else {
        return Parsed::Fallback;
    };
    Parsed::Ready(Plan {
        head_len,
        route: cr.name.clone(),
        stats: cr.stats.clone(),
        head_req: m == http::Method::HEAD,
        idempotent: is_idempotent(&m),
        method: m,
        body,
        client_close,
        hold: !ready,
        up,
    })
}

/// Whether an idle pooled connection is still open: a read poll that would block (no
/// syscall when tokio already knows the socket has nothing to read). EOF or stray bytes mean
/// the connection is unusable.
fn idle_alive(io: &mut BoxIo) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut b = [0u8; 1];
    let mut rb = ReadBuf::new(&mut b);
    matches!(Pin::new(io).poll_read(&mut cx, &mut rb), Poll::Pending)
}

fn checkout(stats: &EpStats, idle_timeout: std::time::Duration) -> Option<BoxIo> {
    let mut idle = stats.idle.lock().unwrap_or_else(|e| e.into_inner());
    while let Some((mut io, since)) = idle.pop() {
        if since.elapsed() < idle_timeout && idle_alive(&mut io) {
            return Some(io);
        }
    }
    None
}

fn checkin(stats: &EpStats, io: BoxIo, max: usize) {
    {
        let mut idle = stats.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= max.max(1) {
            idle.remove(0);
        }
        idle.push((io, std::time::Instant::now()));
    }
    stats.returned.notify_one();
}

/// A connection opened for a released burst: counted in `EpStats::burst` for as long as it
/// lives (in use or idle), so that a burst opens at most
/// [`RouterConfig::release_connections`](crate::RouterConfig::release_connections).
struct BurstConn {
    io: BoxIo,
    stats: Arc<EpStats>,
}

impl Drop for BurstConn {
    fn drop(&mut self) {
        self.stats.burst.fetch_sub(1, Relaxed);
        self.stats.returned.notify_one();
    }
}

impl AsyncRead for BurstConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for BurstConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a request just released from a hold uses upstream.
enum Release {
    /// An idle connection.
    Idle(BoxIo),
    /// Open a new connection and count it as part of the burst.
    Open(Arc<EpStats>),
    /// Open a new connection (the wait for a returned one timed out).
    Uncounted,
}

/// For a request just released from a hold: an idle connection, or permission to open one.
/// When many held requests are released at once, only `max` new connections are opened; the
/// other requests reuse those as they come back (a keep-alive exchange costs much less than a
/// new connection on both sides), each waiting at most `wait` before opening its own.
async fn release_conn(
    stats: &Arc<EpStats>,
    idle_timeout: std::time::Duration,
    max: usize,
    wait: std::time::Duration,
) -> Release {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let returned = stats.returned.notified();
        tokio::pin!(returned);
        returned.as_mut().enable();
        if let Some(c) = checkout(stats, idle_timeout) {
            return Release::Idle(c);
        }
        if stats.burst.fetch_add(1, Relaxed) < max {
            return Release::Open(stats.clone());
        }
        stats.burst.fetch_sub(1, Relaxed);
        tokio::select! {
            _ = &mut returned => {}
            _ = tokio::time::sleep_until(deadline) => {
                return match checkout(stats, idle_timeout) {
                    Some(c) => Release::Idle(c),
                    None => Release::Uncounted,
                };
            }
        }
    }
}

/// A short local response (errors).
fn local(out: &mut Vec<u8>, status: u16, msg: &str, retry_after: Option<u32>, close: bool) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
            msg.len()
        )
        .as_bytes(),
    );
    if let Some(s) = retry_after {
        out.extend_from_slice(format!("retry-after: {s}\r\n").as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.as_bytes());
}

/// What the response part of an exchange says about the connections afterwards.
struct RespDone {
    upstream_reusable: bool,
    client_keep: bool,
}

enum RespErr {
    /// Failed before anything was written to the client; `received`: upstream bytes seen.
    BeforeHead { received: bool },
    /// Failed while streaming the body (the client got a partial response).
    AfterHead,
}

/// Per-exchange inputs of the response side.
struct RespCtx<'a> {
    inner: &'a Inner,
    plan: &'a Plan,
    started: std::time::Instant,
    stopping: bool,
    cold_start_ms: Option<u64>,
}

/// A parsed upstream response head.
struct RespHead {
    len: usize,
    status: u16,
    framing: Framing,
    reusable: bool,
    close_client: bool,
}

/// Parses an upstream response head in `data` and writes the client's head into `wout`.
/// `Ok(None)`: incomplete; a 1xx head comes back with `status < 200` for the caller to skip;
/// `Err`: malformed.
fn response_head(
    data: &[u8],
    wout: &mut Vec<u8>,
    ctx: &RespCtx<'_>,
) -> Result<Option<RespHead>, ()> {
    let mut hdrs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, data, &mut hdrs)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() <= MAX_RESPONSE_HEAD => return Ok(None),
        _ => return Err(()),
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err(());
    };
    if (100..200).contains(&code) {
        if code == 101 {
            return Err(());
        }
        return Ok(Some(RespHead {
            len: n,
            status: code,
            framing: Framing::None,
            reusable: false,
            close_client: false,
        }));
    }
    let mut up_close = version == 0;
    let mut named: [&[u8]; MAX_NAMED] = [&[]; MAX_NAMED];
    let mut n_named = 0;
    let mut te: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    up_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    if version == 0 {
                        up_close = false;
                    }
                } else if n_named < MAX_NAMED {
                    named[n_named] = t;
                    n_named += 1;
                } else {
                    return Err(());
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Err(());
            }
            te = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match parse_len(h.value) {
                Some(v) if length.is_none() || length == Some(v) => length = Some(v),
                _ => return Err(()),
            }
        }
    }
    let framing = if ctx.plan.head_req || code == 204 || code == 304 {
        Framing::None
    } else if let Some(te) = te {
        match tokens(te).last() {
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => Framing::Chunked(Chunked::default()),
            _ => Framing::Close,
        }
    } else if let Some(n) = length {
        if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::Close
    };
    let close_client = ctx.plan.client_close || ctx.stopping || matches!(framing, Framing::Close);
    let reusable = !up_close && !matches!(framing, Framing::Close);

    wout.clear();
    wout.extend_from_slice(b"HTTP/1.1 ");
    wout.extend_from_slice(code.to_string().as_bytes());
    wout.push(b' ');
    wout.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    wout.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name;
        if is_hop(name)
            || named[..n_named]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            || (te.is_some() && name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        push_header(wout, name.as_bytes(), h.value);
    }
    if let Some(ms) = ctx.cold_start_ms {
        wout.extend_from_slice(b"x-landscape-cold-start-ms: ");
        wout.extend_from_slice(ms.to_string().as_bytes());
        wout.extend_from_slice(b"\r\n");
    }
    if close_client {
        wout.extend_from_slice(b"connection: close\r\n");
    }
    wout.extend_from_slice(b"\r\n");
    Ok(Some(RespHead {
        len: n,
        status: code,
        framing,
        reusable,
        close_client,
    }))
}

/// Reads the upstream response, writes it to the client and streams its body.
async fn recv_response<R, W>(
    ur: &mut R,
    ubuf: &mut InBuf,
    cw: &mut W,
    wout: &mut Vec<u8>,
    ctx: &RespCtx<'_>,
    finish: &mut Finish,
) -> Result<RespDone, RespErr>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut received = !ubuf.is_empty();
    let (mut framing, reusable, close_client) = loop {
        if !ubuf.is_empty() {
            match response_head(ubuf.data(), wout, ctx) {
                Ok(Some(h)) => {
                    ubuf.consume(h.len);
                    if h.status < 200 {
                        continue;
                    }
                    finish.status = h.status;
                    ctx.plan.stats.count(h.status);
                    ctx.plan.stats.observe(ctx.started.elapsed());
                    ctx.inner.metrics.observe(ctx.started.elapsed());
                    break (h.framing, h.reusable, h.close_client);
                }
                Ok(None) => {}
                Err(()) => return Err(RespErr::BeforeHead { received }),
            }
        }
        match ubuf.fill(ur, 8192).await {
            Ok(n) if n > 0 => received = true,
            _ => return Err(RespErr::BeforeHead { received }),
        }
    };
    // Body: gathered behind the head while small, written straight through otherwise.
    loop {
        let (n, done) = framing.take(ubuf.data()).map_err(|_| RespErr::AfterHead)?;
        if n > 0 {
            let data = &ubuf.data()[..n];
            if wout.len() + n <= COALESCE {
                wout.extend_from_slice(data);
            } else {
                if !wout.is_empty() {
                    cw.write_all(wout).await.map_err(|_| RespErr::AfterHead)?;
                    wout.clear();
                }
                cw.write_all(data).await.map_err(|_| RespErr::AfterHead)?;
            }
            if !matches!(framing, Framing::Chunked(_)) {
                finish.bytes += n as u64;
            }
            ubuf.consume(n);
        }
        if done {
            break;
        }
        if !wout.is_empty() {
            cw.write_all(wout).await.map_err(|_| RespErr::AfterHead)?;
            wout.clear();
        }
        match ubuf.fill(ur, READ_CHUNK).await {
            Ok(n) if n > 0 => {}
            Ok(_) if matches!(framing, Framing::Close) => break,
            _ => return Err(RespErr::AfterHead),
        }
    }
    if let Framing::Chunked(c) = &framing {
        finish.bytes += c.data;
    }
    if !wout.is_empty() {
        cw.write_all(wout).await.map_err(|_| RespErr::AfterHead)?;
        wout.clear();
    }
    Ok(RespDone {
        // Stray bytes after the response: the upstream is out of step.
        upstream_reusable: reusable && ubuf.is_empty(),
        client_keep: !close_client,
    })
}

enum SendErr {
    /// The client closed or failed while sending its body.
    Client,
    /// The client's chunked framing is malformed.
    Bad,
    /// Writing to the upstream failed.
    Upstream,
}

/// Copies the request body from the client (`inb` first) to the upstream.
async fn send_body<R, W>(
    cr: &mut R,
    inb: &mut InBuf,
    uw: &mut W,
    mut framing: Framing,
) -> Result<(), SendErr>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    loop {
        let (n, done) = framing.take(inb.data()).map_err(|_| SendErr::Bad)?;
        if n > 0 {
            uw.write_all(&inb.data()[..n])
                .await
                .map_err(|_| SendErr::Upstream)?;
            inb.consume(n);
        }
        if done {
            return uw.flush().await.map_err(|_| SendErr::Upstream);
        }
        match inb.fill(cr, READ_CHUNK).await {
            Ok(n) if n > 0 => {}
            _ => return Err(SendErr::Client),
        }
    }
}

/// Per-connection buffers.
struct Bufs {
    inb: InBuf,
    ubuf: InBuf,
    out: Vec<u8>,
    wout: Vec<u8>,
}

/// Serves HTTP/1.1 requests on `io` until the client closes, the header timeout passes,
/// `stop` turns true, or a request needs the hyper path.
pub(crate) async fn serve<S>(
    inner: &Arc<Inner>,
    io: &mut S,
    client_ip: &[u8],
    proto: &'static str,
    stop: &mut watch::Receiver<bool>,
) -> Lean
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let timeout = inner.config.header_read_timeout;
    let mut b = Bufs {
        inb: InBuf::with_capacity(4096),
        ubuf: InBuf::with_capacity(8192),
        out: Vec::with_capacity(1024),
        wout: Vec::with_capacity(2048),
    };
    // One timer per connection: it is re-armed only when it fires before the current head's
    // own deadline (no timer operation per request).
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    let mut wait_start = tokio::time::Instant::now();
    loop {
        // Wait for a complete request head.
        let plan = loop {
            if !b.inb.is_empty() {
                match plan(inner, b.inb.data(), &mut b.out, client_ip, proto) {
                    Parsed::Ready(p) => break p,
                    Parsed::Fallback => return Lean::Fallback(b.inb.into_vec()),
                    Parsed::Partial if b.inb.len() >= inner.config.max_header_bytes => {
                        return Lean::Fallback(b.inb.into_vec())
                    }
                    Parsed::Partial => {}
                }
            }
            if *stop.borrow() {
                return Lean::Done;
            }
            tokio::select! {
                r = b.inb.fill(io, 2048) => match r {
                    Ok(n) if n > 0 => {}
                    _ => return Lean::Done,
                },
                _ = &mut sleep => {
                    let deadline = wait_start + timeout;
                    if tokio::time::Instant::now() >= deadline {
                        return Lean::Done;
                    }
                    sleep.as_mut().reset(deadline);
                }
                r = stop.changed() => if r.is_err() {
                    return Lean::Done;
                },
            }
        };
        b.inb.consume(plan.head_len);
        let stopping = *stop.borrow();
        let keep = exchange(inner, &plan, io, &mut b, stopping).await;
        if !keep {
            let _ = io.shutdown().await;
            return Lean::Done;
        }
        b.inb.trim(IDLE_BUF);
        b.ubuf.trim(IDLE_BUF);
        wait_start = tokio::time::Instant::now();
    }
}

/// Forwards one planned request and its response. Returns whether the client connection
/// stays open.
async fn exchange<S>(inner: &Inner, plan: &Plan, io: &mut S, b: &mut Bufs, stopping: bool) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = std::time::Instant::now();
    let cell = plan.up.cell.clone();
    cell.touch();
    cell.in_flight.fetch_add(1, Relaxed);
    let mut finish = Finish {
        started,
        route: plan.route.clone(),
        method: plan.method.clone(),
        status: 0,
        bytes: 0,
        cold_start_ms: None,
        cell: Some(cell.clone()),
        picked: None,
    };
    let has_body = !matches!(plan.body, Framing::None);
    // With a body that was not (fully) read, the connection cannot carry another request.
    let keep_after_local = !has_body && !plan.client_close && !stopping;
    let mut released = false;
    if plan.hold {
        match Box::pin(inner.hold(&plan.up)).await {
            Ok(waited) => {
                finish.cold_start_ms = Some(waited.as_millis() as u64);
                released = true;
            }
            Err(resp) => {
                let status = resp.status().as_u16();
                finish.status = status;
                plan.stats.count(status);
                plan.stats.observe(started.elapsed());
                inner.metrics.observe(started.elapsed());
                let msg = resp
                    .body()
                    .local_bytes()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let retry = (status == 503).then_some(inner.config.retry_after_secs);
                local(&mut b.wout, status, &msg, retry, !keep_after_local);
                let ok = io.write_all(&b.wout).await.is_ok();
                b.wout.clear();
                return keep_after_local && ok;
            }
        }
    }
    let ctx = RespCtx {
        inner,
        plan,
        started,
        stopping,
        cold_start_ms: finish.cold_start_ms,
    };
    let mut tried: Vec<Endpoint> = Vec::new();
    let mut last = Failure::NoEndpoint;
    let mut fresh_only = false;
    let mut attempts = 0;
    let max_attempts = inner.config.max_attempts.max(1);
    let mut bad_body = false;
    while attempts < max_attempts {
        attempts += 1;
        let Some(picked) = plan.up.pick(&tried) else {
            break;
        };
        let ep = picked.endpoint.clone();
        let idle_timeout = inner.config.upstream_idle_timeout;
        let mut burst = None;
        let pooled = if fresh_only {
            None
        } else if released && inner.config.release_connections > 0 {
            let (max, wait) = (inner.config.release_connections, inner.config.release_wait);
            match release_conn(&picked.stats, idle_timeout, max, wait).await {
                Release::Idle(c) => Some(c),
                Release::Open(stats) => {
                    burst = Some(stats);
                    None
                }
                Release::Uncounted => None,
            }
        } else {
            checkout(&picked.stats, idle_timeout)
        };
        fresh_only = false;
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => match inner.connect_io(&ep, plan.up.external).await {
                Ok(c) => match burst {
                    Some(stats) => Box::new(BurstConn { io: c, stats }),
                    None => c,
                },
                Err(e) => {
                    if let Some(stats) = burst {
                        stats.burst.fetch_sub(1, Relaxed);
                        stats.returned.notify_one();
                    }
                    inner.connect_failed(&plan.up, &picked, &ep, &e);
                    tried.push(ep);
                    last = Failure::Connect;
                    continue;
                }
            },
        };
        // The head: a failed write means the request was not sent (its body is untouched).
        if let Err(e) = conn.write_all(&b.out).await {
            tracing::debug!(service = %cell.name, endpoint = %ep, error = %e, "upstream exchange failed");
            inner.metrics.upstream_error(&cell.name);
            last = Failure::Exchange;
            retry_target(&mut tried, ep, reused, &mut fresh_only, &mut attempts);
            continue;
        }
        b.ubuf.consume(b.ubuf.len());
        let result = if !has_body {
            recv_response(&mut conn, &mut b.ubuf, io, &mut b.wout, &ctx, &mut finish).await
        } else {
            let framing = match &plan.body {
                Framing::Length(n) => Framing::Length(*n),
                _ => Framing::Chunked(Chunked::default()),
            };
            let (mut cr, mut cw) = tokio::io::split(&mut *io);
            let (mut ur, mut uw) = tokio::io::split(&mut conn);
            let send = send_body(&mut cr, &mut b.inb, &mut uw, framing);
            let recv = recv_response(
                &mut ur,
                &mut b.ubuf,
                &mut cw,
                &mut b.wout,
                &ctx,
                &mut finish,
            );
            tokio::pin!(send, recv);
            let mut sent: Option<bool> = None;
            let r = loop {
                tokio::select! {
                    biased;
                    r = &mut recv => break r,
                    r = &mut send, if sent.is_none() => match r {
                        Ok(()) => sent = Some(true),
                        // The upstream may still answer (e.g. 413 before reading the body).
                        Err(SendErr::Upstream) => sent = Some(false),
                        Err(SendErr::Bad) => {
                            bad_body = true;
                            break Err(RespErr::BeforeHead { received: true });
                        }
                        Err(SendErr::Client) => break Err(RespErr::AfterHead),
                    }
                }
            };
            match r {
                // The response ended before the request body was sent: neither side can be
                // reused.
                Ok(_) if sent != Some(true) => Ok(RespDone {
                    upstream_reusable: false,
                    client_keep: false,
                }),
                r => r,
            }
        };
        match result {
            Ok(done) => {
                if done.upstream_reusable {
                    checkin(&picked.stats, conn, inner.config.max_idle_per_endpoint);
                }
                finish.picked = Some(picked);
                return done.client_keep;
            }
            Err(RespErr::AfterHead) => {
                finish.picked = Some(picked);
                return false;
            }
            Err(RespErr::BeforeHead { received }) => {
                if bad_body {
                    break;
                }
                tracing::debug!(service = %cell.name, endpoint = %ep, "upstream exchange failed");
                inner.metrics.upstream_error(&cell.name);
                last = Failure::Exchange;
                // Bodiless idempotent requests can be sent again; a reused connection closed
                // before answering was stale, not the endpoint's fault.
                if has_body || !plan.idempotent {
                    break;
                }
                if received {
                    tried.push(ep);
                } else {
                    retry_target(&mut tried, ep, reused, &mut fresh_only, &mut attempts);
                }
            }
        }
    }
    // No response from any upstream: a local one.
    let (status, msg, retry) = if bad_body {
        (400, "bad request body\n", None)
    } else {
        // Each failed connect or exchange was counted where it happened.
        match last {
            Failure::NoEndpoint => (
                503,
                "no ready upstream for this route\n",
                Some(inner.config.retry_after_secs),
            ),
            Failure::Connect => (502, "upstream connection failed\n", None),
            Failure::Exchange => (502, "upstream closed the connection\n", None),
            // Only `https://` targets, which never take this path.
            Failure::Tls(_) => (502, "upstream TLS failed\n", None),
        }
    };
    let keep = keep_after_local;
    finish.status = status;
    plan.stats.count(status);
    plan.stats.observe(started.elapsed());
    inner.metrics.observe(started.elapsed());
    local(&mut b.wout, status, msg, retry, !keep);
    let ok = io.write_all(&b.wout).await.is_ok();
    b.wout.clear();
    keep && ok
}

/// After a failure on a connection that carried nothing back: a stale reused connection is
/// retried once on the same endpoint with a fresh connection (not counted as an attempt);
/// otherwise the endpoint is excluded.
fn retry_target(
    tried: &mut Vec<Endpoint>,
    ep: Endpoint,
    reused: bool,
    fresh_only: &mut bool,
    attempts: &mut usize,
) {
    if reused {
        *fresh_only = true;
        *attempts -= 1;
    } else {
        tried.push(ep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], step: usize) -> Result<(usize, u64), BadChunk> {
        let mut c = Chunked::default();
        let mut total = 0;
        for part in input.chunks(step.max(1)) {
            let n = c.scan(part)?;
            total += n;
            if c.is_done() {
                return Ok((total, c.data));
            }
        }
        Err(BadChunk)
    }

    #[test]
    fn chunked_scanner_finds_the_end_in_any_split() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (n, data) = scan_all(body, step).unwrap();
            assert_eq!(n, body.len() - 4, "step {step}");
            assert_eq!(data, 31);
        }
    }

    #[test]
    fn chunked_scanner_rejects_bad_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"\r\n",
            b"5\nhello",
            b"11111111111111111\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                scan_all(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_buffer_grown_by_a_body_gives_its_room_back_when_empty() {
        let mut b = InBuf::with_capacity(4096);
        b.v.extend_from_slice(&vec![7u8; READ_CHUNK]);
        assert!(b.v.capacity() >= READ_CHUNK);
        // Not while it holds unconsumed bytes.
        b.trim(IDLE_BUF);
        assert_eq!(b.len(), READ_CHUNK);
        b.consume(READ_CHUNK);
        b.trim(IDLE_BUF);
        assert!(b.is_empty());
        assert!(b.v.capacity() <= IDLE_BUF, "{}", b.v.capacity());
        // A small buffer is left alone.
        let mut small = InBuf::with_capacity(4096);
        let cap = small.v.capacity();
        small.trim(IDLE_BUF);
        assert_eq!(small.v.capacity(), cap);
    }

    #[test]
    fn lengths_parse_strictly() {
        assert_eq!(parse_len(b"0"), Some(0));
        assert_eq!(parse_len(b"612"), Some(612));
        assert_eq!(parse_len(b""), None);
        assert_eq!(parse_len(b"+1"), None);
        assert_eq!(parse_len(b"1 2"), None);
        assert_eq!(parse_len(b"99999999999999999999"), None);
    }
}
