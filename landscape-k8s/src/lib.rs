//! # landscape-k8s
//!
//! A pure translator from a `ci.yml` landscape ([`landscape_spec::Landscape`]) to Kubernetes
//! objects built from [`k8s_openapi`] types (plus a minimal Gateway API `HTTPRoute`, see
//! [`gateway`], and optionally a KEDA `HTTPScaledObject`, see [`keda`]), written out as multi-document YAML. No cluster, no HTTP, no async.
//!
//! ```
//! use landscape_k8s::{render, Options, Object};
//!
//! let src = "\
//! schemaVersion: v0.4
//! run:
//!   api:
//!     replicas: 2
//!     healthEndpoint: http://localhost:3000/health
//!     steps:
//!       - command: python3 api.py
//!     network:
//!       ports: [{port: 3000}]
//!       paths: [{port: 3000, path: /api, stripPath: true}]
//! ";
//! let landscape = landscape_spec::parse_str("ci.yml", src).landscape.unwrap();
//! let opts = Options { image: Some("registry.example/workspace:1".into()), ..Options::default() };
//! let out = render(&landscape, &opts).unwrap();
//!
//! let Some(Object::Deployment(d)) = out.find("Deployment", "api") else { panic!() };
//! assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
//! let Some(Object::HttpRoute(r)) = out.find("HTTPRoute", "api") else { panic!() };
//! let rule = &r.spec.rules[0];
//! assert_eq!(rule.matches[0].path.value, "/api");
//! assert_eq!(rule.filters[0].url_rewrite.as_ref().unwrap().path.as_ref().unwrap()
//!     .replace_prefix_match.as_deref(), Some("/"));
//! let yaml = out.to_yaml();
//! assert!(yaml.contains("kind: Deployment") && yaml.contains("kind: HTTPRoute"));
//! ```
//!
//! Errors and warnings are [`landscape_spec::Diagnostic`]s with the ci.yml position of the
//! value they are about, so a host renders them like `landscape validate` does.
//!
//! The crate depends on `k8s-openapi` without a version feature, as that crate asks of
//! libraries: the final binary picks the Kubernetes version (the `landscape` facade pins
//! `v1_33`).
//!
//! With the cargo feature `apply`, the `apply` module applies a rendering to a cluster
//! (kube-rs server-side apply, waiting for the Jobs and rollouts) and shows what that would
//! change (`apply::diff`).
#![warn(missing_docs)]

#[cfg(feature = "apply")]
pub mod apply;
pub mod gateway;
pub mod keda;
mod names;
mod translate;
pub mod yaml;

use gateway::HttpRoute;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use keda::HttpScaledObject;
use landscape_spec::{Diagnostic, PlanCatalogue};
use std::collections::BTreeMap;
use std::fmt;

pub use names::{is_dns1035_label, is_dns1123_label, is_env_name, is_secret_key};
pub use translate::render;

/// The stable diagnostic codes of this crate (errors and warnings never share a code).
pub mod codes {
    /// Error: a plan id that the catalogue does not have.
    pub const UNKNOWN_PLAN: &str = "k8s-unknown-plan";
    /// Error: more replicas than the plan allows.
    pub const TOO_MANY_REPLICAS: &str = "k8s-too-many-replicas";
    /// Error: a Reactive (or a stage, or a container without `image`) with no image to run.
    pub const NO_IMAGE: &str = "k8s-no-image";
    /// Error: a name that is not valid in Kubernetes (object, env var, Secret key).
    pub const INVALID_NAME: &str = "k8s-invalid-name";
    /// Error: two things that would get the same Kubernetes name.
    pub const COLLISION: &str = "k8s-name-collision";
    /// Error: a route that cannot be built (no port, a bad or secret `target`).
    pub const INVALID_ROUTE: &str = "k8s-invalid-route";
    /// Error: a `healthEndpoint` or volume mount that does not parse.
    pub const INVALID_VALUE: &str = "k8s-invalid-value";
    /// Warning: a Managed Service (provider) is not rendered.
    pub const W_MANAGED_SERVICE: &str = "k8s-managed-service-skipped";
    /// Warning: a plan id with no catalogue to look it up: no resources set.
    pub const W_NO_CATALOGUE: &str = "k8s-no-plan-catalogue";
    /// Warning: off-when-unused (an on-demand plan) is not rendered; the service runs always.
    pub const W_ON_DEMAND: &str = "k8s-on-demand-ignored";
    /// Warning: a public port without a domain to build its host name from.
    pub const W_PUBLIC_PORT: &str = "k8s-public-port-skipped";
    /// Warning: `stripPath` on an Ingress, which has no portable prefix rewrite.
    pub const W_INGRESS_STRIP: &str = "k8s-ingress-strip-ignored";
    /// Warning: a headless route the chosen output cannot express completely.
    pub const W_TARGET: &str = "k8s-target-partial";
    /// Warning: a health endpoint host other than localhost (the kubelet probes the pod).
    pub const W_HEALTH_HOST: &str = "k8s-health-host-ignored";
    /// Warning: a `${{ workspace.* }}` / `${{ team.id }}` reference with no value given.
    pub const W_CONTEXT: &str = "k8s-context-missing";
    /// Warning: resolved vault values were given, but not this one.
    pub const W_VAULT_MISSING: &str = "k8s-vault-value-missing";
    /// Warning: with [`crate::Options::scale_to_zero`], a service that is not scaled to zero
    /// (no public paths, or public traffic on more than one port).
    pub const W_NOT_SCALED: &str = "k8s-not-scaled-to-zero";
}

