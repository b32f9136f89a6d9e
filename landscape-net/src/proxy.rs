//! The request path: route lookup, backend choice (weights, readiness), holding while a service
//! wakes, forwarding over pooled upstream connections with retries, upgrades.

use crate::body::{Finish, ReqBody, RespBody};
use crate::metrics::{Metrics, RouteStats};
use crate::pool::Pool;
use crate::routes::{Action, RouteTable, Target};
use crate::service::{Activity, Picked, ServiceCell, Upstream, WakeEvent};
use crate::upstream::{Connector, Endpoint, EndpointSource, ServiceWaker};
use crate::RouterConfig;
use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A route with everything resolved that a request needs.
pub(crate) struct CompiledRoute {
    pub(crate) name: Arc<str>,
    pub(crate) stats: Arc<RouteStats>,
    pub(crate) backends: Vec<(Arc<Upstream>, u32)>,
    pub(crate) target: Option<Target>,
}

/// A route table plus its resolved upstreams; swapped atomically as a whole.
pub(crate) struct Compiled {
    pub(crate) table: RouteTable,
    default: Vec<CompiledRoute>,
    hosts: Vec<Vec<CompiledRoute>>,
}

impl Compiled {
    /// The compiled route of a table lookup.
    pub(crate) fn route(&self, id: crate::routes::RouteId) -> &CompiledRoute {
        match id.host {
            None => &self.default[id.index],
            Some(h) => &self.hosts[h][id.index],
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: RouterConfig,
    pub(crate) table: ArcSwap<Compiled>,
    cells: Mutex<HashMap<String, Arc<ServiceCell>>>,
    upstreams: Mutex<HashMap<(String, u16), Arc<Upstream>>>,
    targets: Mutex<HashMap<String, Arc<Upstream>>>,
    endpoints: Arc<dyn EndpointSource>,
    connector: Arc<dyn Connector>,
    waker: Option<Arc<dyn ServiceWaker>>,
    pool: Pool,
    /// HTTP/2 (h2c) connections to service endpoints, for gRPC; one multiplexed per endpoint.
    h2c: Mutex<HashMap<Endpoint, hyper::client::conn::http2::SendRequest<ReqBody>>>,
    pub(crate) metrics: Metrics,
    /// TLS client of `https://` targets.
    #[cfg(feature = "tls")]
    pub(crate) https: crate::https::Client,
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Logged once per `https://` target when the `tls` feature is off.
#[cfg(not(feature = "tls"))]
pub(crate) const NO_TLS: &str = "https:// target: this build of landscape-net lacks the `tls` \
     feature; requests to it are answered with 502 (rebuild with the `tls` feature)";
#[cfg(not(feature = "tls"))]
const NO_TLS_BODY: &str =
    "https targets need the `tls` feature of landscape-net, which this router was built without\n";

static COLD_START: HeaderName = HeaderName::from_static("x-landscape-cold-start-ms");

fn local(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut r = Response::new(RespBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn local_owned(status: StatusCode, body: String) -> Response<RespBody> {
    let mut r = Response::new(RespBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn rand_u64() -> u64 {
    static CTR: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut z = CTR.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn remove_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Fast path: one pass over the names (most requests carry none of them).
    if !h.keys().any(|k| HOP_BY_HOP.iter().any(|n| n == k)) {
        return;
    }
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP.iter() {
        if keep_upgrade && (n == header::CONNECTION || n == header::UPGRADE) {
            continue;
        }
        h.remove(n);
    }
}

fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Why forwarding failed.
pub(crate) enum Failure {
    NoEndpoint,
    Connect,
    Exchange,
    /// TLS to an `https://` target failed (the reason is shown to the client).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls(String),
}

impl Inner {
    pub(crate) fn new(
        config: RouterConfig,
        endpoints: Arc<dyn EndpointSource>,
        connector: Arc<dyn Connector>,
        waker: Option<Arc<dyn ServiceWaker>>,
    ) -> Self {
        let pool = Pool::new(config.max_idle_per_endpoint, config.upstream_idle_timeout);
        Inner {
            config,
            table: ArcSwap::from_pointee(Compiled {
                table: RouteTable::new(),
                default: vec![],
                hosts: vec![],
            }),
            cells: Mutex::default(),
            upstreams: Mutex::default(),
            targets: Mutex::default(),
            endpoints,
            connector,
            waker,
            pool,
            h2c: Mutex::default(),
            metrics: Metrics::default(),
            #[cfg(feature = "tls")]
            https: crate::https::Client::new(None),
        }
    }

    fn cell(&self, service: &str) -> Arc<ServiceCell> {
        let mut m = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(service.to_string())
            .or_insert_with(|| Arc::new(ServiceCell::new(service)))
            .clone()
    }

    fn upstream(&self, service: &str, port: u16) -> Arc<Upstream> {
        let cell = self.cell(service);
        let mut m = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((service.to_string(), port))
            .or_insert_with(|| {
                Arc::new(Upstream::new(
                    cell,
                    port,
                    self.endpoints.watch(service, port),
                ))
            })
            .clone()
    }

    fn target_upstream(&self, t: &Target) -> Arc<Upstream> {
        let https = t.scheme == "https";
        let key = if https {
            format!("https://{}", t.authority)
        } else {
            t.authority.clone()
        };
        let mut m = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key)
            .or_insert_with(|| {
                let (_tx, rx) = watch::channel(vec![Endpoint::new(&t.authority)].into());
                let name = if https {
                    format!("target:https://{}", t.authority)
                } else {
                    format!("target:{}", t.authority)
                };
                #[allow(unused_mut)] // without `tls`
                let mut up = Upstream::new(Arc::new(ServiceCell::new(&name)), 0, rx);
                up.external = true;
                #[cfg(feature = "tls")]
                if https {
                    up.tls = Some(Arc::new(crate::https::TargetTls::new(t, &self.config)));
                }
                #[cfg(not(feature = "tls"))]
                if https {
                    // Once per target for the router's lifetime (the upstream is kept).
                    tracing::warn!(
                        target_url = %format!("https://{}{}", t.host_header, t.base_path),
                        "{NO_TLS}"
                    );
                }
                Arc::new(up)
            })
            .clone()
    }

    fn compile_route(&self, r: &crate::routes::Route) -> CompiledRoute {
        let (backends, target) = match &r.action {
            Action::Backends(bs) => (
                bs.iter()
                    .map(|b| (self.upstream(&b.service, b.port), b.weight))
                    .collect(),
                None,
            ),
            Action::Target(t) => (vec![(self.target_upstream(t), 1)], Some(t.clone())),
        };
        CompiledRoute {
            name: r.name.as_str().into(),
            stats: self.metrics.route(&r.name),
            backends,
            target,
        }
    }

    /// Resolves every route and swaps the table in one atomic store.
    pub(crate) fn swap(&self, table: RouteTable) {
        let default = table
            .default_routes()
            .iter()
            .map(|r| self.compile_route(r))
            .collect();
        let hosts = table
            .host_routes()
            .iter()
            .map(|rs| rs.iter().map(|r| self.compile_route(r)).collect())
            .collect();
        self.table.store(Arc::new(Compiled {
            table,
            default,
            hosts,
        }));
    }

    pub(crate) fn activity(&self, service: &str) -> Option<Activity> {
        let m = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        m.get(service).map(|c| c.activity())
    }

    pub(crate) fn all_activity(&self) -> Vec<(String, Activity)> {
        let m = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, c)| (k.clone(), c.activity())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn metrics_text(&self) -> String {
        let act = self.all_activity();
        let held: Vec<(String, usize)> = act.iter().map(|(s, a)| (s.clone(), a.held)).collect();
        self.metrics.render(&held, &act)
    }

    /// Handles one client request end to end.
    pub(crate) async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        client_ip: HeaderValue,
        proto: &'static str,
    ) -> Response<RespBody> {
        let started = Instant::now();
        let compiled = self.table.load_full();
        // The Host header (HTTP/1) or the `:authority` (HTTP/2), as a cheaply cloned value.
        let host: Option<HeaderValue> = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        };
        let host_str = host.as_ref().and_then(|h| h.to_str().ok());
        let Some((id, route)) = compiled.table.lookup(host_str, req.uri().path()) else {
            self.metrics.unrouted.fetch_add(1, Relaxed);
            return local(StatusCode::NOT_FOUND, "no route for this request\n");
        };
        let cr = compiled.route(id);

        // Choose a backend: weighted over those with ready endpoints; else hold on the heaviest.
        let (up, ready) = match choose(&cr.backends) {
            Some(c) => c,
            None => {
                cr.stats.count(503);
                return local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no backend takes traffic on this route\n",
                );
            }
        };
        let cell = up.cell.clone();
        cell.touch();
        cell.in_flight.fetch_add(1, Relaxed);
        let mut finish = Finish {
            started,
            route: cr.name.clone(),
            method: req.method().clone(),
            status: 0,
            bytes: 0,
            cold_start_ms: None,
            cell: Some(cell.clone()),
            picked: None,
        };

        if !ready {
            match Box::pin(self.hold(&up)).await {
                Ok(waited) => finish.cold_start_ms = Some(waited.as_millis() as u64),
                Err(mut resp) => {
                    finish.status = resp.status().as_u16();
                    cr.stats.count(finish.status);
                    self.metrics.observe(started.elapsed());
                    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                        let v = HeaderValue::from(self.config.retry_after_secs);
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    let (p, b) = resp.into_parts();
                    return Response::from_parts(p, b.with_finish(finish));
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        if let Some(t) = &cr.target {
            if t.scheme == "https" {
                finish.status = 502;
                cr.stats.count(502);
                return local(StatusCode::BAD_GATEWAY, NO_TLS_BODY).map(|b| b.with_finish(finish));
            }
        }

        // Build the upstream request.
        let client_version = req.version();
        let upgrade = is_upgrade_request(&req);
        let client_upgrade = if upgrade {
            Some(hyper::upgrade::on(&mut req))
        } else {
            None
        };
        let (mut parts, body) = req.into_parts();
        let orig_host = host;
        let path = parts.uri.path();
        let rewritten = route.rewrite(path);
        let new_path: Option<String> = match &cr.target {
            Some(t) => Some(format!("{}{}", t.base_path, rewritten)),
            None if rewritten.len() != path.len() => Some(rewritten.into_owned()),
            None => None,
        };
        let uri = match new_path {
            None => match parts.uri.path_and_query() {
                Some(pq) => Uri::from(pq.clone()),
                None => Uri::from_static("/"),
            },
            Some(p) => {
                let s = match parts.uri.query() {
                    Some(q) => format!("{p}?{q}"),
                    None => p,
                };
                match Uri::try_from(s) {
                    Ok(u) => u,
                    Err(_) => {
                        finish.status = 400;
                        cr.stats.count(400);
                        return local(StatusCode::BAD_REQUEST, "bad request path\n")
                            .map(|b| b.with_finish(finish));
                    }
                }
            }
        };
        parts.uri = uri;
        // gRPC needs HTTP/2 end to end (trailers, `te: trailers`): an HTTP/2 gRPC request to a
        // service goes to its endpoint over h2c with prior knowledge.
        let grpc = self.config.grpc_h2c
            && cr.target.is_none()
            && parts.version == Version::HTTP_2
            && parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/grpc"));
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        remove_hop_by_hop(h, upgrade);
        if grpc {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some(t) = &cr.target {
            if let Ok(v) = HeaderValue::from_str(&t.host_header) {
                h.insert(header::HOST, v);
            }
        } else if !h.contains_key(header::HOST) {
            if let Some(v) = &orig_host {
                h.insert(header::HOST, v.clone());
            }
        }
        let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) => {
                let ip = client_ip.to_str().unwrap_or("");
                HeaderValue::from_str(&format!("{prev}, {ip}")).unwrap_or(client_ip)
            }
            None => client_ip,
        };
        h.insert(X_FORWARDED_FOR.clone(), xff);
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        if let Some(v) = orig_host {
            h.insert(X_FORWARDED_HOST.clone(), v);
        }
        let body = if body.is_end_stream() {
            ReqBody::Empty
        } else {
            ReqBody::Incoming(body)
        };
        let replay = if !upgrade && body.is_end_stream() && is_idempotent(&parts.method) {
            Some((
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            ))
        } else {
            None
        };
        let upstream_req = Request::from_parts(parts, body);

        #[cfg(feature = "tls")]
        let forwarded = match &up.tls {
            _ if grpc => self.forward_h2c(&up, upstream_req).await,
            Some(tt) => {
                self.forward_https(&up, tt, upstream_req, replay, upgrade, started)
                    .await
            }
            None => {
                self.forward(&up, upstream_req, replay, upgrade, started)
                    .await
            }
        };
        #[cfg(not(feature = "tls"))]
        let forwarded = if grpc {
            self.forward_h2c(&up, upstream_req).await
        } else {
            self.forward(&up, upstream_req, replay, upgrade, started)
                .await
        };
        match forwarded {
            Ok((mut resp, picked)) => {
                let status = resp.status();
                finish.status = status.as_u16();
                finish.picked = Some(picked);
                cr.stats.count(finish.status);
                self.metrics.observe(started.elapsed());
                *resp.version_mut() = client_version;
                let switching = status == StatusCode::SWITCHING_PROTOCOLS;
                remove_hop_by_hop(resp.headers_mut(), switching && upgrade);
                if let Some(ms) = finish.cold_start_ms {
                    resp.headers_mut()
                        .insert(COLD_START.clone(), HeaderValue::from(ms));
                }
                if switching {
                    if let Some(client_up) = client_upgrade {
                        let upstream_up = hyper::upgrade::on(&mut resp);
                        cell.upgraded.fetch_add(1, Relaxed);
                        let cell = cell.clone();
                        tokio::spawn(async move {
                            struct Dec(Arc<ServiceCell>);
                            impl Drop for Dec {
                                fn drop(&mut self) {
                                    self.0.upgraded.fetch_sub(1, Relaxed);
                                }
                            }
                            let _dec = Dec(cell);
                            match tokio::try_join!(client_up, upstream_up) {
                                Ok((c, u)) => {
                                    let mut c = TokioIo::new(c);
                                    let mut u = TokioIo::new(u);
                                    if let Err(e) =
                                        tokio::io::copy_bidirectional(&mut c, &mut u).await
                                    {
                                        tracing::debug!(error = %e, "upgraded connection ended with an error");
                                    }
                                }
                                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                            }
                        });
                    }
                }
                let (p, b) = resp.into_parts();
                Response::from_parts(p, RespBody::upstream(b, Some(finish)))
            }
            Err(f) => {
                // Each failed connect or exchange was counted where it happened.
                let (status, msg) = match f {
                    Failure::NoEndpoint => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no ready upstream for this route\n".to_string(),
                    ),
                    Failure::Connect => (
                        StatusCode::BAD_GATEWAY,
                        "upstream connection failed\n".to_string(),
                    ),
                    Failure::Exchange => (
                        StatusCode::BAD_GATEWAY,
                        "upstream closed the connection\n".to_string(),
                    ),
                    Failure::Tls(reason) => (
                        StatusCode::BAD_GATEWAY,
                        format!("upstream TLS failed, request not forwarded: {reason}\n"),
                    ),
                };
                finish.status = status.as_u16();
                cr.stats.count(finish.status);
                self.metrics.observe(started.elapsed());
                let mut r = local_owned(status, msg);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(self.config.retry_after_secs),
                    );
                }
                r.map(|b| b.with_finish(finish))
            }
        }
    }

    /// Holds a request until `up` has an endpoint: wakes the service once (coalesced), bounded
    /// by the per-service queue and the hold deadline.
    pub(crate) async fn hold(&self, up: &Arc<Upstream>) -> Result<Duration, Response<RespBody>> {
        let cell = &up.cell;
        let Some(waker) = self.waker.as_ref().filter(|w| w.can_wake(&cell.name)) else {
            return Err(local(
                StatusCode::SERVICE_UNAVAILABLE,
                "service has no ready instance\n",
            ));
        };
        let start = Instant::now();
        struct Held<'a>(&'a ServiceCell);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.held.fetch_sub(1, Relaxed);
            }
        }
        if cell.held.fetch_add(1, Relaxed) >= self.config.max_held_per_service {
            cell.held.fetch_sub(1, Relaxed);
            self.metrics.held_rejected.fetch_add(1, Relaxed);
            return Err(local(
                StatusCode::SERVICE_UNAVAILABLE,
                "service is starting; too many waiting requests\n",
            ));
        }
        let _held = Held(cell);
        self.metrics.held_total.fetch_add(1, Relaxed);

