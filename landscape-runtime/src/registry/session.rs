//! The registry client: hyper-util's HTTP/1.1 client (HTTPS through hyper-rustls with the
//! `registry-tls` feature) driven on a private current-thread tokio runtime, so that the
//! blocking [`crate::image::ImageStore::resolve`] stays blocking and works from any thread,
//! a tokio worker's included.
//!
//! Redirects (registries send blob downloads to object stores) are followed up to
//! [`MAX_REDIRECTS`] times; the `Authorization` header is only sent again to the same origin.
//! Every wait has a deadline: [`CONNECT_TIMEOUT`] (or `RegistryOptions::connect_timeout`) to
//! connect (TCP and, over HTTPS, the TLS
//! handshake: a plain-HTTP server that never answers a ClientHello fails the HTTPS attempt
//! then, not after [`READ_TIMEOUT`]), [`READ_TIMEOUT`] for response headers and for each
//! piece of a body.

use super::{is_loopback, RegistryOptions};
use crate::image::ImageStore;
use crate::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT,
    WWW_AUTHENTICATE,
};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use oci_spec::image::Descriptor;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

/// The longest a connection may take to be ready: TCP connect plus, over HTTPS, the TLS
/// handshake.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for response headers, and for each next piece of a body.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// The most a manifest may be (the distribution spec asks registries to accept at least
/// 4 MiB).
const MANIFEST_LIMIT: usize = 16 << 20;
/// The most a token service's answer may be.
const TOKEN_LIMIT: usize = 1 << 20;
const AGENT: &str = concat!("landscape-runtime/", env!("CARGO_PKG_VERSION"));

#[cfg(feature = "registry-tls")]
type Inner = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "registry-tls"))]
type Inner = HttpConnector;
type Connector = Deadline<Inner>;

/// A connector whose connections must be ready (connected and, over HTTPS, through the TLS
/// handshake) within `limit`.
#[derive(Clone)]
struct Deadline<C> {
    inner: C,
    limit: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<Uri> for Deadline<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = std::result::Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = self.limit;
        let tls = if uri.scheme_str() == Some("https") {
            " and TLS handshake"
        } else {
            ""
        };
        let what = format!("no connection{tls} within {} s", limit.as_secs_f64());
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(what.into()),
            }
        })
    }
}

/// The HTTP client and the runtime it runs on.
struct Http {
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
    client: Client<Connector, Empty<Bytes>>,
}

