//! Semantic rules over the typed model: names, routes, ports, mounts, plans, and the warnings.
//! Works on models read from YAML (diagnostics carry positions) and on models built in code.

use crate::diag::{codes, Diagnostic};
use crate::model::*;
use crate::plans::PlanCatalogue;
use crate::span::Span;
use indexmap::IndexMap;
use std::collections::HashMap;

/// Whether `name` is a valid service name: a DNS label of at most 32 characters,
/// `^(?:[a-z]|[a-z][-a-z0-9]{0,30}[a-z0-9])$`.
pub fn is_service_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 32 || !b[0].is_ascii_lowercase() {
        return false;
    }
    let last = b[b.len() - 1];
    if b.len() > 1 && !(last.is_ascii_lowercase() || last.is_ascii_digit()) {
        return false;
    }
    b.iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn normalize_route(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

fn secret_looking(key: &str) -> bool {
    ["PASSWORD", "TOKEN", "SECRET", "KEY"].iter().any(|w| {
        key.as_bytes()
            .windows(w.len())
            .any(|c| c.eq_ignore_ascii_case(w.as_bytes()))
    })
}

/// `service "<name>"` for messages, formatted only when a message is written.
#[derive(Clone, Copy)]
struct Obj<'a>(&'a str);

impl std::fmt::Display for Obj<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service \"{}\"", self.0)
    }
}

/// `run.<name>`: the owner of a service's steps in messages.
struct RunOwner<'a>(&'a str);

impl std::fmt::Display for RunOwner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run.{}", self.0)
    }
}

/// Ports seen in one service: a short list scanned in place, a hash map when long.
#[derive(Default)]
struct PortSet {
    few: Vec<(u16, Span)>,
    many: Option<HashMap<u16, Span>>,
}

impl PortSet {
    fn get(&self, port: u16) -> Option<Span> {
        match &self.many {
            Some(m) => m.get(&port).copied(),
            None => self.few.iter().find(|(p, _)| *p == port).map(|(_, s)| *s),
        }
    }
    fn insert(&mut self, port: u16, at: Span) {
        if let Some(m) = &mut self.many {
            m.insert(port, at);
        } else if self.few.len() < 16 {
            self.few.push((port, at));
        } else {
            let mut m: HashMap<u16, Span> = self.few.drain(..).collect();
            m.insert(port, at);
            self.many = Some(m);
        }
    }
}

/// Whether an image reference names a tag other than `latest` or a digest.
fn image_pinned(image: &str) -> Result<(), &'static str> {
    if image.contains('@') {
        return Ok(());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Err("has no tag"),
        Some((_, "latest")) => Err("uses the moving tag `latest`"),
        Some(_) => Ok(()),
    }
}

fn relative_path_problem(p: &str) -> Option<&'static str> {
    if p.starts_with('/') {
        Some("must be relative to the app directory, not absolute")
    } else if p.split('/').any(|c| c == "..") {
        Some("must not leave the app directory with `..`")
    } else {
        None
    }
}

/// Route prefix -> where it was first claimed, and by which service (its index).
pub(crate) type Routes = HashMap<String, (Span, usize)>;

/// Checks a model; returns every problem found (errors and warnings).
pub fn validate(l: &Landscape, plans: Option<&PlanCatalogue>) -> Vec<Diagnostic> {
    let mut d = stages(l);
    if let Run::Services(services) = &l.run {
        let mut routes = Routes::with_capacity(services.len());
        for i in 0..services.len() {
            service(
                &mut d,
                l.schema_version.value,
                services,
                i,
                plans,
                &mut routes,
            );
        }
    }
    d
}

/// [`validate`] of a model whose services were already checked one by one with
/// [`service`], in order, against the same schema version and plans: `checked` holds what
/// those checks found.
pub(crate) fn validate_with_checked(l: &Landscape, checked: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut d = stages(l);
    d.extend(checked);
    d
}

/// The checks outside services: empty commands in `prepare`, `test` and v0.1's `run`.
fn stages(l: &Landscape) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    for (stage, st) in [("prepare", &l.prepare), ("test", &l.test)] {
        empty_commands(&mut d, &st.steps, &stage);
    }
    if let Run::Steps(st) = &l.run {
        empty_commands(&mut d, &st.steps, &"run");
    }
    d
}

fn empty_commands(d: &mut Vec<Diagnostic>, steps: &[Step], owner: &dyn std::fmt::Display) {
    for (i, st) in steps.iter().enumerate() {
        if st.command.trim().is_empty() {
            d.push(
                Diagnostic::warning(
                    codes::W_EMPTY_COMMAND,
                    st.command.span,
                    format!("{owner}.steps[{i}] has an empty command"),
                )
                .with_help("remove the step, or write the command it should run"),
            );
        }
    }
}