/// How public paths are exposed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Routes {
    /// Gateway API `HTTPRoute`s attached to [`Options::gateway`] (the default).
    #[default]
    HttpRoute,
    /// `networking.k8s.io/v1` `Ingress`es (no prefix stripping: a warning where it is asked).
    Ingress,
    /// No route objects (Services only).
    None,
}

/// Where `HTTPRoute`s attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRef {
    /// The Gateway's name.
    pub name: String,
    /// Its namespace (`None`: the landscape's namespace).
    pub namespace: Option<String>,
    /// A listener of that Gateway.
    pub section_name: Option<String>,
}

impl Default for GatewayRef {
    fn default() -> Self {
        GatewayRef {
            name: "landscape".into(),
            namespace: None,
            section_name: None,
        }
    }
}

/// Resolved secret values (vault name → value). `Debug` prints the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(pub BTreeMap<String, String>);

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Values for the non-secret template references (as in `landscape-net`'s route options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// `${{ workspace.id }}`; also the first part of public-port host names.
    pub workspace_id: Option<String>,
    /// `${{ workspace.devDomain }}`; the domain of public-port host names.
    pub dev_domain: Option<String>,
    /// `${{ team.id }}`.
    pub team_id: Option<String>,
    /// `${{ workspace.env['KEY'] }}`.
    pub env: BTreeMap<String, String>,
}

/// Off-when-unused through the KEDA HTTP add-on ([`Options::scale_to_zero`]): every
/// service with public paths gets an `HTTPScaledObject` (min 0 replicas), and its routes go
/// through the add-on's interceptor, which holds a request while the service wakes up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleToZero {
    /// Seconds without requests before a service goes down to zero (`scaledownPeriod`).
    pub idle_seconds: u32,
    /// The most replicas (`replicas.max`); `None`: the service's own `replicas`. Never more
    /// than the plan's `maxReplicas`.
    pub max_replicas: Option<u32>,
    /// The namespace the add-on is installed in (its interceptor proxy Service lives there).
    pub namespace: String,
}

impl Default for ScaleToZero {
    fn default() -> Self {
        ScaleToZero {
            idle_seconds: 300,
            max_replicas: None,
            namespace: "keda".into(),
        }
    }
}

/// What [`render`] needs beside the model. `Default` gives namespace `landscape`, Gateway
/// `landscape`, a 10Gi app-directory claim and no images.
#[derive(Clone, Debug)]
pub struct Options {
    /// The namespace every object lives in (one namespace per landscape).
    pub namespace: String,
    /// Whether to emit the `Namespace` object itself.
    pub create_namespace: bool,
    /// The plan catalogue (`plan` → requests = limits).
    pub plans: Option<PlanCatalogue>,
    /// The image every Reactive and the prepare/test Jobs run in (a cluster has no host base).
    pub image: Option<String>,
    /// Per-service images, overriding [`Options::image`] and a container's own `image`.
    pub image_map: BTreeMap<String, String>,
    /// How public paths are exposed.
    pub routes: Routes,
    /// The Gateway of the `HTTPRoute`s.
    pub gateway: GatewayRef,
    /// Host names of the path routes (empty: any host).
    pub hostnames: Vec<String>,
    /// `ingressClassName` of the Ingresses.
    pub ingress_class: Option<String>,
    /// The size requested for the app-directory claim.
    pub storage: String,
    /// The storage class of the app-directory claim (it must offer `ReadWriteMany`).
    pub storage_class: Option<String>,
    /// Resolved vault values; `None`: the Secret is emitted with its keys listed only.
    pub vault: Option<SecretValues>,
    /// Values for `${{ workspace.* }}` / `${{ team.id }}`.
    pub context: Context,
    /// Scale services with public paths to zero when unused (KEDA HTTP add-on); `None`:
    /// every Deployment runs its `replicas` all the time.
    pub scale_to_zero: Option<ScaleToZero>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "landscape".into(),
            create_namespace: true,
            plans: None,
            image: None,
            image_map: BTreeMap::new(),
            routes: Routes::default(),
            gateway: GatewayRef::default(),
            hostnames: Vec::new(),
            ingress_class: None,
            storage: "10Gi".into(),
            storage_class: None,
            vault: None,
            context: Context::default(),
            scale_to_zero: None,
        }
    }
}

/// The name of the claim that holds the app directory.
pub const APP_CLAIM: &str = "app";
/// The name of the Secret holding the vault values.
pub const VAULT_SECRET: &str = "vault";
/// The label that orders applying: `setup`, `prepare`, `test`, `run`.
pub const PHASE_LABEL: &str = "landscape.dev/phase";
/// The annotation on the vault Secret listing the keys it must hold.
pub const KEYS_ANNOTATION: &str = "landscape.dev/required-keys";