impl Drop for Http {
    fn drop(&mut self) {
        // Dropping a runtime waits for its blocking pool, which a tokio worker thread may not
        // do: from there, let it wind down in the background.
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

/// A response after redirects: its status and headers, the body still to be read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
}

impl Reply {
    fn header(&self, name: hyper::header::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The next piece of the body (`None` at its end), waiting at most [`READ_TIMEOUT`].
    async fn chunk(&mut self) -> std::result::Result<Option<Bytes>, String> {
        loop {
            match tokio::time::timeout(READ_TIMEOUT, self.body.frame()).await {
                Err(_) => {
                    return Err(format!(
                        "the transfer stalled (nothing for {} s)",
                        READ_TIMEOUT.as_secs()
                    ))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(error_chain(&e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers: nothing to keep.
                }
            }
        }
    }

    /// The whole body, refusing one longer than `limit` bytes.
    async fn bytes(&mut self, limit: usize) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(data) = self.chunk().await? {
            if out.len() + data.len() > limit {
                return Err(format!("the answer is larger than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }
}

/// An error and its sources, as one line (hyper's own message alone says little: "client
/// error (Connect)").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Where a `Location` header sends a request to `base`.
fn redirect_target(base: &Uri, location: &str) -> std::result::Result<Uri, String> {
    let bad = |e: String| format!("redirect to {location:?}: {e}");
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let absolute = if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    };
    let uri: Uri = absolute.parse().map_err(|e| bad(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(bad("not an http(s) URL".into())),
    }
}

/// `scheme://authority`, what the `Authorization` header is bound to.
fn origin(u: &Uri) -> (Option<&str>, Option<&str>) {
    (u.scheme_str(), u.authority().map(|a| a.as_str()))
}

/// `s` percent-encoded for a URL query (RFC 3986 unreserved characters stay).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Http {
    fn new(opts: &RegistryOptions) -> Result<Http> {
        let limit = opts.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ImageStore::err("", format!("start the registry client: {e}")))?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        #[cfg(feature = "registry-tls")]
        let connector = {
            http.enforce_http(false);
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls_config(opts)?)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "registry-tls"))]
        let connector = {
            let _ = opts;
            http
        };
        let connector = Deadline {
            inner: connector,
            limit,
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Http {
            rt: Some(rt),
            client,
        })
    }

    /// Runs `f` to its end on the client's runtime; on a thread of its own where the caller
    /// is inside a tokio runtime already (blocking on another one is not allowed there).
    fn block_on<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(rt) = &self.rt else {
            unreachable!("the runtime is only taken when the client is dropped")
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(f);
        }
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `GET url`, following redirects; `Err` only when no answer came (the text says why,
    /// naming the URL). `authorization` goes to `url`'s origin only.
    async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> std::result::Result<Reply, String> {
        let mut uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let first = uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = Request::get(uri.clone()).header(USER_AGENT, AGENT);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(a) = authorization.filter(|_| origin(&uri) == origin(&first)) {
                let mut v = HeaderValue::from_str(a)
                    .map_err(|_| format!("GET {uri}: the credentials are not a valid header"))?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| format!("GET {uri}: {e}"))?;
            let resp = tokio::time::timeout(READ_TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| format!("GET {uri}: no answer within {} s", READ_TIMEOUT.as_secs()))?
                .map_err(|e| format!("GET {uri}: {}", error_chain(&e)))?;
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                if let Some(loc) = resp.headers().get(LOCATION) {
                    let loc = loc
                        .to_str()
                        .map_err(|_| format!("GET {uri}: a redirect to a non-ASCII location"))?;
                    uri = redirect_target(&uri, loc).map_err(|e| format!("GET {uri}: {e}"))?;
                    continue;
                }
            }
            let (parts, body) = resp.into_parts();
            return Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
        Err(format!("GET {url}: more than {MAX_REDIRECTS} redirects"))
    }
}

#[cfg(feature = "registry-tls")]
fn tls_config(opts: &RegistryOptions) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    for f in &opts.ca_files {
        let bad = |m: String| ImageStore::err(&f.display().to_string(), m);
        let pem = std::fs::read(f).map_err(|e| bad(format!("registry CA file: {e}")))?;
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| bad(format!("registry CA file: {e}")))?;
            roots
                .add(c)
                .map_err(|e| bad(format!("registry CA file: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("registry CA file: no PEM certificate in it".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImageStore::err("", format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn ca_hint(error: &str) -> &'static str {
    if error.contains("certificate") || error.contains("Certificate") {
        "; if the registry uses a private CA, trust it with RegistryOptions::ca_files (`landscape exec --registry-ca FILE`)"
    } else {
        ""
    }
}

/// A `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: String,
    pub(crate) params: HashMap<String, String>,
}

/// Parses `Bearer realm="https://auth.example/token",service="x",scope="repository:a:pull,push"`
/// (quoted values may hold commas; unquoted values end at a comma).
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, mut rest) = match h.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim_start()),
        None => (h, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            out.push(e);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A session with one registry for one repository: the scheme that answered and the
/// `Authorization` header to send, if any.
pub(crate) struct Session {
    http: Http,
    /// `scheme://host[:port]/v2/<repository>`.
    base: String,
    /// `host[:port]/<repository>`, for messages.
    repository: String,
    auth: Option<String>,
}

impl Session {
    /// Finds how to talk to `registry` (HTTPS, or HTTP where allowed) and authenticates for
    /// pulling `repository`. `image` names the image in errors.
    pub(crate) fn open(
        opts: &RegistryOptions,
        registry: &str,
        repository: &str,
        image: &str,
    ) -> Result<Session> {
        let err = |m: String| ImageStore::err(image, m);
        let insecure_ok = is_loopback(registry) || opts.insecure.iter().any(|i| i == registry);
        let mut schemes = Vec::new();
        if cfg!(feature = "registry-tls") {
            schemes.push("https");
        }
        if insecure_ok {
            schemes.push("http");
        }
        if schemes.is_empty() {
            return Err(err(format!(
                "{registry} is reached over HTTPS, which needs the `registry-tls` feature of landscape-runtime (`tls` of the landscape crate); without it only loopback registries and those listed in RegistryOptions::insecure are used"
            )));
        }
        let http = Http::new(opts)?;
        let mut last = String::new();
        for scheme in schemes {
            let root = format!("{scheme}://{registry}/v2/");
            let reply = match http.block_on(http.get(&root, None, None)) {
                Ok(r) => r,
                Err(e) => {
                    // Both attempts failed: each one's reason (the HTTPS one is usually
                    // the story; the plain-HTTP one says whether anything listens).
                    last = if last.is_empty() {
                        e
                    } else {
                        format!("{last}; then {e}")
                    };
                    continue;
                }
            };
            let challenge = match reply.status {
                s if s.is_success() => None,
                StatusCode::UNAUTHORIZED => {
                    Some(reply.header(WWW_AUTHENTICATE).unwrap_or_default())
                }
                code => {
                    let code = code.as_u16();
                    // Over plain HTTP after HTTPS failed: the HTTPS failure is the story.
                    if !last.is_empty() {
                        return Err(err(format!(
                            "cannot reach {registry}: {last} (over plain HTTP it answered {code}){}",
                            ca_hint(&last)
                        )));
                    }
                    let tls = if scheme == "http" && !cfg!(feature = "registry-tls") {
                        " (if it speaks HTTPS: that needs the `registry-tls` feature of landscape-runtime, `tls` of the landscape crate)"
                    } else {
                        ""
                    };
                    return Err(err(format!(
                        "{root} answered {code}; is {registry} an OCI registry?{tls}"
                    )));
                }
            };
            let mut s = Session {
                http,
                base: format!("{scheme}://{registry}/v2/{repository}"),
                repository: format!("{registry}/{repository}"),
                auth: None,
            };
            if let Some(c) = challenge {
                s.auth = Some(s.authenticate(opts, registry, repository, &c, scheme, image)?);
            }
            return Ok(s);
        }
        Err(err(format!(
            "cannot reach {registry}: {last}{}",
            ca_hint(&last)
        )))
    }

    /// Answers a `401` challenge: the `Authorization` header value for later requests.
    fn authenticate(
        &self,
        opts: &RegistryOptions,
        registry: &str,
        repository: &str,
        header: &str,
        scheme: &str,
        image: &str,
    ) -> Result<String> {
        let err = |m: String| ImageStore::err(image, m);
        let creds = opts.credentials_for(registry)?;
        let c = parse_challenge(header).ok_or_else(|| {
            err(format!(
                "{registry} wants credentials but sent no usable challenge ({header:?})"
            ))
        })?;
        match c.scheme.as_str() {
            "basic" => {
                let creds = creds.ok_or_else(|| {
                    err(format!("{registry} requires credentials (Basic); none given for it (RegistryOptions::credentials or an auth file)"))
                })?;
                if scheme == "http" && !is_loopback(registry) {
                    return Err(err(format!(
                        "{registry} wants a password over plain HTTP; refusing to send it"
                    )));
                }
                Ok(creds.basic())
            }
            "bearer" => {
                let realm = c
                    .params
                    .get("realm")
                    .ok_or_else(|| err(format!("{registry}: Bearer challenge without a realm")))?;
                let mut url = realm.clone();
                let mut sep = if realm.contains('?') { '&' } else { '?' };
                if let Some(service) = c.params.get("service") {
                    url.push_str(&format!("{sep}service={}", query_escape(service)));
                    sep = '&';
                }
                url.push_str(&format!(
                    "{sep}scope={}",
                    query_escape(&format!("repository:{repository}:pull"))
                ));
                let basic = match &creds {
                    Some(creds) => {
                        let realm_host_loopback = realm
                            .split("://")
                            .nth(1)
                            .map(|r| is_loopback(r.split('/').next().unwrap_or(r)))
                            .unwrap_or(false);
                        if realm.starts_with("http://") && !realm_host_loopback {
                            return Err(err(format!(
                                "token service {realm} is plain HTTP; refusing to send the password for {registry}"
                            )));
                        }
                        Some(creds.basic())
                    }
                    None => None,
                };
                let body = self.http.block_on(async {
                    let mut reply = self.http.get(&url, None, basic.as_deref()).await?;
                    if !reply.status.is_success() {
                        return Ok(Err(reply.status));
                    }
                    reply
                        .bytes(TOKEN_LIMIT)
                        .await
                        .map(Ok::<Vec<u8>, StatusCode>)
                });
                let body = match body {
                    Ok(Ok(body)) => body,
                    Ok(Err(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                        return Err(err(format!(
                            "the token service of {registry} refused {} for {repository}",
                            if creds.is_some() {
                                "the credentials"
                            } else {
                                "anonymous access (the image may be private: give credentials)"
                            }
                        )))
                    }
                    Ok(Err(code)) => {
                        return Err(err(format!("token service {realm} answered {code}")))
                    }
                    Err(e) => return Err(err(format!("token service {realm}: {e}"))),
                };
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| err(format!("token service {realm}: not JSON: {e}")))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| err(format!("token service {realm}: no token in the answer")))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(err(format!(
                "{registry} asks for `{other}` authentication, which is not supported (Basic and Bearer are)"
            ))),
        }
    }

    /// `GET <base>/<path>` with the session's credentials.
    async fn get(&self, path: &str, accept: Option<&str>) -> std::result::Result<Reply, String> {
        self.http
            .get(
                &format!("{}/{path}", self.base),
                accept,
                self.auth.as_deref(),
            )
            .await
    }

    /// The manifest (or index) `reference` names, as bytes, with the `Content-Type` the
    /// registry gave it.
    pub(crate) fn manifest(
        &self,
        reference: &str,
        image: &str,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let err = |m: String| ImageStore::err(image, m);
        let accept = crate::image::manifest_accept();
        type Got = std::result::Result<(Vec<u8>, Option<String>), StatusCode>;
        let got = self.http.block_on(async {
            let mut reply = self
                .get(&format!("manifests/{reference}"), Some(&accept))
                .await?;
            if !reply.status.is_success() {
                return Ok(Err(reply.status));
            }
            let content_type = reply.header(CONTENT_TYPE);
            let bytes = reply.bytes(MANIFEST_LIMIT).await?;
            Ok::<Got, String>(Ok((bytes, content_type)))
        });
        match got {
            Ok(Ok(manifest)) => Ok(manifest),
            Ok(Err(StatusCode::NOT_FOUND)) => Err(err(format!(
                "manifest {reference} not found in {}",
                self.repository
            ))),
            Ok(Err(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => Err(err(format!(
                "access to {} denied (private image? give credentials)",
                self.repository
            ))),
            Ok(Err(code)) => Err(err(format!(
                "fetch manifest {reference} from {}: answered {code}",
                self.repository
            ))),
            Err(e) => Err(err(format!("fetch manifest {reference}: {e}"))),
        }
    }

    /// Downloads the blob `d` describes into `out`, never more than its announced size (plus
    /// one byte, to notice a longer one); returns the bytes written and their sha256 hex.
    pub(crate) fn download(
        &self,
        d: &Descriptor,
        out: &mut std::fs::File,
        image: &str,
    ) -> Result<(u64, String)> {
        use sha2::Digest as _;
        let err = |m: String| ImageStore::err(image, m);
        let limit = if d.size() > 0 { d.size() + 1 } else { u64::MAX };
        let got = self.http.block_on(async {
            let mut reply = self.get(&format!("blobs/{}", d.digest()), None).await?;
            if !reply.status.is_success() {
                return Err(format!("answered {}", reply.status));
            }
            let mut h = sha2::Sha256::new();
            let mut total = 0u64;
            while let Some(data) = reply.chunk().await? {
                let take = data
                    .len()
                    .min(usize::try_from(limit - total).unwrap_or(usize::MAX));
                let data = &data[..take];
                h.update(data);
                total += data.len() as u64;
                out.write_all(data)
                    .map_err(|e| format!("write the blob: {e}"))?;
                if total >= limit {
                    break;
                }
            }
            Ok((total, format!("{:x}", h.finalize())))
        });
        got.map_err(|e| err(format!("download {}: {e}", d.digest())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_request() {
        let base: Uri = "https://reg.example:5000/v2/app/blobs/sha256:ab"
            .parse()
            .unwrap();
        let to = |l: &str| redirect_target(&base, l).map(|u| u.to_string());
        assert_eq!(
            to("https://cdn.example/x?sig=1").unwrap(),
            "https://cdn.example/x?sig=1"
        );
        assert_eq!(to("//cdn.example/y").unwrap(), "https://cdn.example/y");
        assert_eq!(
            to("/v2/app/blobs/other").unwrap(),
            "https://reg.example:5000/v2/app/blobs/other"
        );
        assert_eq!(
            to("sibling").unwrap(),
            "https://reg.example:5000/v2/app/blobs/sibling"
        );
        assert!(to("ftp://x/y").is_err());
        assert!(to("https://").is_err());
        let cdn: Uri = "https://cdn.example/x".parse().unwrap();
        assert_ne!(origin(&base), origin(&cdn));
        let same: Uri = "https://reg.example:5000/elsewhere".parse().unwrap();
        assert_eq!(origin(&base), origin(&same));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
        assert_eq!(query_escape("registry.docker.io"), "registry.docker.io");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn errors_name_their_sources() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "refused");
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(std::io::Error::other("tcp connect error"));
        assert_eq!(error_chain(&e), "client error (Connect): tcp connect error");
    }

    #[test]
    fn a_session_works_from_inside_a_tokio_runtime() {
        // Blocking on the client's runtime from a tokio worker moves to a thread of its own
        // instead of panicking; an unreachable registry is an error, named.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = rt.block_on(async {
            Session::open(
                &RegistryOptions::default(),
                &format!("127.0.0.1:{port}"),
                "x",
                "img",
            )
            .err()
            .unwrap()
            .to_string()
        });
        assert!(
            e.contains("cannot reach 127.0.0.1") && e.contains("refused"),
            "{e}"
        );
    }

    #[test]
    fn challenges_parse_with_commas_inside_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
        let c = parse_challenge("Bearer realm=http://x/t, service=reg").unwrap();
        assert_eq!(c.params["realm"], "http://x/t");
        assert_eq!(c.params["service"], "reg");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }
}
