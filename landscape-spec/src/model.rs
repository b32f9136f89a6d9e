//! The typed model of a `ci.yml` landscape.
//!
//! Field names serialise in the file's own spelling (`healthEndpoint`, `runAsUser`, ...), so the
//! JSON form of a model reads like the YAML it came from. Spans are kept in memory only.

use crate::span::{Span, Spanned};
use crate::template::Template;
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The schema version of a file (`schemaVersion`). Absent means [`SchemaVersion::V0_1`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum SchemaVersion {
    /// No `schemaVersion`: flat `prepare.steps` / `test.steps` / `run.steps`.
    #[default]
    #[serde(rename = "v0.1")]
    V0_1,
    /// `v0.2`: services under `run.<name>`.
    #[serde(rename = "v0.2")]
    V0_2,
    /// `v0.3`.
    #[serde(rename = "v0.3")]
    V0_3,
    /// `v0.4`: `provider.schemaVersion`, headless routes.
    #[serde(rename = "v0.4")]
    V0_4,
}

impl SchemaVersion {
    /// The newest version, the target of [`crate::upgrade()`].
    pub const LATEST: SchemaVersion = SchemaVersion::V0_4;
    /// Every version, oldest first.
    pub const ALL: [SchemaVersion; 4] = [
        SchemaVersion::V0_1,
        SchemaVersion::V0_2,
        SchemaVersion::V0_3,
        SchemaVersion::V0_4,
    ];

    /// The spelling used in files (`v0.2`).
    pub fn as_str(&self) -> &'static str {
        match self {
            SchemaVersion::V0_1 => "v0.1",
            SchemaVersion::V0_2 => "v0.2",
            SchemaVersion::V0_3 => "v0.3",
            SchemaVersion::V0_4 => "v0.4",
        }
    }

    /// Parses the spelling used in files.
    pub fn parse(s: &str) -> Option<SchemaVersion> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether services live under `run.<name>` (v0.2 and later).
    pub fn has_services(&self) -> bool {
        *self >= SchemaVersion::V0_2
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole `ci.yml` (or `ci.<profile>.yml`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Landscape {
    /// `schemaVersion`.
    #[serde(default)]
    pub schema_version: Spanned<SchemaVersion>,
    /// `prepare`: build steps, run once in the app directory.
    #[serde(default)]
    pub prepare: Stage,
    /// `test`: test steps.
    #[serde(default)]
    pub test: Stage,
    /// `run`: the services (v0.2+) or the flat run steps (v0.1).
    #[serde(default)]
    pub run: Run,
}

impl Landscape {
    /// The services, in file order (empty for v0.1 files; see [`crate::upgrade()`]).
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        let map = match &self.run {
            Run::Services(m) => Some(m),
            Run::Steps(_) => None,
        };
        map.into_iter().flat_map(|m| m.values())
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        match &self.run {
            Run::Services(m) => m.get(name),
            Run::Steps(_) => None,
        }
    }
}

/// A stage (`prepare`, `test`, or v0.1's `run`): a list of steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One step: a shell command with an optional display name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Spanned<String>>,
    /// `command`: run with `/bin/sh -c`. Shell variables (`$WORKSPACE_ID`) are not templates.
    pub command: Spanned<String>,
}

/// What `run` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Run {
    /// v0.1: `run.steps`, one implicit service.
    Steps(Stage),
    /// v0.2+: `run.<name>`, services by name in file order.
    Services(#[serde(deserialize_with = "named_services")] IndexMap<String, Service>),
}

impl Default for Run {
    fn default() -> Self {
        Run::Services(IndexMap::new())
    }
}

fn named_services<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, Service>, D::Error> {
    let mut m = IndexMap::<String, Service>::deserialize(d)?;
    for (k, s) in m.iter_mut() {
        s.name = Spanned::unspanned(k.clone());
    }
    Ok(m)
}

/// The four kinds of service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceKind {
    /// Runs `steps` on the shared base image (a "Reactive").
    Reactive,
    /// Runs an `image` (optionally with a `command` list, or `steps`).
    ManagedContainer,
    /// A marketplace service (`provider` + `plan {id, parameters}`).
    ManagedService,
    /// Only `network.paths[].target`: routes to something outside the landscape.
    HeadlessRoute,
}

impl ServiceKind {
    /// A human name ("managed container").
    pub fn describe(&self) -> &'static str {
        match self {
            ServiceKind::Reactive => "reactive",
            ServiceKind::ManagedContainer => "managed container",
            ServiceKind::ManagedService => "managed service",
            ServiceKind::HeadlessRoute => "headless route",
        }
    }
}