        let (my_epoch, mut events) = {
            let mut st = cell.wake.lock().unwrap_or_else(|e| e.into_inner());
            if !st.in_progress {
                st.in_progress = true;
                st.epoch += 1;
                let epoch = st.epoch;
                let waker = waker.clone();
                let up = up.clone();
                let hold_timeout = self.config.hold_timeout;
                self.metrics.wakes.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    let cell = up.cell.clone();
                    tracing::info!(service = %cell.name, "waking service");
                    let r = waker.wake(&cell.name).await;
                    let failure = match r {
                        Ok(()) => {
                            let mut rx = up.rx.clone();
                            let _ = tokio::time::timeout(hold_timeout, async {
                                rx.wait_for(|e| !e.is_empty()).await.is_ok()
                            })
                            .await;
                            None
                        }
                        Err(e) => {
                            tracing::warn!(service = %cell.name, error = %e, "wake failed");
                            Some(Arc::<str>::from(e.0.as_str()))
                        }
                    };
                    let mut st = cell.wake.lock().unwrap_or_else(|e| e.into_inner());
                    st.in_progress = false;
                    if failure.is_some() {
                        cell.wake_tx.send_replace(WakeEvent { epoch, failure });
                    }
                });
            }
            (st.epoch, cell.wake_tx.subscribe())
        };

        let mut eps = up.rx.clone();
        let deadline = tokio::time::sleep(self.config.hold_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ok = async { eps.wait_for(|e| !e.is_empty()).await.is_ok() } => {
                    if ok {
                        return Ok(start.elapsed());
                    }
                    // The endpoint source went away: nothing will become ready.
                    (&mut deadline).await;
                }
                r = events.changed() => {
                    if r.is_err() {
                        (&mut deadline).await;
                        return Err(local(StatusCode::SERVICE_UNAVAILABLE, "service is starting; try again shortly\n"));
                    }
                    let ev = events.borrow_and_update().clone();
                    if ev.epoch >= my_epoch {
                        if let Some(reason) = ev.failure {
                            self.metrics.wake_failures.fetch_add(1, Relaxed);
                            return Err(local_owned(
                                StatusCode::BAD_GATEWAY,
                                format!("service {} failed to start: {reason}\n", cell.name),
                            ));
                        }
                    }
                    continue;
                }
                _ = &mut deadline => {}
            }
            return Err(local(
                StatusCode::SERVICE_UNAVAILABLE,
                "service is starting; try again shortly\n",
            ));
        }
    }

    /// Sends `req` to an endpoint of `up`, retrying on another endpoint while nothing was sent
    /// (or, for idempotent bodiless requests, `replay` allows a resend).
    async fn forward(
        &self,
        up: &Arc<Upstream>,
        mut req: Request<ReqBody>,
        mut replay: Option<(Method, Uri, HeaderMap)>,
        upgrade: bool,
        started: Instant,
    ) -> Result<(Response<Incoming>, Picked), Failure> {
        let mut tried: Vec<Endpoint> = Vec::new();
        let mut last = Failure::NoEndpoint;
        for _ in 0..self.config.max_attempts.max(1) {
            let Some(picked) = up.pick(&tried) else { break };
            let ep = picked.endpoint.clone();
            let pooled = if upgrade {
                None
            } else {
                self.pool.checkout(&ep)
            };
            let mut sender = match pooled {
                Some(s) => s,
                None => match self.connect(&ep, up.external).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.connect_failed(up, &picked, &ep, &e);
                        tried.push(ep);
                        last = Failure::Connect;
                        continue;
                    }
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    if !upgrade {
                        self.pool.checkin(ep, sender, started);
                    }
                    return Ok((resp, picked));
                }
                Err(mut e) => {
                    tracing::debug!(service = %up.cell.name, endpoint = %ep, error = %e.error(), "upstream exchange failed");
                    self.metrics.upstream_error(&up.cell.name);
                    last = Failure::Exchange;
                    tried.push(ep);
                    match e.take_message() {
                        Some(m) => req = m,
                        None => match replay.take() {
                            Some((m, u, h)) => {
                                replay = Some((m.clone(), u.clone(), h.clone()));
                                let mut r = Request::new(ReqBody::Empty);
                                *r.method_mut() = m;
                                *r.uri_mut() = u;
                                *r.headers_mut() = h;
                                req = r;
                            }
                            None => return Err(Failure::Exchange),
                        },
                    }
                }
            }
        }
        Err(last)
    }

    /// Sends a gRPC request to an endpoint of `up` over HTTP/2 without TLS (h2c, prior
    /// knowledge), on the endpoint's one multiplexed connection. Only connecting is retried on
    /// another endpoint: a gRPC call that reached an endpoint is not sent again.
    async fn forward_h2c(
        &self,
        up: &Arc<Upstream>,
        mut req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Picked), Failure> {
        let mut tried: Vec<Endpoint> = Vec::new();
        let mut last = Failure::NoEndpoint;
        for _ in 0..self.config.max_attempts.max(1) {
            let Some(picked) = up.pick(&tried) else { break };
            let ep = picked.endpoint.clone();
            let pooled = {
                let mut m = self.h2c.lock().unwrap_or_else(|e| e.into_inner());
                match m.get(&ep) {
                    Some(s) if !s.is_closed() => Some(s.clone()),
                    Some(_) => {
                        m.remove(&ep);
                        None
                    }
                    None => None,
                }
            };
            let mut sender = match pooled {
                Some(s) => s,
                None => match self.connect_h2c(&ep, up.external).await {
                    Ok(s) => {
                        let mut m = self.h2c.lock().unwrap_or_else(|e| e.into_inner());
                        m.insert(ep.clone(), s.clone());
                        s
                    }
                    Err(e) => {
                        self.connect_failed(up, &picked, &ep, &e);
                        tried.push(ep);
                        last = Failure::Connect;
                        continue;
                    }
                },
            };
            to_h2(
                &mut req,
                http::uri::Scheme::HTTP,
                http::uri::Authority::try_from(ep.to_string()).ok(),
            );
            return match sender.send_request(req).await {
                Ok(resp) => Ok((resp, picked)),
                Err(e) => {
                    tracing::debug!(service = %up.cell.name, endpoint = %ep, error = %e, "upstream h2c exchange failed");
                    self.metrics.upstream_error(&up.cell.name);
                    self.h2c
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&ep);
                    Err(Failure::Exchange)
                }
            };
        }
        Err(last)
    }

    async fn connect_h2c(
        &self,
        ep: &Endpoint,
        external: bool,
    ) -> std::io::Result<hyper::client::conn::http2::SendRequest<ReqBody>> {
        let io = self.connect_io(ep, external).await?;
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(self.config.http2_keepalive_interval)
                .keep_alive_timeout(self.config.http2_keepalive_interval)
                .handshake(TokioIo::new(io))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2c connection closed with an error");
            }
        });
        Ok(sender)
    }

    /// A failed connect to `ep`: logged, counted as an upstream error, the endpoint ejected for
    /// `eject_for` (the caller tries another).
    pub(crate) fn connect_failed(
        &self,
        up: &Upstream,
        picked: &Picked,
        ep: &Endpoint,
        error: &dyn std::fmt::Display,
    ) {
        tracing::warn!(service = %up.cell.name, port = up.port, endpoint = %ep, error = %error, "upstream connect failed; ejecting");
        self.metrics.upstream_error(&up.cell.name);
        up.eject(picked, self.config.eject_for.as_millis() as u64);
    }

    /// Opens a byte stream to `ep` within the connect timeout.
    pub(crate) async fn connect_io(
        &self,
        ep: &Endpoint,
        external: bool,
    ) -> std::io::Result<crate::upstream::BoxIo> {
        // Headless targets live outside the landscape: plain TCP from the host, not the
        // landscape connector.
        let connect = if external {
            crate::upstream::TcpConnector.connect(ep)
        } else {
            self.connector.connect(ep)
        };
        let io = tokio::time::timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        Ok(io)
    }

    async fn connect(
        &self,
        ep: &Endpoint,
        external: bool,
    ) -> std::io::Result<hyper::client::conn::http1::SendRequest<ReqBody>> {
        let io = self.connect_io(ep, external).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        Ok(sender)
    }
}

