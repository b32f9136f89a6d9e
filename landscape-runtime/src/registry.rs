//! Talking to an OCI distribution registry: HTTPS (with the `registry-tls` feature) or plain
//! HTTP for loopback registries and those listed as insecure, and the two ways registries ask
//! for credentials: `Basic`, and `Bearer` tokens from the registry's token service (anonymous,
//! as Docker Hub and GHCR give for public images, or with credentials).
//!
//! Credentials come from [`RegistryOptions::credentials`] or, for registries not listed there,
//! from a Docker/Podman auth file (`$REGISTRY_AUTH_FILE`, else `~/.docker/config.json`;
//! `auths.<registry>.auth`, credential helpers are not run).

use crate::image::ImageStore;
use crate::Result;
use oci_spec::image::Descriptor;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A user name and password (or access token) for a registry. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    fn basic(&self) -> String {
        use base64::Engine as _;
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// How an [`crate::image::ImageStore`] reaches registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// CA certificates (PEM files) trusted for HTTPS registries besides the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// Credentials by registry, keyed as the image reference writes it (`host[:port]`;
    /// `docker.io` for Docker Hub).
    pub credentials: HashMap<String, Credentials>,
    /// Registries that may be reached over plain HTTP when HTTPS does not answer (loopback
    /// registries — `localhost`, `127.0.0.1`, `[::1]` — always may, as with Docker).
    pub insecure: Vec<String>,
    /// The Docker/Podman auth file to read for registries without credentials here (default:
    /// `$REGISTRY_AUTH_FILE`, else `~/.docker/config.json`).
    pub auth_file: Option<PathBuf>,
    /// Do not read an auth file at all.
    pub ignore_auth_file: bool,
}

/// The most a manifest may be (the distribution spec asks registries to accept at least
/// 4 MiB).
const MANIFEST_LIMIT: u64 = 16 << 20;

/// Docker Hub's names for itself: references say `docker.io`, the API lives elsewhere, and
/// auth files key it by its old index URL.
const DOCKER_HUB: &str = "registry-1.docker.io";
const DOCKER_HUB_KEYS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "https://index.docker.io/v1/",
];

fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost" || host == "127.0.0.1" || host == "::1"
}

impl RegistryOptions {
    fn keys(registry: &str) -> Vec<&str> {
        if registry == DOCKER_HUB || registry == "docker.io" {
            DOCKER_HUB_KEYS.to_vec()
        } else {
            vec![registry]
        }
    }

    /// The credentials for `registry`: given ones first, then the auth file.
    fn credentials_for(&self, registry: &str) -> Result<Option<Credentials>> {
        for k in Self::keys(registry) {
            if let Some(c) = self.credentials.get(k) {
                return Ok(Some(c.clone()));
            }
        }
        if self.ignore_auth_file {
            return Ok(None);
        }
        let path = match (&self.auth_file, std::env::var_os("REGISTRY_AUTH_FILE")) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".docker/config.json"),
                None => return Ok(None),
            },
        };
        let Ok(text) = std::fs::read(&path) else {
            return Ok(None);
        };
        let bad =
            |m: String| ImageStore::err(registry, format!("auth file {}: {m}", path.display()));
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        for k in Self::keys(registry) {
            let Some(auth) = v.pointer(&format!(
                "/auths/{}",
                k.replace('~', "~0").replace('/', "~1")
            )) else {
                continue;
            };
            let Some(b64) = auth.get("auth").and_then(|a| a.as_str()) else {
                continue;
            };
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad(format!("auths.{k}.auth is not base64")))?;
            let raw =
                String::from_utf8(raw).map_err(|_| bad(format!("auths.{k}.auth is not UTF-8")))?;
            let (u, p) = raw
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{k}.auth is not `user:password`")))?;
            return Ok(Some(Credentials::new(u, p)));
        }
        Ok(None)
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
    agent: ureq::Agent,
    /// `host[:port]/<repository>`, for messages.
    repository: String,
    /// `https://host[:port]/v2/<repository>`.
    pub(crate) base: String,
    auth: Option<String>,
}

fn agent(opts: &RegistryOptions) -> Result<ureq::Agent> {
    let b = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(300));
    #[cfg(feature = "registry-tls")]
    let b = b.tls_config(tls_config(opts)?);
    #[cfg(not(feature = "registry-tls"))]
    let _ = opts;
    Ok(b.build())
}

