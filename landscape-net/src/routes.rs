//! The route table: host routes and segment-aware path prefixes mapped to weighted backends
//! (service + port) or headless target URLs.
//!
//! This module is pure: no I/O, no tokio. [`RouteTable::lookup`] is what the proxy calls per
//! request; [`crate::spec`] builds a table from a parsed landscape.

use crate::error::Error;

/// One backend of a route: a service's port, with a weight for blue-green and canary splits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Service name, as in `run.<service>` of the ci.yml.
    pub service: String,
    /// The service's port the route forwards to.
    pub port: u16,
    /// Relative weight; 0 means "no traffic". Weights are renormalised over the backends that
    /// have ready endpoints.
    pub weight: u32,
}

impl Backend {
    /// A backend with weight 1.
    pub fn new(service: impl Into<String>, port: u16) -> Self {
        Backend {
            service: service.into(),
            port,
            weight: 1,
        }
    }

    /// The same backend with another weight.
    pub fn weighted(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// A headless route's destination: an absolute `http://host[:port][/base]` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port` (the port is filled in from the scheme when the URL has none).
    pub authority: String,
    /// The host part alone, sent as `Host` upstream.
    pub host_header: String,
    /// Path prefix of the target, without a trailing `/` (empty for the root).
    pub base_path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]` (or `https://`).
    pub fn parse(url: &str) -> Result<Target, Error> {
        let bad = |why: &str| Error::InvalidRoute {
            route: url.to_string(),
            reason: format!("target {why}; expected an absolute URL like http://host:port/path"),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("uses an unsupported scheme")),
        };
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if auth.is_empty() || auth.contains('@') || auth.contains(char::is_whitespace) {
            return Err(bad("has an invalid host"));
        }
        let has_port = match auth.rfind(':') {
            Some(i) => !auth.ends_with(']') && auth[i + 1..].parse::<u16>().is_ok(),
            None => false,
        };
        let authority = if has_port {
            auth.to_string()
        } else {
            format!("{auth}:{default_port}")
        };
        let path = path.split('?').next().unwrap_or("");
        Ok(Target {
            scheme,
            authority,
            host_header: auth.to_string(),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// What a matched route forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// One or more services with weights.
    Backends(Vec<Backend>),
    /// A headless route to an external URL.
    Target(Target),
}

/// One path route: a segment-aware prefix and its action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Name used in logs and metrics (e.g. `backend:8080/api`).
    pub name: String,
    /// Path prefix starting with `/`; `/` matches everything.
    pub prefix: String,
    /// Remove the matched prefix before forwarding (keeping a leading `/`).
    pub strip_prefix: bool,
    /// Where matching requests go.
    pub action: Action,
}

impl Route {
    /// A path route to one service port.
    pub fn to_service(prefix: &str, service: &str, port: u16) -> Route {
        Route {
            name: format!("{service}:{port}{}", normalise_prefix(prefix)),
            prefix: normalise_prefix(prefix),
            strip_prefix: false,
            action: Action::Backends(vec![Backend::new(service, port)]),
        }
    }

    /// A path route to weighted backends (blue-green, canary).
    pub fn split(prefix: &str, backends: Vec<Backend>) -> Route {
        let names: Vec<String> = backends
            .iter()
            .map(|b| format!("{}:{}", b.service, b.port))
            .collect();
        Route {
            name: format!("{}{}", names.join("+"), normalise_prefix(prefix)),
            prefix: normalise_prefix(prefix),
            strip_prefix: false,
            action: Action::Backends(backends),
        }
    }

    /// A headless route to an external URL.
    pub fn to_target(prefix: &str, url: &str) -> Result<Route, Error> {
        let target = Target::parse(url)?;
        Ok(Route {
            name: format!("target:{}{}", target.authority, normalise_prefix(prefix)),
            prefix: normalise_prefix(prefix),
            strip_prefix: false,
            action: Action::Target(target),
        })
    }

    /// The same route with `stripPath` set.
    pub fn strip(mut self, strip: bool) -> Route {
        self.strip_prefix = strip;
        self
    }

    /// Whether `path` lies under this route's prefix (segment-aware).
    pub fn matches(&self, path: &str) -> bool {
        prefix_matches(&self.prefix, path)
    }

    /// The path to send upstream for a request path that [`Route::matches`].
    pub fn rewrite<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if !self.strip_prefix || self.prefix == "/" {
            return path.into();
        }
        let rest = &path[self.prefix.len().min(path.len())..];
        if rest.is_empty() {
            "/".into()
        } else if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

/// `/api/` and `api` become `/api`; the root stays `/`.
fn normalise_prefix(p: &str) -> String {
    let t = p.trim().trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else if t.starts_with('/') {
        t.into()
    } else {
        format!("/{t}")
    }
}

/// Segment-aware prefix match: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A set of path routes; longest matching prefix wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathRoutes {
    routes: Vec<Route>,
}

impl PathRoutes {
    fn insert(&mut self, route: Route) {
        // Longest prefix first, so the first match is the most specific one.
        let pos = self
            .routes
            .iter()
            .position(|r| r.prefix.len() < route.prefix.len())
            .unwrap_or(self.routes.len());
        self.routes.insert(pos, route);
    }