/// One service under `run.<name>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// The key under `run`.
    #[serde(skip)]
    pub name: Spanned<String>,
    /// `steps` (Reactives; also allowed on containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
    /// `image` (Managed Containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Spanned<String>>,
    /// `baseImage` (legacy spelling of `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<Spanned<String>>,
    /// `command`: the container's argv, run directly (no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Spanned<Vec<String>>>,
    /// `provider` (Managed Services). Boxed, like the other Managed Service parts, so that
    /// the services that do not use them stay small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Box<Provider>>,
    /// `plan`: an integer plan id, or `{id, parameters}` for Managed Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Spanned<Plan>>,
    /// `config` (Managed Services); string values may hold templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Box<IndexMap<String, Spanned<serde_json::Value>>>>,
    /// `secrets` (Managed Services), usually vault templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Box<IndexMap<String, Spanned<Template>>>>,
    /// `backups` (Managed Services), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<Box<Spanned<serde_json::Value>>>,
    /// `replicas` (default 1; see [`Service::replicas`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Spanned<u32>>,
    /// Service-level `isPublic` (legacy network form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_public: Option<Spanned<bool>>,
    /// `healthEndpoint` as written (see [`Service::health`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_endpoint: Option<Spanned<String>>,
    /// `env`: values may hold templates; numbers and bools are kept as their text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<IndexMap<String, EnvVar>>,
    /// `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// `runAsUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<Spanned<u32>>,
    /// `runAsGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<Spanned<u32>>,
    /// `volumeMounts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// `mountSubPath` (legacy: the part of the app directory mounted at `/home/user/app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_sub_path: Option<Spanned<String>>,
}

impl Service {
    /// The kind, derived from the fields present.
    pub fn kind(&self) -> ServiceKind {
        if self.provider.is_some() || matches!(self.plan.as_deref(), Some(Plan::Managed(_))) {
            ServiceKind::ManagedService
        } else if self.image.is_some() || self.base_image.is_some() || self.command.is_some() {
            ServiceKind::ManagedContainer
        } else if self.steps.is_none()
            && self
                .network
                .as_ref()
                .is_some_and(|n| !n.paths.is_empty() && n.paths.iter().all(|p| p.target.is_some()))
        {
            ServiceKind::HeadlessRoute
        } else {
            ServiceKind::Reactive
        }
    }

    /// `replicas`, 1 when absent.
    pub fn replicas(&self) -> u32 {
        self.replicas.as_ref().map_or(1, |r| r.value)
    }

    /// The integer plan id (for `plan: 101` or `plan: {id: 101}`).
    pub fn plan_id(&self) -> Option<u64> {
        match self.plan.as_deref()? {
            Plan::Id(id) => Some(*id),
            Plan::Managed(m) => m.id.as_ref().map(|i| i.value),
        }
    }

    /// The image, whichever spelling (`image` or legacy `baseImage`) was used.
    pub fn image_ref(&self) -> Option<&Spanned<String>> {
        self.image.as_ref().or(self.base_image.as_ref())
    }

    /// The steps (empty when absent).
    pub fn steps(&self) -> &[Step] {
        self.steps.as_deref().unwrap_or(&[])
    }

    /// The env entries (empty when absent).
    pub fn env(&self) -> impl Iterator<Item = (&String, &EnvVar)> {
        self.env.iter().flat_map(|m| m.iter())
    }

    /// The volume mounts (empty when absent).
    pub fn volume_mounts(&self) -> &[VolumeMount] {
        self.volume_mounts.as_deref().unwrap_or(&[])
    }

    /// The health endpoint, with the default `http://localhost:3000/` when absent.
    /// `None` when the written value does not parse (the validator reports it).
    pub fn health(&self) -> Option<HealthEndpoint> {
        match &self.health_endpoint {
            None => Some(HealthEndpoint::default()),
            Some(s) => HealthEndpoint::parse(s).ok(),
        }
    }
}

/// `provider` of a Managed Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// `name` (e.g. `postgres`).
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// `version` (legacy spelling of `schemaVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Spanned<String>>,
    /// `schemaVersion` (e.g. `v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<Spanned<String>>,
}

/// `plan`: an integer for Reactives and containers, `{id, parameters}` for Managed Services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Plan {
    /// `plan: 101`.
    Id(u64),
    /// `plan: {id: 0, parameters: {...}}` (boxed: most plans are plain ids).
    Managed(Box<ManagedPlan>),
}

/// `plan: {id, parameters}` of a Managed Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedPlan {
    /// `id`.
    #[serde(default)]
    pub id: Option<Spanned<u64>>,
    /// `parameters`, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<IndexMap<String, Spanned<serde_json::Value>>>,
}

/// One `env` entry. Equality compares the value only (spans are not part of the model's meaning).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvVar {
    /// The value, parsed as a template (numbers and bools as their text).
    pub value: Spanned<Template>,
    /// Where the key was written.
    #[serde(skip)]
    pub key_span: Span,
}