#[cfg(feature = "registry-tls")]
fn tls_config(opts: &RegistryOptions) -> Result<std::sync::Arc<rustls::ClientConfig>> {
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
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImageStore::err("", format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

fn ca_hint(error: &str) -> &'static str {
    if error.contains("certificate") || error.contains("Certificate") {
        "; if the registry uses a private CA, trust it with RegistryOptions::ca_files (`landscape exec --registry-ca FILE`)"
    } else {
        ""
    }
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
        let agent = agent(opts)?;
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
        let mut last = String::new();
        for scheme in schemes {
            let root = format!("{scheme}://{registry}/v2/");
            let challenge = match agent.get(&root).call() {
                Ok(_) => None,
                Err(ureq::Error::Status(401, resp)) => Some(
                    resp.header("WWW-Authenticate")
                        .unwrap_or_default()
                        .to_string(),
                ),
                Err(ureq::Error::Status(code, _)) => {
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
                Err(ureq::Error::Transport(t)) => {
                    // ureq names the URL itself.
                    last = t.to_string();
                    continue;
                }
            };
            let mut s = Session {
                agent,
                repository: format!("{registry}/{repository}"),
                base: format!("{scheme}://{registry}/v2/{repository}"),
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
                let mut req = self.agent.get(realm);
                if let Some(service) = c.params.get("service") {
                    req = req.query("service", service);
                }
                req = req.query("scope", &format!("repository:{repository}:pull"));
                if let Some(creds) = &creds {
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
                    req = req.set("Authorization", &creds.basic());
                }
                let resp = req.call().map_err(|e| match e {
                    ureq::Error::Status(401 | 403, _) => err(format!(
                        "the token service of {registry} refused {} for {repository}",
                        if creds.is_some() { "the credentials" } else { "anonymous access (the image may be private: give credentials)" }
                    )),
                    other => err(format!("token service {realm}: {other}")),
                })?;
                let mut body = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(resp.into_reader(), 1 << 20),
                    &mut body,
                )
                .map_err(|e| err(format!("token service {realm}: {e}")))?;
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

    /// The manifest (or index) `reference` names, as bytes, with the `Content-Type` the
    /// registry gave it.
    pub(crate) fn manifest(
        &self,
        reference: &str,
        image: &str,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let err = |m: String| ImageStore::err(image, m);
        let resp = self
            .get(
                &format!("manifests/{reference}"),
                Some(&crate::image::manifest_accept()),
            )
            .map_err(|e| match *e {
                ureq::Error::Status(404, _) => err(format!(
                    "manifest {reference} not found in {}",
                    self.repository
                )),
                ureq::Error::Status(401 | 403, _) => err(format!(
                    "access to {} denied (private image? give credentials)",
                    self.repository
                )),
                other => err(format!("fetch manifest {reference}: {other}")),
            })?;
        let content_type = resp.header("Content-Type").map(str::to_string);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(resp.into_reader(), MANIFEST_LIMIT),
            &mut bytes,
        )
        .map_err(|e| err(format!("read manifest: {e}")))?;
        Ok((bytes, content_type))
    }

    /// Downloads the blob `d` describes into `out`, never more than its announced size (plus
    /// one byte, to notice a longer one); returns the bytes written and their sha256 hex.
    pub(crate) fn download(
        &self,
        d: &Descriptor,
        out: &mut dyn std::io::Write,
        image: &str,
    ) -> Result<(u64, String)> {
        use sha2::Digest as _;
        let err = |m: String| ImageStore::err(image, m);
        let resp = self
            .get(&format!("blobs/{}", d.digest()), None)
            .map_err(|e| err(format!("fetch blob {}: {e}", d.digest())))?;
        let limit = if d.size() > 0 { d.size() + 1 } else { u64::MAX };
        let mut r = std::io::Read::take(resp.into_reader(), limit);
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = std::io::Read::read(&mut r, &mut buf)
                .map_err(|e| err(format!("download {}: {e}", d.digest())))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
            out.write_all(&buf[..n])
                .map_err(|e| err(format!("write blob: {e}")))?;
        }
        Ok((total, format!("{:x}", h.finalize())))
    }

    /// `GET <base>/<path>` with the session's credentials.
    pub(crate) fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> std::result::Result<ureq::Response, Box<ureq::Error>> {
        let mut req = self.agent.get(&format!("{}/{path}", self.base));
        if let Some(a) = accept {
            req = req.set("Accept", a);
        }
        if let Some(auth) = &self.auth {
            req = req.set("Authorization", auth);
        }
        req.call().map_err(Box::new)
    }
}

/// The API host for a registry as image references write it (`docker.io` is Docker Hub).
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => DOCKER_HUB,
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "registry-1.docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn credentials_from_given_then_auth_file() {
        let dir = std::env::temp_dir().join(format!("landscape-authfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth.json");
        // "alice:s3cret" and Docker Hub's legacy key.
        std::fs::write(
            &file,
            r#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcmV0"},"https://index.docker.io/v1/":{"auth":"Ym9iOmh1bnRlcjI="}}}"#,
        )
        .unwrap();
        let mut opts = RegistryOptions {
            auth_file: Some(file.clone()),
            ..RegistryOptions::default()
        };
        assert_eq!(
            opts.credentials_for("reg.example:5000").unwrap(),
            Some(Credentials::new("alice", "s3cret"))
        );
        assert_eq!(
            opts.credentials_for(DOCKER_HUB).unwrap(),
            Some(Credentials::new("bob", "hunter2"))
        );
        assert_eq!(opts.credentials_for("other.example").unwrap(), None);
        opts.credentials
            .insert("reg.example:5000".into(), Credentials::new("carol", "x"));
        assert_eq!(
            opts.credentials_for("reg.example:5000")
                .unwrap()
                .unwrap()
                .username,
            "carol"
        );
        opts.ignore_auth_file = true;
        assert_eq!(opts.credentials_for(DOCKER_HUB).unwrap(), None);
        assert!(!format!("{:?}", Credentials::new("u", "pw")).contains("pw"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