    fn lookup(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(path))
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Host routes (exact host names, case-insensitive, port ignored) and default path routes for
/// every other host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    hosts: Vec<(String, PathRoutes)>,
    default: PathRoutes,
}

/// Where [`RouteTable::lookup`] found a route: `None` for the default routes, otherwise the index
/// of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId {
    /// Index into the host list, `None` for the default (any host) routes.
    pub host: Option<usize>,
    /// Index of the route within its list.
    pub index: usize,
}

impl RouteTable {
    /// An empty table: every request gets 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a path route that applies to every host without a host route of its own.
    pub fn add(&mut self, route: Route) -> &mut Self {
        self.default.insert(route);
        self
    }

    /// Adds a path route for one host name (`<workspace>-<port>-<service>.<domain>`).
    pub fn add_host(&mut self, host: &str, route: Route) -> &mut Self {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.hosts.iter_mut().find(|(h, _)| *h == host) {
            Some((_, routes)) => routes.insert(route),
            None => {
                let mut routes = PathRoutes::default();
                routes.insert(route);
                self.hosts.push((host, routes));
            }
        }
        self
    }

    /// Builder-style [`RouteTable::add`].
    pub fn with(mut self, route: Route) -> Self {
        self.add(route);
        self
    }

    /// Builder-style [`RouteTable::add_host`].
    pub fn with_host(mut self, host: &str, route: Route) -> Self {
        self.add_host(host, route);
        self
    }

    /// Finds the route for a request. `host` may carry a port and any case.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<(RouteId, &Route)> {
        if let Some(host) = host {
            let name = strip_port(host);
            for (i, (h, routes)) in self.hosts.iter().enumerate() {
                if h.eq_ignore_ascii_case(name) {
                    return routes.lookup(path).map(|(index, r)| {
                        (
                            RouteId {
                                host: Some(i),
                                index,
                            },
                            r,
                        )
                    });
                }
            }
        }
        self.default
            .lookup(path)
            .map(|(index, r)| (RouteId { host: None, index }, r))
    }

    pub(crate) fn default_routes(&self) -> &[Route] {
        &self.default.routes
    }

    pub(crate) fn host_routes(&self) -> Vec<&[Route]> {
        self.hosts
            .iter()
            .map(|(_, r)| r.routes.as_slice())
            .collect()
    }

    /// Every route with the host it belongs to (`None` = any host).
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &Route)> {
        self.default.routes.iter().map(|r| (None, r)).chain(
            self.hosts
                .iter()
                .flat_map(|(h, rs)| rs.routes.iter().map(move |r| (Some(h.as_str()), r))),
        )
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a route up by the id [`RouteTable::lookup`] returned.
    pub fn get(&self, id: RouteId) -> Option<&Route> {
        match id.host {
            None => self.default.routes.get(id.index),
            Some(h) => self.hosts.get(h).and_then(|(_, r)| r.routes.get(id.index)),
        }
    }
}

fn strip_port(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_aware_prefixes() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/x/y"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api", "/"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn longest_prefix_wins_regardless_of_insertion_order() {
        let t = RouteTable::new()
            .with(Route::to_service("/", "frontend", 3000))
            .with(Route::to_service("/api", "backend", 8080))
            .with(Route::to_service("/api/admin", "admin", 9000));
        let svc = |p: &str| match &t.lookup(None, p).map(|(_, r)| r.action.clone()) {
            Some(Action::Backends(b)) => b[0].service.clone(),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(svc("/api/admin/x"), "admin");
        assert_eq!(svc("/api/adminx"), "backend");
        assert_eq!(svc("/apix"), "frontend");
        assert_eq!(svc("/"), "frontend");
    }

    #[test]
    fn strip_keeps_leading_slash() {
        let r = Route::to_service("/api/", "b", 1).strip(true);
        assert_eq!(r.prefix, "/api");
        assert_eq!(r.rewrite("/api"), "/");
        assert_eq!(r.rewrite("/api/"), "/");
        assert_eq!(r.rewrite("/api/v1/x"), "/v1/x");
        let root = Route::to_service("/", "b", 1).strip(true);
        assert_eq!(root.rewrite("/x"), "/x");
    }

    #[test]
    fn host_routes_ignore_case_and_port() {
        let t = RouteTable::new()
            .with(Route::to_service("/", "frontend", 3000))
            .with_host(
                "ws1-8080-backend.dev.example",
                Route::to_service("/", "backend", 8080),
            );
        let (id, r) = t
            .lookup(Some("WS1-8080-backend.dev.example:443"), "/x")
            .unwrap();
        assert_eq!(id.host, Some(0));
        assert_eq!(r.name, "backend:8080/");
        let (id, _) = t.lookup(Some("other.example"), "/x").unwrap();
        assert_eq!(id.host, None);
        // A host route without a matching path does not fall back to the default routes.
        let t2 = RouteTable::new()
            .with(Route::to_service("/", "frontend", 3000))
            .with_host("h", Route::to_service("/only", "b", 1));
        assert!(t2.lookup(Some("h"), "/x").is_none());
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse("http://example.com/base/").unwrap();
        assert_eq!(t.authority, "example.com:80");
        assert_eq!(t.base_path, "/base");
        assert_eq!(t.host_header, "example.com");
        let t = Target::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8443");
        assert_eq!(t.base_path, "");
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("nohost").is_err());
        assert!(Target::parse("http://").is_err());
    }
}
