//! Upgrades any accepted file to the newest schema (v0.4), reporting every change with the
//! position it came from. Upgrading an upgraded model changes nothing.
//!
//! - v0.1 (`run.steps`) becomes one service `app` with port 3000 routed at `/`.
//! - The legacy network form (`network.path` / `stripPath`, service-level `isPublic`) becomes
//!   `ports: [{port: 3000, isPublic}]` + `paths: [{port: 3000, path, stripPath}]`.
//! - `provider.version` becomes `provider.schemaVersion`; `baseImage` becomes `image`;
//!   `mountSubPath` becomes a `volumeMounts` entry at `/home/user/app`.

use crate::model::*;
use crate::span::{Span, Spanned};
use indexmap::IndexMap;

/// One change made by [`upgrade()`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Where the changed value was written.
    pub span: Span,
    /// What changed.
    pub message: String,
}

/// The upgraded model and the list of changes.
#[derive(Clone, Debug)]
pub struct Upgraded {
    /// The model in the newest schema.
    pub landscape: Landscape,
    /// Every change, in order.
    pub changes: Vec<Change>,
}

/// The port the legacy forms route to.
pub const LEGACY_PORT: u16 = 3000;
/// The name given to the one service of a v0.1 file.
pub const V01_SERVICE: &str = "app";
/// Where the app directory is mounted.
pub const APP_DIR: &str = "/home/user/app";

/// Upgrades a model to [`SchemaVersion::LATEST`].
pub fn upgrade(l: &Landscape) -> Upgraded {
    let mut out = l.clone();
    let mut changes = Vec::new();
    let mut ch = |span: Span, message: String| changes.push(Change { span, message });
    if out.schema_version.value != SchemaVersion::LATEST {
        ch(
            out.schema_version.span,
            format!(
                "schemaVersion {} -> {}",
                out.schema_version.value,
                SchemaVersion::LATEST
            ),
        );
        out.schema_version = Spanned::new(SchemaVersion::LATEST, out.schema_version.span);
    }
    if let Run::Steps(stage) = &out.run {
        let span = stage
            .steps
            .first()
            .map(|s| s.command.span)
            .unwrap_or_default();
        ch(
            span,
            format!(
                "flat run.steps -> service \"{V01_SERVICE}\" on port {LEGACY_PORT}, routed at /"
            ),
        );
        let svc = Service {
            name: Spanned::unspanned(V01_SERVICE.to_string()),
            steps: Some(stage.steps.clone()),
            network: Some(Network {
                ports: vec![PortSpec {
                    port: LEGACY_PORT.into(),
                    is_public: Some(true.into()),
                }],
                paths: vec![PathSpec {
                    port: Some(LEGACY_PORT.into()),
                    path: "/".to_string().into(),
                    strip_path: None,
                    target: None,
                }],
                ..Network::default()
            }),
            ..Service::default()
        };
        let mut m = IndexMap::new();
        m.insert(V01_SERVICE.to_string(), svc);
        out.run = Run::Services(m);
    }
    if let Run::Services(services) = &mut out.run {
        for (name, s) in services.iter_mut() {
            let obj = format!("service \"{name}\"");
            if let Some(base) = s.base_image.take() {
                ch(base.span, format!("{obj}: baseImage -> image"));
                if s.image.is_none() {
                    s.image = Some(base);
                }
            }
            if let Some(p) = &mut s.provider {
                if let Some(v) = p.version.take() {
                    ch(
                        v.span,
                        format!("{obj}: provider.version -> provider.schemaVersion"),
                    );
                    if p.schema_version.is_none() {
                        p.schema_version = Some(v);
                    }
                }
            }
            if let Some(sub) = s.mount_sub_path.take() {
                ch(
                    sub.span,
                    format!("{obj}: mountSubPath -> volumeMounts at {APP_DIR}"),
                );
                s.volume_mounts
                    .get_or_insert_with(Vec::new)
                    .push(VolumeMount {
                        name: Spanned::new("_workspace".to_string(), sub.span),
                        mount_path: Spanned::new(APP_DIR.to_string(), sub.span),
                        workspace_path: Some(sub),
                    });
            }
            let Some(n) = &mut s.network else { continue };
            if !n.is_legacy() {
                continue;
            }
            let at = n
                .legacy_path
                .as_ref()
                .map(|p| p.span)
                .or(n.legacy_strip_path.as_ref().map(|p| p.span))
                .unwrap_or_default();
            let public = s.is_public.take();
            ch(
                at,
                format!("{obj}: network.path -> ports + paths on port {LEGACY_PORT}"),
            );
            if !n.ports.iter().any(|p| p.port.value == LEGACY_PORT) {
                n.ports.push(PortSpec {
                    port: Spanned::new(LEGACY_PORT, at),
                    is_public: Some(public.unwrap_or(Spanned::new(false, at))),
                });
            }
            if let Some(path) = n.legacy_path.take() {
                n.paths.push(PathSpec {
                    port: Some(Spanned::new(LEGACY_PORT, path.span)),
                    path,
                    strip_path: n.legacy_strip_path.take(),
                    target: None,
                });
            }
            n.legacy_strip_path = None;
            n.written.ports.get_or_insert(at);
            n.written.paths.get_or_insert(at);
        }
    }
    Upgraded {
        landscape: out,
        changes,
    }
}
