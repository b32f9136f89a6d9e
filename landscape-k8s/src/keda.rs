//! The part of the KEDA HTTP add-on (`http.keda.sh/v1alpha1`) this crate emits for
//! off-when-unused services (see [`crate::ScaleToZero`]).
//!
//! The add-on is a set of CRDs, so `k8s-openapi` has no types for it. These structs cover
//! what a scaled-to-zero service needs: an `HTTPScaledObject` naming the host and path
//! prefixes the add-on's interceptor routes, the Deployment to scale and the Service to
//! forward to, the replica range and the idle period. Field names follow the add-on's CRD
//! (`http.keda.sh_httpscaledobjects.yaml`, v0.8+; `scaleTargetRef.name`/`kind`/`apiVersion`
//! replaced the older `scaleTargetRef.deployment`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The API version of [`HttpScaledObject`].
pub const API_VERSION: &str = "http.keda.sh/v1alpha1";
/// The add-on's interceptor proxy Service (in the add-on's namespace, `keda` by default).
pub const INTERCEPTOR_SERVICE: &str = "keda-add-ons-http-interceptor-proxy";
/// The port of [`INTERCEPTOR_SERVICE`].
pub const INTERCEPTOR_PORT: u16 = 8080;
/// The `ExternalName` Service in the landscape's namespace that names the interceptor, for
/// Ingresses (which cannot reach a Service in another namespace).
pub const INTERCEPTOR_ALIAS: &str = "keda-interceptor";

/// An `HTTPScaledObject`: the add-on scales `scaleTargetRef` between `replicas.min` and
/// `replicas.max` by the requests its interceptor forwards for `hosts` × `pathPrefixes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpScaledObject {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `HTTPScaledObject`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The scaling and routing.
    pub spec: HttpScaledObjectSpec,
}

impl HttpScaledObject {
    /// An object with this metadata and spec (`apiVersion` and `kind` filled in).
    pub fn new(metadata: ObjectMeta, spec: HttpScaledObjectSpec) -> HttpScaledObject {
        HttpScaledObject {
            api_version: API_VERSION.into(),
            kind: "HTTPScaledObject".into(),
            metadata,
            spec,
        }
    }
}

/// `HTTPScaledObject.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpScaledObjectSpec {
    /// The `Host` header values the interceptor routes to the target (`*`: any host, add-on
    /// 0.12+).
    pub hosts: Vec<String>,
    /// The path prefixes (segment-wise) the interceptor routes to the target; absent: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// The workload to scale and the Service to forward to.
    pub scale_target_ref: ScaleTargetRef,
    /// The replica range.
    pub replicas: ReplicaRange,
    /// Seconds without requests before scaling down to `replicas.min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaledown_period: Option<u32>,
}

/// `spec.scaleTargetRef`: the workload (a Deployment here) and its Service and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// The workload's name.
    pub name: String,
    /// The workload's kind (`Deployment`).
    pub kind: String,
    /// The workload's API version (`apps/v1`).
    pub api_version: String,
    /// The Service the interceptor forwards to (same namespace).
    pub service: String,
    /// The Service port.
    pub port: u16,
}

/// `spec.replicas`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRange {
    /// Fewest replicas (0: off when unused).
    pub min: i32,
    /// Most replicas.
    pub max: i32,
}
