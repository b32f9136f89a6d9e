//! Talking to an OCI distribution registry (feature `registry`, on by default): HTTPS (with the
//! `registry-tls` feature) or plain HTTP for loopback registries and those listed as insecure,
//! and the two ways registries ask for credentials: `Basic`, and `Bearer` tokens from the
//! registry's token service (anonymous, as Docker Hub and GHCR give for public images, or with
//! credentials). The options here exist without the feature too, so that hosts build the same
//! way either way; pulls then fail with an error that names the feature.
//!
//! Credentials come from [`RegistryOptions::credentials`] or, for registries not listed there,
//! from a Docker/Podman auth file (`$REGISTRY_AUTH_FILE`, else `~/.docker/config.json`;
//! `auths.<registry>.auth`, credential helpers are not run).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

#[cfg(feature = "registry")]
mod session;
#[cfg(feature = "registry")]
pub(crate) use session::Session;

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

    #[cfg(feature = "registry")]
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
    /// The longest a connection to a registry (or to where it redirects) may take to be
    /// ready: TCP connect plus, over HTTPS, the TLS handshake (default 30 s). A server that
    /// accepts but never completes a handshake — a plain-HTTP server tried over HTTPS first
    /// — fails the attempt then.
    pub connect_timeout: Option<std::time::Duration>,
}

/// Docker Hub's names for itself: references say `docker.io`, the API lives elsewhere, and
/// auth files key it by its old index URL.
#[cfg(feature = "registry")]
const DOCKER_HUB: &str = "registry-1.docker.io";
#[cfg(feature = "registry")]
const DOCKER_HUB_KEYS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "https://index.docker.io/v1/",
];

/// Whether `registry` (`host[:port]`) is this machine.
#[cfg_attr(not(feature = "registry"), allow(dead_code))]
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost" || host == "127.0.0.1" || host == "::1"
}

#[cfg(feature = "registry")]
impl RegistryOptions {
    fn keys(registry: &str) -> Vec<&str> {
        if registry == DOCKER_HUB || registry == "docker.io" {
            DOCKER_HUB_KEYS.to_vec()
        } else {
            vec![registry]
        }
    }

    /// The credentials for `registry`: given ones first, then the auth file.
    fn credentials_for(&self, registry: &str) -> crate::Result<Option<Credentials>> {
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
        let bad = |m: String| {
            crate::image::ImageStore::err(registry, format!("auth file {}: {m}", path.display()))
        };
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

/// The API host for a registry as image references write it (`docker.io` is Docker Hub).
#[cfg(feature = "registry")]
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
    #[cfg(feature = "registry")]
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