/// Turns `req` into an HTTP/2 request for `authority` over `scheme`: HTTP/2 carries the target
/// as `:scheme` and `:authority`, so the URI becomes absolute and the `Host` header goes.
pub(crate) fn to_h2(
    req: &mut Request<ReqBody>,
    scheme: http::uri::Scheme,
    authority: Option<http::uri::Authority>,
) {
    *req.version_mut() = Version::HTTP_2;
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(scheme);
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(u) = Uri::from_parts(parts) {
        *req.uri_mut() = u;
    }
    req.headers_mut().remove(header::HOST);
}

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Weighted choice over backends with ready endpoints; `(upstream, true)`. When none is ready,
/// the heaviest backend with weight > 0 is returned with `false` (hold on it).
pub(crate) fn choose(backends: &[(Arc<Upstream>, u32)]) -> Option<(Arc<Upstream>, bool)> {
    if backends.len() == 1 {
        let (u, w) = &backends[0];
        return (*w > 0).then(|| (u.clone(), u.has_ready()));
    }
    let total: u64 = backends
        .iter()
        .filter(|(u, w)| *w > 0 && u.has_ready())
        .map(|(_, w)| *w as u64)
        .sum();
    if total > 0 {
        let mut r = rand_u64() % total;
        for (u, w) in backends.iter().filter(|(u, w)| *w > 0 && u.has_ready()) {
            if r < *w as u64 {
                return Some((u.clone(), true));
            }
            r -= *w as u64;
        }
    }
    backends
        .iter()
        .filter(|(_, w)| *w > 0)
        .max_by_key(|(_, w)| *w)
        .map(|(u, _)| (u.clone(), false))
}