/// Checks service `i` of `services` (those before it were checked already: route prefixes are
/// unique across the landscape).
pub(crate) fn service(
    d: &mut Vec<Diagnostic>,
    version: SchemaVersion,
    services: &IndexMap<String, Service>,
    i: usize,
    plans: Option<&PlanCatalogue>,
    routes: &mut Routes,
) {
    let Some((name, s)) = services.get_index(i) else {
        return;
    };
    let obj = Obj(name);
    let kind = s.kind();
    if !is_service_name(name) {
        d.push(
            Diagnostic::error(codes::SERVICE_NAME, s.name.span, format!("service name \"{name}\" is not a valid DNS label"))
                .with_help("use 1-32 characters: lower-case letters, digits and `-`, starting with a letter and not ending with `-`"),
        );
    }
    if let Some(steps) = &s.steps {
        empty_commands(d, steps, &RunOwner(name));
        if let Some(c) = &s.command {
            d.push(
                Diagnostic::error(
                    codes::CONFLICT,
                    c.span,
                    format!("{obj} has both `steps` and `command`"),
                )
                .with_help(
                    "use `command` (the container's argv) or `steps` (shell commands), not both",
                ),
            );
        }
    }
    if let (Some(img), Some(base)) = (&s.image, &s.base_image) {
        d.push(
            Diagnostic::error(
                codes::CONFLICT,
                base.span,
                format!("{obj} has both `image` and `baseImage`"),
            )
            .with_related(img.span, "`image` is set here")
            .with_help("remove `baseImage` (the legacy spelling)"),
        );
    } else if let Some(base) = &s.base_image {
        d.push(
            Diagnostic::warning(
                codes::W_DEPRECATED,
                base.span,
                format!("{obj}: `baseImage` is deprecated"),
            )
            .with_help("write `image:` instead (`landscape upgrade` does it)"),
        );
    }
    if let Some(img) = s.image_ref() {
        if let Err(why) = image_pinned(img) {
            d.push(
                Diagnostic::warning(codes::W_IMAGE_TAG, img.span, format!("{obj}: image \"{}\" {why}", img.value))
                    .with_help("pin a version tag (e.g. `postgres:17.2`) or a digest so that restarts run the same image"),
            );
        }
    }
    if let Some(m) = &s.mount_sub_path {
        d.push(
            Diagnostic::warning(codes::W_DEPRECATED, m.span, format!("{obj}: `mountSubPath` is deprecated"))
                .with_help("use `volumeMounts: [{name: _workspace, mountPath: /home/user/app, workspacePath: ...}]` (`landscape upgrade` does it)"),
        );
        if let Some(p) = relative_path_problem(m) {
            d.push(Diagnostic::error(
                codes::VOLUME_MOUNT,
                m.span,
                format!("{obj}: mountSubPath \"{}\" {p}", m.value),
            ));
        }
    }
    for (i, vm) in s.volume_mounts().iter().enumerate() {
        let w = VolumeMountAt(obj, i);
        if vm.name.value != "_workspace" {
            d.push(
                Diagnostic::error(
                    codes::VOLUME_MOUNT,
                    vm.name.span,
                    format!("{w}.name is \"{}\"", vm.name.value),
                )
                .with_help("the only volume is the app directory: `name: _workspace`"),
            );
        }
        if !vm.mount_path.starts_with('/') {
            d.push(
                Diagnostic::error(
                    codes::VOLUME_MOUNT,
                    vm.mount_path.span,
                    format!("{w}.mountPath \"{}\" is not absolute", vm.mount_path.value),
                )
                .with_help("write an absolute path inside the container, e.g. /home/user/app"),
            );
        }
        if let Some(wp) = &vm.workspace_path {
            if let Some(p) = relative_path_problem(wp) {
                d.push(Diagnostic::error(
                    codes::VOLUME_MOUNT,
                    wp.span,
                    format!("{w}.workspacePath \"{}\" {p}", wp.value),
                ));
            }
        }
    }
    // Managed services.
    if kind == ServiceKind::ManagedService {
        let name_ok = s
            .provider
            .as_ref()
            .and_then(|p| p.name.as_ref())
            .is_some_and(|n| !n.trim().is_empty());
        if !name_ok {
            let at = s
                .provider
                .as_ref()
                .and_then(|p| p.name.as_ref().map(|n| n.span))
                .unwrap_or(s.name.span);
            d.push(
                Diagnostic::error(
                    codes::MANAGED_SERVICE,
                    at,
                    format!("managed {obj} has no `provider.name`"),
                )
                .with_help(
                    "name the provider, e.g. `provider: {name: postgres, schemaVersion: v1}`",
                ),
            );
        }
        let id_ok = matches!(s.plan.as_deref(), Some(Plan::Managed(m)) if m.id.is_some());
        if !id_ok {
            let at = s.plan.as_ref().map_or(s.name.span, |p| p.span);
            d.push(
                Diagnostic::error(
                    codes::MANAGED_SERVICE,
                    at,
                    format!("managed {obj} has no `plan.id`"),
                )
                .with_help("write `plan: {id: 0, parameters: {...}}`"),
            );
        }
    }
    if let Some(p) = &s.provider {
        if let Some(v) = &p.version {
            if version >= SchemaVersion::V0_4 {
                d.push(
                    Diagnostic::warning(
                        codes::W_DEPRECATED,
                        v.span,
                        format!("{obj}: `provider.version` is deprecated in v0.4"),
                    )
                    .with_help("write `provider.schemaVersion` instead"),
                );
            }
        }
    }
    // Plans from the catalogue.
    if let (Some(cat), Some(Plan::Id(id))) = (plans, s.plan.as_deref()) {
        let span = s.plan.as_ref().map_or(s.name.span, |p| p.span);
        match cat.get(*id) {
            None => {
                let ids: Vec<String> = cat.ids().iter().map(u64::to_string).collect();
                d.push(
                    Diagnostic::error(
                        codes::UNKNOWN_PLAN,
                        span,
                        format!("{obj}: plan {id} is not in the plan catalogue"),
                    )
                    .with_help(format!("expected one of: {}", ids.join(", "))),
                );
            }
            Some(info) => {
                if s.replicas() > info.max_replicas {
                    let at = s.replicas.as_ref().map_or(span, |r| r.span);
                    d.push(
                        Diagnostic::error(
                            codes::TOO_MANY_REPLICAS,
                            at,
                            format!(
                                "{obj}: {} replicas, but plan {id} (\"{}\") allows at most {}",
                                s.replicas(),
                                info.title,
                                info.max_replicas
                            ),
                        )
                        .with_help("lower `replicas` or pick a larger plan"),
                    );
                }
                if info.deprecated {
                    d.push(Diagnostic::warning(
                        codes::W_DEPRECATED_PLAN,
                        span,
                        format!("{obj}: plan {id} (\"{}\") is deprecated", info.title),
                    ));
                }
            }
        }
    }
    // Env.
    for (k, v) in s.env() {
        if secret_looking(k) && v.value.is_literal() && !v.value.to_string().is_empty() {
            d.push(
                Diagnostic::warning(
                    codes::W_LITERAL_SECRET,
                    v.value.span,
                    format!("{obj}: env {k} looks like a secret but holds a literal value"),
                )
                .with_help(format!(
                    "store it in the vault and write `{k}: ${{{{ vault.{k} }}}}`"
                )),
            );
        }
    }
    network(d, services, i, kind, routes);
}

