//! Body types: the request body sent upstream and the response body sent to the client, which
//! counts bytes and finishes the access log and the in-flight accounting when it ends.

use crate::service::{Picked, ServiceCell};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The body of a request forwarded upstream: the client's stream, or nothing (replays).
pub enum ReqBody {
    /// The client's body, streamed.
    Incoming(Incoming),
    /// No body.
    Empty,
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Incoming(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Incoming(b) => b.is_end_stream(),
            ReqBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Incoming(b) => b.size_hint(),
            ReqBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Runs when a response is done (body ended or dropped): access log and in-flight counters.
pub(crate) struct Finish {
    pub(crate) started: Instant,
    pub(crate) route: Arc<str>,
    pub(crate) method: http::Method,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) cold_start_ms: Option<u64>,
    pub(crate) cell: Option<Arc<ServiceCell>>,
    pub(crate) picked: Option<Picked>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(cell) = &self.cell {
            cell.in_flight.fetch_sub(1, Relaxed);
        }
        tracing::info!(
            target: "landscape_net::access",
            route = %self.route,
            method = %self.method,
            upstream = self.picked.as_ref().map(|p| p.endpoint.authority()).unwrap_or("-"),
            status = self.status,
            bytes = self.bytes,
            duration_us = self.started.elapsed().as_micros() as u64,
            cold_start_ms = self.cold_start_ms,
            "request"
        );
    }
}

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

/// The body of a response sent to the client: the upstream's stream or a short local body.
pub struct RespBody {
    inner: Inner,
    finish: Option<Finish>,
}

impl RespBody {
    pub(crate) fn upstream(b: Incoming, finish: Option<Finish>) -> Self {
        RespBody {
            inner: Inner::Upstream(b),
            finish,
        }
    }

    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        RespBody {
            inner: Inner::Full(if b.is_empty() { None } else { Some(b) }),
            finish: None,
        }
    }

    /// The bytes of a short local body (`None` for an upstream stream).
    pub(crate) fn local_bytes(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Full(b) => Some(b.as_deref().unwrap_or(&[])),
            Inner::Upstream(_) => None,
        }
    }

    pub(crate) fn with_finish(mut self, f: Finish) -> Self {
        self.finish = Some(f);
        self
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        };
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(d), Some(fin)) = (f.data_ref(), this.finish.as_mut()) {
                    fin.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.finish = None;
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map(|b| b.len() as u64).unwrap_or(0)),
        }
    }
}
