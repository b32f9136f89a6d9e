//! The part of the Gateway API (`gateway.networking.k8s.io/v1`) this crate emits.
//!
//! The Gateway API is a set of CRDs, so `k8s-openapi` has no types for it. These structs
//! cover what a translated landscape needs: an `HTTPRoute` with `PathPrefix` matches,
//! backend references and the `URLRewrite` filter. Field names follow the upstream CRD
//! (`gateway.networking.k8s.io_httproutes.yaml`, v1.0+).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The API version of [`HttpRoute`].
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// An `HTTPRoute`: rules that send matching requests from a Gateway to backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `HTTPRoute`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The routing.
    pub spec: HttpRouteSpec,
}

impl HttpRoute {
    /// A route with this metadata and spec (`apiVersion` and `kind` filled in).
    pub fn new(metadata: ObjectMeta, spec: HttpRouteSpec) -> HttpRoute {
        HttpRoute {
            api_version: API_VERSION.into(),
            kind: "HTTPRoute".into(),
            metadata,
            spec,
        }
    }
}

/// `HTTPRoute.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (listeners) this route attaches to.
    pub parent_refs: Vec<ParentRef>,
    /// Host names the route answers; empty: every host of the listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The rules, one per routed path.
    pub rules: Vec<HttpRouteRule>,
}

/// A reference to the Gateway a route attaches to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// The Gateway's name.
    pub name: String,
    /// Its namespace (absent: the route's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A listener of that Gateway (absent: every listener that allows the route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// One rule: matches, filters, backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// The request matches (any of them selects the rule).
    pub matches: Vec<HttpRouteMatch>,
    /// Filters applied before forwarding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Where matching requests go.
    pub backend_refs: Vec<BackendRef>,
}

/// A request match (only the path part is used).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// The path match.
    pub path: PathMatch,
}

/// A path match: `type` (`PathPrefix`, `Exact`, `RegularExpression`) and `value`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    /// The match type; this crate emits `PathPrefix` (segment-wise, like the local router).
    #[serde(rename = "type")]
    pub type_: String,
    /// The prefix.
    pub value: String,
}

/// A filter; this crate emits only `URLRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// `URLRewrite`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
}

/// `URLRewrite`: replace the host name and/or the matched path prefix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    /// The Host header sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// A path modifier: `ReplacePrefixMatch` with `replacePrefixMatch`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplacePrefixMatch` (or `ReplaceFullPath`).
    #[serde(rename = "type")]
    pub type_: String,
    /// What the matched prefix becomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

impl HttpRouteFilter {
    /// A `URLRewrite` filter replacing the matched prefix with `prefix` (and the Host header
    /// with `hostname`, when given).
    pub fn replace_prefix(prefix: Option<String>, hostname: Option<String>) -> HttpRouteFilter {
        HttpRouteFilter {
            type_: "URLRewrite".into(),
            url_rewrite: Some(UrlRewrite {
                hostname,
                path: prefix.map(|p| PathModifier {
                    type_: "ReplacePrefixMatch".into(),
                    replace_prefix_match: Some(p),
                }),
            }),
        }
    }
}

/// A backend: a Service (possibly `ExternalName`) and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// The Service's name.
    pub name: String,
    /// Its namespace (absent: the route's own; another one needs a `ReferenceGrant` there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service port.
    pub port: u16,
}