/// `service "<name>": volumeMounts[<i>]` for messages.
struct VolumeMountAt<'a>(Obj<'a>, usize);

impl std::fmt::Display for VolumeMountAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: volumeMounts[{}]", self.0, self.1)
    }
}

fn network(
    d: &mut Vec<Diagnostic>,
    services: &IndexMap<String, Service>,
    i: usize,
    kind: ServiceKind,
    routes: &mut Routes,
) {
    let Some((name, s)) = services.get_index(i) else {
        return;
    };
    let obj = Obj(name);
    let runs = matches!(kind, ServiceKind::Reactive | ServiceKind::ManagedContainer);
    let Some(n) = &s.network else {
        if runs && s.is_public.as_ref().is_none_or(|p| p.value) {
            d.push(
                Diagnostic::warning(codes::W_NO_ROUTE, s.name.span, format!("{obj} has no route (no `network` section)"))
                    .with_help("add `network: {ports: [{port: 3000}], paths: [{port: 3000, path: /}]}` if it serves requests; ignore this for workers"),
            );
        }
        return;
    };
    let new_form = n.written.ports.is_some() || n.written.paths.is_some();
    if n.is_legacy() {
        let at = n
            .legacy_path
            .as_ref()
            .map(|p| p.span)
            .or(n.legacy_strip_path.as_ref().map(|p| p.span))
            .unwrap_or(s.name.span);
        if new_form {
            d.push(
                Diagnostic::error(
                    codes::CONFLICT,
                    at,
                    format!("{obj}: legacy `network.path` mixed with `ports`/`paths`"),
                )
                .with_help("move the route into `paths: [{port: 3000, path: ...}]`"),
            );
        } else {
            d.push(
                Diagnostic::warning(
                    codes::W_LEGACY_NETWORK,
                    at,
                    format!("{obj} uses the legacy network form (`network.path`)"),
                )
                .with_help("write `ports` and `paths` instead (`landscape upgrade` does it)"),
            );
        }
        if let Some(p) = &n.legacy_path {
            route(d, (obj, i), p.as_ref(), routes, services);
        }
    }
    if new_form {
        if let Some(p) = &s.is_public {
            d.push(
                Diagnostic::warning(
                    codes::W_REDUNDANT_PUBLIC,
                    p.span,
                    format!("{obj}: service-level `isPublic` beside `ports`/`paths` is ignored"),
                )
                .with_help("set `isPublic` on each entry of `ports` instead"),
            );
        }
    }
    let mut seen = PortSet::default();
    for p in &n.ports {
        if let Some(first) = seen.get(p.port.value) {
            d.push(
                Diagnostic::error(
                    codes::DUPLICATE_PORT,
                    p.port.span,
                    format!("{obj}: port {} is listed twice", p.port.value),
                )
                .with_related(first, "first listed here")
                .with_help("list each port once"),
            );
        } else {
            seen.insert(p.port.value, p.port.span);
        }
        if kind == ServiceKind::Reactive && p.port.value < 1024 {
            d.push(
                Diagnostic::warning(codes::W_PRIVILEGED_PORT, p.port.span, format!("{obj}: port {} is below 1024; Reactives cannot bind it", p.port.value))
                    .with_help("listen on a port from 1024 to 65535 (e.g. 3000 or 8080); only Managed Containers may bind low ports"),
            );
        }
    }
    for p in &n.paths {
        route(d, (obj, i), p.path.as_ref(), routes, services);
        match &p.port {
            None if p.target.is_none() => d.push(
                Diagnostic::error(codes::MISSING_PORT, p.path.span, format!("{obj}: path \"{}\" has no `port`", p.path.value))
                    .with_help("name the port the path routes to, e.g. `port: 3000` (only headless routes with `target` go without)"),
            ),
            Some(port) if seen.get(port.value).is_none() => d.push(
                Diagnostic::warning(codes::W_UNDECLARED_PORT, port.span, format!("{obj}: path \"{}\" routes to port {}, which is not listed in `ports`", p.path.value, port.value))
                    .with_help(format!("add `- port: {}` under `network.ports`", port.value)),
            ),
            _ => {}
        }
    }
    let routed = !n.paths.is_empty()
        || n.legacy_path.is_some()
        || n.ports
            .iter()
            .any(|p| p.is_public.as_ref().is_some_and(|b| b.value));
    if runs && !routed && s.is_public.as_ref().is_none_or(|p| p.value) {
        d.push(
            Diagnostic::warning(codes::W_NO_ROUTE, s.name.span, format!("{obj} has no route (no paths and no public port)"))
                .with_help("add a `paths` entry, or mark a port `isPublic: true`, if it serves requests; ignore this for workers"),
        );
    }
    if runs && s.health_endpoint.is_none() && !n.ports.is_empty() && seen.get(3000).is_none() {
        d.push(
            Diagnostic::warning(
                codes::W_HEALTH_PORT,
                s.name.span,
                format!("{obj}: the default health check probes port 3000, which is not declared"),
            )
            .with_help(format!(
                "set `healthEndpoint` to a declared port, e.g. http://localhost:{}/",
                n.ports[0].port.value
            )),
        );
    }
}

