//! The OpenBao (and HashiCorp Vault) KV v2 backend over HTTP with token auth.
//!
//! Secrets live at `MOUNT/data/SCOPE/NAME` with one field, `value`. Check-and-set maps to KV v2's
//! `options.cas`. Errors carry the HTTP status and the request path, never a response body (a
//! body can echo what was sent) and never a value. Plain `http://` only: TLS is not built in, so
//! use it on 127.0.0.1 or through a local TLS-terminating proxy.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::secret::{validate_scope, validate_secret_name, Secret, SecretMeta, SecretValue};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// A KV v2 secrets engine on an OpenBao server.
#[derive(Clone)]
pub struct OpenBaoBackend {
    base: String,
    mount: String,
    token: SecretValue,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for OpenBaoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoBackend")
            .field("addr", &self.base)
            .field("mount", &self.mount)
            .field("token", &"[redacted]")
            .finish()
    }
}

struct Resp {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
}

impl OpenBaoBackend {
    /// A backend for the server at `addr` (e.g. `http://127.0.0.1:8200`), KV v2 mounted at `secret`.
    pub fn new(addr: &str, token: SecretValue) -> Result<Self> {
        let base = addr.trim_end_matches('/').to_string();
        let bad = |reason: &str| Error::Backend {
            backend: "openbao",
            op: "connect",
            path: base.clone(),
            reason: reason.into(),
        };
        if base.starts_with("https://") {
            return Err(bad(
                "https is not built in; use http on 127.0.0.1 or a local TLS proxy",
            ));
        }
        if !base.starts_with("http://") || base.parse::<hyper::Uri>().is_err() {
            return Err(bad("expected an address like http://127.0.0.1:8200"));
        }
        if token.is_empty() || HeaderValue::from_bytes(token.expose()).is_err() {
            return Err(bad(
                "the token is empty or not a valid header value (set BAO_TOKEN)",
            ));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(OpenBaoBackend {
            base,
            mount: "secret".into(),
            token,
            timeout: Duration::from_secs(30),
            client,
        })
    }

    /// Uses the KV v2 engine mounted at `mount` instead of `secret`.
    pub fn with_mount(mut self, mount: &str) -> Self {
        self.mount = mount.trim_matches('/').to_string();
        self
    }

    /// Per-request timeout (default 30 s).
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn err(&self, op: &'static str, path: &str, reason: String) -> Error {
        Error::Backend {
            backend: "openbao",
            op,
            path: path.to_string(),
            reason,
        }
    }

    async fn request(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        query: &str,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Resp> {
        let uri = format!("{}/v1/{}{}", self.base, path, query);
        let mut token = HeaderValue::from_bytes(self.token.expose())
            .map_err(|_| self.err(op, path, "the token is not a valid header value".into()))?;
        token.set_sensitive(true);
        let body = match body {
            // The request body holds the value; hyper needs owned bytes, which are freed (not
            // zeroized) after sending. The Zeroizing buffer we built it from is wiped.
            Some(b) => Full::new(Bytes::copy_from_slice(&b)),
            None => Full::new(Bytes::new()),
        };
        let req = Request::builder()
            .method(method)
            .uri(&uri)
            .header("X-Vault-Token", token)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| self.err(op, path, format!("cannot build request: {e}")))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let mut reason = format!("cannot reach {}: {e}", self.base);
                if let Some(src) = std::error::Error::source(&e) {
                    reason.push_str(&format!(" ({src})"));
                }
                self.err(op, path, reason + "; is the server running? check --addr")
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.err(op, path, format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok(Resp {
                status,
                body: Zeroizing::new(body.to_vec()),
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.err(op, path, format!("no answer within {:?}", self.timeout)))?
    }

    fn status_err(&self, op: &'static str, path: &str, status: StatusCode) -> Error {
        let hint = match status.as_u16() {
            401 | 403 => {
                "; the token is missing, wrong or lacks a policy for this path (check BAO_TOKEN)"
            }
            404 => "; is a KV v2 engine mounted there? (see --mount)",
            503 => "; the server is sealed or not ready",
            _ => "",
        };
        self.err(op, path, format!("server answered {status}{hint}"))
    }

    fn json(&self, op: &'static str, path: &str, r: &Resp) -> Result<Value> {
        serde_json::from_slice(&r.body)
            .map_err(|_| self.err(op, path, "the response is not JSON".into()))
    }

    fn data_path(&self, scope: &str, name: &str) -> String {
        format!("{}/data/{}/{}", self.mount, scope, name)
    }

    fn meta_path(&self, scope: &str, name: &str) -> String {
        format!("{}/metadata/{}/{}", self.mount, scope, name)
    }

    async fn metadata(&self, scope: &str, name: &str) -> Result<Option<SecretMeta>> {
        let path = self.meta_path(scope, name);
        let r = self
            .request("metadata", Method::GET, &path, "", None)
            .await?;
        match r.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(self.status_err("metadata", &path, s)),
        }
        let v = self.json("metadata", &path, &r)?;
        let d = &v["data"];
        let version = d["current_version"].as_u64().unwrap_or(0);
        let mut versions: Vec<u64> = d["versions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, x)| {
                        x["destroyed"] != Value::Bool(true)
                            && x["deletion_time"].as_str().unwrap_or("").is_empty()
                    })
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_unstable();
        if versions.is_empty() {
            return Ok(None);
        }
        Ok(Some(SecretMeta {
            scope: scope.into(),
            name: name.into(),
            version,
            versions,
            created_unix: d["created_time"]
                .as_str()
                .and_then(rfc3339_unix)
                .unwrap_or(0),
            updated_unix: d["updated_time"]
                .as_str()
                .and_then(rfc3339_unix)
                .unwrap_or(0),
        }))
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` into Unix seconds.
fn rfc3339_unix(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
}

#[async_trait]
impl Backend for OpenBaoBackend {
    fn kind(&self) -> &'static str {
        "openbao"
    }

    async fn get(&self, scope: &str, name: &str, version: Option<u64>) -> Result<Option<Secret>> {
        validate_scope(scope)?;
        validate_secret_name(name)?;
        let path = self.data_path(scope, name);
        let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
        let r = self
            .request("get", Method::GET, &path, &query, None)
            .await?;
        match r.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(self.status_err("get", &path, s)),
        }
        let mut v = self.json("get", &path, &r)?;
        let Some(value) = v["data"]["data"]["value"].as_str().map(SecretValue::from) else {
            return Ok(None); // deleted version (data is null) or not one of ours
        };
        // Wipe the copy in the JSON tree (the response bytes are wiped by `Resp`).
        if let Some(Value::String(s)) = v.pointer_mut("/data/data/value") {
            zeroize::Zeroize::zeroize(s);
        }
        let version = v["data"]["metadata"]["version"].as_u64().unwrap_or(0);
        Ok(Some(Secret { value, version }))
    }

    async fn put(
        &self,
        scope: &str,
        name: &str,
        value: &SecretValue,
        cas: Option<u64>,
    ) -> Result<u64> {
        validate_scope(scope)?;
        validate_secret_name(name)?;
        let Some(text) = value.expose_str() else {
            return Err(Error::InvalidValue {
                name: name.into(),
                reason: "the OpenBao backend stores UTF-8 values only",
            });
        };
        if text.is_empty() {
            return Err(Error::InvalidValue {
                name: name.into(),
                reason: "it is empty",
            });
        }
        let mut body = serde_json::json!({ "data": { "value": text } });
        if let Some(c) = cas {
            body["options"] = serde_json::json!({ "cas": c });
        }
        let bytes =
            Zeroizing::new(serde_json::to_vec(&body).map_err(|e| Error::Crypto(e.to_string()))?);
        // Wipe the value from the JSON tree too.
        if let Some(Value::String(s)) = body.get_mut("data").and_then(|d| d.get_mut("value")) {
            zeroize::Zeroize::zeroize(s);
        }
        let path = self.data_path(scope, name);
        let r = self
            .request("put", Method::POST, &path, "", Some(bytes))
            .await?;
        match r.status {
            StatusCode::OK | StatusCode::NO_CONTENT => {}
            StatusCode::BAD_REQUEST if cas.is_some() => {
                let current = self
                    .metadata(scope, name)
                    .await?
                    .map(|m| m.version)
                    .unwrap_or(0);
                return Err(Error::Conflict {
                    scope: scope.into(),
                    name: name.into(),
                    expected: cas.unwrap_or(0),
                    current,
                });
            }
            s => return Err(self.status_err("put", &path, s)),
        }
        let v = self.json("put", &path, &r)?;
        v["data"]["version"]
            .as_u64()
            .ok_or_else(|| self.err("put", &path, "the response has no version".into()))
    }

    async fn delete(&self, scope: &str, name: &str) -> Result<bool> {
        validate_scope(scope)?;
        validate_secret_name(name)?;
        let existed = self.metadata(scope, name).await?.is_some();
        let path = self.meta_path(scope, name);
        let r = self
            .request("delete", Method::DELETE, &path, "", None)
            .await?;
        match r.status {
            StatusCode::OK | StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(existed),
            s => Err(self.status_err("delete", &path, s)),
        }
    }

    async fn list(&self, scope: &str) -> Result<Vec<SecretMeta>> {
        validate_scope(scope)?;
        let path = format!("{}/metadata/{}/", self.mount, scope);
        let list =
            Method::from_bytes(b"LIST").map_err(|e| self.err("list", &path, e.to_string()))?;
        let r = self.request("list", list, &path, "", None).await?;
        match r.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            s => return Err(self.status_err("list", &path, s)),
        }
        let v = self.json("list", &path, &r)?;
        let mut names: Vec<String> = v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str())
                    .filter(|k| !k.ends_with('/'))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            if validate_secret_name(&n).is_err() {
                continue;
            }
            if let Some(m) = self.metadata(scope, &n).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn purge_scope(&self, scope: &str) -> Result<()> {
        for m in self.list(scope).await? {
            self.delete(scope, &m.name).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(rfc3339_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_unix("2026-11-23T05:28:12.595560184Z"),
            Some(1795411692)
        );
        assert_eq!(rfc3339_unix("garbage"), None);
    }

    #[test]
    fn refuses_https_and_bad_tokens_without_echoing_them() {
        let e = OpenBaoBackend::new("https://x:8200", SecretValue::from("tok")).unwrap_err();
        assert!(e.to_string().contains("https"));
        let e = OpenBaoBackend::new(
            "http://127.0.0.1:8200",
            SecretValue::from("bad\ntoken-value"),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("token-value"));
    }
}