/// One rendered object.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// The landscape's namespace.
    Namespace(Namespace),
    /// The shared app directory.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// The vault values.
    Secret(Secret),
    /// A prepare or test stage.
    Job(Job),
    /// A service's replicas.
    Deployment(Deployment),
    /// A service's ports (ClusterIP) or a headless route's target (ExternalName).
    Service(Service),
    /// Public paths (Gateway API).
    HttpRoute(HttpRoute),
    /// Public paths (Ingress fallback).
    Ingress(Ingress),
    /// Off-when-unused (KEDA HTTP add-on).
    HttpScaledObject(HttpScaledObject),
}

impl Object {
    /// The kind (`Deployment`, `HTTPRoute`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Secret(_) => "Secret",
            Object::Job(_) => "Job",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::HttpRoute(_) => "HTTPRoute",
            Object::Ingress(_) => "Ingress",
            Object::HttpScaledObject(_) => "HTTPScaledObject",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::HttpScaledObject(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// The object as JSON (with `apiVersion` and `kind`).
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Object::Namespace(o) => serde_json::to_value(o),
            Object::PersistentVolumeClaim(o) => serde_json::to_value(o),
            Object::Secret(o) => serde_json::to_value(o),
            Object::Job(o) => serde_json::to_value(o),
            Object::Deployment(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::HttpRoute(o) => serde_json::to_value(o),
            Object::Ingress(o) => serde_json::to_value(o),
            Object::HttpScaledObject(o) => serde_json::to_value(o),
        };
        // Serialising these types cannot fail: string keys, no non-finite floats.
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// What [`render`] made: the objects in apply order, the warnings, and notes for the reader.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// The namespace of every object.
    pub namespace: String,
    /// The objects: setup (Namespace, claim, Secret), the stage Jobs, then the services.
    pub objects: Vec<Object>,
    /// Whatever the cluster objects cannot express, with the ci.yml position.
    pub warnings: Vec<Diagnostic>,
    /// Notes: things the user must do (fill the Secret) — never a secret value.
    pub notes: Vec<String>,
}

impl Rendered {
    /// The object of this kind and name.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Object> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    }

    /// The objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    /// Multi-document YAML: a comment with the apply order and the notes, then one
    /// document per object.
    pub fn to_yaml(&self) -> String {
        let ns = &self.namespace;
        let mut out = String::from(
            "# Rendered by landscape-k8s. Apply in phases (label landscape.dev/phase):\n",
        );
        let has = |kind: &str, name: &str| self.find(kind, name).is_some();
        out.push_str("#   kubectl apply -f FILE -l landscape.dev/phase=setup\n");
        for stage in ["prepare", "test"] {
            if has("Job", stage) {
                out.push_str(&format!(
                    "#   kubectl apply -f FILE -l landscape.dev/phase={stage} && kubectl -n {ns} wait --for=condition=complete --timeout=1h job/{stage}\n"
                ));
            }
        }
        out.push_str("#   kubectl apply -f FILE -l landscape.dev/phase=run\n");
        for n in &self.notes {
            for line in n.lines() {
                out.push_str("# note: ");
                out.push_str(line);
                out.push('\n');
            }
        }
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&yaml::to_yaml(&o.to_json()));
        }
        out
    }
}

/// Why a landscape could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems in the ci.yml, each with its position (render them with
    /// [`landscape_spec::diag::render_human`]).
    #[error("the landscape cannot be rendered for Kubernetes:\n{}", list(.0))]
    Invalid(Vec<Diagnostic>),
    /// A bad option (not tied to a ci.yml position).
    #[error("{0}")]
    Options(String),
}

fn list(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| format!("{}: {} [{}]", d.span.start, d.message, d.code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads an image map: a YAML mapping `service: image`.
///
/// ```
/// let m = landscape_k8s::image_map_from_yaml("web: nginx:1.27\napi: \"registry/api:2\"\n").unwrap();
/// assert_eq!(m["api"], "registry/api:2");
/// assert!(landscape_k8s::image_map_from_yaml("- a").is_err());
/// ```
pub fn image_map_from_yaml(text: &str) -> Result<BTreeMap<String, String>, String> {
    use landscape_spec::yaml::{parse_document, Limits, NodeKind};
    let mut diags = Vec::new();
    let root = parse_document(text, &Limits::default(), &mut diags);
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(format!("{}: {}", d.span.start, d.message));
    }
    let Some(root) = root else {
        return Err("not YAML".into());
    };
    let mut out = BTreeMap::new();
    match root.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let (Some(k), Some(img)) = (k.as_str(), v.as_str()) else {
                    return Err(format!("{}: expected `service: image`", v.span.start));
                };
                if img.trim().is_empty() {
                    return Err(format!("{}: empty image for service {k:?}", v.span.start));
                }
                out.insert(k.to_string(), img.to_string());
            }
        }
        NodeKind::Scalar(ref s, _) if s.is_empty() => {}
        _ => {
            return Err(format!(
                "{}: expected a mapping `service: image`",
                root.span.start
            ))
        }
    }
    Ok(out)
}