fn route(
    d: &mut Vec<Diagnostic>,
    (obj, i): (Obj<'_>, usize),
    path: crate::span::Spanned<&String>,
    routes: &mut Routes,
    services: &IndexMap<String, Service>,
) {
    if !path.value.starts_with('/') {
        d.push(
            Diagnostic::error(
                codes::PATH_FORMAT,
                path.span,
                format!("{obj}: path \"{}\" does not start with `/`", path.value),
            )
            .with_help(format!("write \"/{}\"", path.value)),
        );
        return;
    }
    let key = normalize_route(path.value);
    if let Some((first, owner)) = routes.get(key) {
        let owner = Obj(services.get_index(*owner).map_or("", |(n, _)| n));
        d.push(
            Diagnostic::error(
                codes::DUPLICATE_ROUTE,
                path.span,
                format!("{obj}: route prefix \"{key}\" is already claimed by {owner}"),
            )
            .with_related(*first, "first claimed here")
            .with_help("each public path prefix can route to one place; change one of them"),
        );
    } else {
        routes.insert(key.to_string(), (path.span, i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "web", "my-db2", "a1", &"a".repeat(32)] {
            assert!(is_service_name(ok), "{ok}");
        }
        for bad in ["", "Web", "1a", "a-", "a_b", "-a", &"a".repeat(33), "é"] {
            assert!(!is_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn image_tags() {
        assert!(image_pinned("postgres:17").is_ok());
        assert!(image_pinned("localhost:5000/app").is_err());
        assert!(image_pinned("localhost:5000/app:1.2").is_ok());
        assert!(image_pinned("app:latest").is_err());
        assert!(image_pinned("app@sha256:abcd").is_ok());
    }
}