impl PartialEq for EnvVar {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// `network`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// `paths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathSpec>,
    /// Legacy `path` (one route on port 3000).
    #[serde(default, rename = "path", skip_serializing_if = "Option::is_none")]
    pub legacy_path: Option<Spanned<String>>,
    /// Legacy `stripPath` beside `path`.
    #[serde(default, rename = "stripPath", skip_serializing_if = "Option::is_none")]
    pub legacy_strip_path: Option<Spanned<bool>>,
    /// Whether `ports:` / `paths:` keys were written (even empty), to tell `paths: []` from absent.
    #[serde(skip)]
    pub written: NetworkKeys,
}

/// Which list keys a `network` block spelled out (kept for diagnostics and faithful output).
/// Equality ignores it (like spans): two networks with the same entries are equal.
#[derive(Clone, Copy, Debug, Default, Eq)]
pub struct NetworkKeys {
    /// `ports:` was present.
    pub ports: Option<Span>,
    /// `paths:` was present.
    pub paths: Option<Span>,
}

impl PartialEq for NetworkKeys {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Network {
    /// Whether the legacy single-path form (`network.path`) is used.
    pub fn is_legacy(&self) -> bool {
        self.legacy_path.is_some() || self.legacy_strip_path.is_some()
    }
}

/// One `network.ports[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// `port` (1..65535).
    pub port: Spanned<u16>,
    /// `isPublic`: reachable from outside at `<workspace>-<port>-<service>.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_public: Option<Spanned<bool>>,
}

/// One `network.paths[]` entry: a public path prefix routed to a port of the service, or to
/// `target` for a headless route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathSpec {
    /// `port` (required except on headless routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Spanned<u16>>,
    /// `path`: the public prefix (starts with `/`).
    pub path: Spanned<String>,
    /// `stripPath`: remove the prefix before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_path: Option<Spanned<bool>>,
    /// `target`: a URL outside the landscape (headless routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Spanned<Template>>,
}

impl PathSpec {
    /// `stripPath`, false when absent.
    pub fn strip(&self) -> bool {
        self.strip_path.as_ref().is_some_and(|s| s.value)
    }
}

/// One `volumeMounts[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// `name`: always `_workspace` (the app directory).
    pub name: Spanned<String>,
    /// `mountPath`: where it appears inside the container (absolute).
    pub mount_path: Spanned<String>,
    /// `workspacePath`: the part of the app directory to mount (relative; empty = all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_path: Option<Spanned<String>>,
}

/// The scheme of a health endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthScheme {
    /// An HTTP GET must answer 2xx/3xx.
    Http,
    /// An HTTPS GET must answer 2xx/3xx.
    Https,
    /// A TCP connect must succeed.
    Tcp,
}

/// A parsed `healthEndpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthEndpoint {
    /// The scheme.
    pub scheme: HealthScheme,
    /// The host (normally `localhost`).
    pub host: String,
    /// The port (defaults: 80 for http, 443 for https).
    pub port: u16,
    /// The path, starting with `/` (empty for tcp).
    pub path: String,
}

impl Default for HealthEndpoint {
    fn default() -> Self {
        HealthEndpoint {
            scheme: HealthScheme::Http,
            host: "localhost".into(),
            port: 3000,
            path: "/".into(),
        }
    }
}

impl HealthEndpoint {
    /// The default written form.
    pub const DEFAULT: &'static str = "http://localhost:3000/";

    /// Parses `http://host:port/path`, `https://...` or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<HealthEndpoint, String> {
        let (scheme, host, port, path) = Self::parts(s)?;
        Ok(HealthEndpoint {
            scheme,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// [`HealthEndpoint::parse`] without allocating: scheme, host, port and path (`/` when
    /// an http(s) endpoint has none, empty for tcp).
    pub(crate) fn parts(s: &str) -> Result<(HealthScheme, &str, u16, &str), String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (HealthScheme::Http, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (HealthScheme::Https, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (HealthScheme::Tcp, r)
        } else {
            return Err(format!(
                "health endpoint `{s}` has no supported scheme; expected one of http://, https://, tcp://"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if scheme == HealthScheme::Tcp && !path.is_empty() && path != "/" {
            return Err(format!("tcp health endpoint `{s}` cannot have a path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("health endpoint `{s}` has an invalid port `{p}` (expected 1..65535)")
                })?;
                (h, port)
            }
            None => match scheme {
                HealthScheme::Http => (authority, 80),
                HealthScheme::Https => (authority, 443),
                HealthScheme::Tcp => return Err(format!("tcp health endpoint `{s}` needs a port")),
            },
        };
        if host.is_empty() {
            return Err(format!("health endpoint `{s}` has no host"));
        }
        let path = match scheme {
            HealthScheme::Tcp => "",
            _ if path.is_empty() => "/",
            _ => path,
        };
        Ok((scheme, host, port, path))
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// A large landscape holds thousands of services: keep the rarely used parts boxed.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_service_stays_small() {
        let size = std::mem::size_of::<Service>();
        assert!(size <= 680, "Service grew to {size} bytes");
        assert!(std::mem::size_of::<Plan>() <= 16);
        assert!(std::mem::size_of::<crate::Template>() <= 40);
    }
}
