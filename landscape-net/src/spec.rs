//! Route tables from a parsed landscape (`ci.yml`).
//!
//! The landscape is normalised with [`landscape_spec::upgrade`] first, so the legacy
//! `network.path` / `stripPath` form becomes ports + paths. Then:
//! - every `network.paths[]` entry becomes a path route for any host (`port` → the service's
//!   port, `target` → a headless route to that URL, `stripPath` kept);
//! - every public port becomes a host route `<workspace>-<port>-<service>.<domain>` → `/`
//!   (only when a workspace id and a domain are given).

use crate::error::Error;
use crate::routes::{Route, RouteTable};
use landscape_spec::{Landscape, Reference, Run};
use std::collections::HashMap;

/// What templates in `target` URLs and host routes need from the host.
#[derive(Clone, Debug, Default)]
pub struct SpecOptions {
    /// `${{ workspace.id }}`; also the first part of public-port host names.
    pub workspace_id: String,
    /// `${{ workspace.devDomain }}`; the domain of public-port host names. Empty: no host routes.
    pub dev_domain: String,
    /// `${{ team.id }}`.
    pub team_id: String,
    /// `${{ workspace.env['KEY'] }}`.
    pub env: HashMap<String, String>,
}

/// The host name of a public port: `<workspace>-<port>-<service>.<domain>`.
pub fn public_host(workspace_id: &str, port: u16, service: &str, domain: &str) -> String {
    format!("{workspace_id}-{port}-{service}.{domain}").to_ascii_lowercase()
}

/// Builds the route table of a landscape.
pub fn table_from_landscape(
    landscape: &Landscape,
    opts: &SpecOptions,
) -> Result<RouteTable, Error> {
    let up = landscape_spec::upgrade(landscape);
    let mut table = RouteTable::new();
    let Run::Services(services) = &up.landscape.run else {
        return Err(Error::Spec(
            "run stage has no services after upgrading; check schemaVersion".into(),
        ));
    };
    for (name, svc) in services {
        let Some(net) = &svc.network else { continue };
        for p in &net.paths {
            let strip = p.strip_path.as_ref().is_some_and(|s| s.value);
            let route = if let Some(t) = &p.target {
                let url = t
                    .value
                    .render(|r| match r {
                        Reference::WorkspaceId => Ok(opts.workspace_id.clone()),
                        Reference::WorkspaceDevDomain => Ok(opts.dev_domain.clone()),
                        Reference::TeamId => Ok(opts.team_id.clone()),
                        Reference::WorkspaceEnv(k) => opts.env.get(k).cloned().ok_or_else(|| {
                            Error::Spec(format!(
                                "service {name:?}: target of path {:?} uses workspace.env['{k}'], which is not set",
                                p.path.value
                            ))
                        }),
                        Reference::Vault(v) => Err(Error::Spec(format!(
                            "service {name:?}: target of path {:?} uses vault.{v}; secrets are not allowed in route targets",
                            p.path.value
                        ))),
                    })?;
                Route::to_target(&p.path.value, &url)
                    .map_err(|e| Error::Spec(format!("service {name:?}: {e}")))?
            } else {
                let port = match (&p.port, net.ports.as_slice()) {
                    (Some(port), _) => port.value,
                    (None, [only]) => only.port.value,
                    _ => {
                        return Err(Error::Spec(format!(
                            "service {name:?}: path {:?} names no port and the service does not have exactly one; add `port:`",
                            p.path.value
                        )))
                    }
                };
                Route::to_service(&p.path.value, name, port)
            };
            table.add(route.strip(strip));
        }
        if !opts.dev_domain.is_empty() && !opts.workspace_id.is_empty() {
            for port in net
                .ports
                .iter()
                .filter(|p| p.is_public.as_ref().is_some_and(|b| b.value))
            {
                let host = public_host(&opts.workspace_id, port.port.value, name, &opts.dev_domain);
                table.add_host(&host, Route::to_service("/", name, port.port.value));
            }
        }
    }
    Ok(table)
}

/// Parses `src` (a ci.yml) and builds its route table; errors in the file are reported with
/// `file:line:col`.
pub fn table_from_str(file: &str, src: &str, opts: &SpecOptions) -> Result<RouteTable, Error> {
    let parsed = landscape_spec::parse_str(file, src);
    if parsed.has_errors() {
        let msgs: Vec<String> = parsed
            .errors()
            .map(|d| {
                format!(
                    "{file}:{}:{}: {}",
                    d.span.start.line, d.span.start.col, d.message
                )
            })
            .collect();
        return Err(Error::Spec(format!(
            "{file} has errors; run `landscape validate {file}`:\n{}",
            msgs.join("\n")
        )));
    }
    let Some(l) = parsed.landscape.as_ref() else {
        return Err(Error::Spec(format!("{file}: not a landscape")));
    };
    table_from_landscape(l, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Action;

    fn opts() -> SpecOptions {
        SpecOptions {
            workspace_id: "ws1".into(),
            dev_domain: "dev.example".into(),
            team_id: "t9".into(),
            ..Default::default()
        }
    }

    fn backend_of(t: &RouteTable, host: Option<&str>, path: &str) -> Option<(String, u16, String)> {
        let (_, r) = t.lookup(host, path)?;
        match &r.action {
            Action::Backends(b) => Some((
                b[0].service.clone(),
                b[0].port,
                r.rewrite(path).into_owned(),
            )),
            Action::Target(t) => Some((
                format!("target:{}", t.authority),
                0,
                format!("{}{}", t.base_path, r.rewrite(path)),
            )),
        }
    }

    #[test]
    fn paths_ports_hosts_and_targets() {
        let src = r#"
schemaVersion: v0.2
prepare:
  steps: []
test:
  steps: []
run:
  frontend:
    steps:
      - command: npm start
    network:
      ports:
        - port: 3000
          isPublic: true
      paths:
        - port: 3000
          path: /
  backend:
    steps:
      - command: ./server
    network:
      ports:
        - port: 8080
          isPublic: false
      paths:
        - port: 8080
          path: /api
          stripPath: true
  docs:
    network:
      paths:
        - path: /docs
          target: http://docs-${{ team.id }}.internal:8000/v1
"#;
        let t = table_from_str("ci.yml", src, &opts()).unwrap();
        assert_eq!(
            backend_of(&t, None, "/api/x"),
            Some(("backend".into(), 8080, "/x".into()))
        );
        assert_eq!(
            backend_of(&t, None, "/apix"),
            Some(("frontend".into(), 3000, "/apix".into()))
        );
        assert_eq!(
            backend_of(&t, None, "/docs/a"),
            Some((
                "target:docs-t9.internal:8000".into(),
                0,
                "/v1/docs/a".into()
            ))
        );
        assert_eq!(
            backend_of(&t, Some("ws1-3000-frontend.dev.example"), "/z"),
            Some(("frontend".into(), 3000, "/z".into()))
        );
        // Private ports get no host route: that host falls back to the path routes.
        assert_eq!(
            backend_of(&t, Some("ws1-8080-backend.dev.example"), "/z"),
            Some(("frontend".into(), 3000, "/z".into()))
        );
    }

    #[test]
    fn legacy_network_path_is_upgraded() {
        let src = r#"
schemaVersion: v0.2
prepare:
  steps: []
test:
  steps: []
run:
  web:
    steps:
      - command: npm start
    isPublic: true
    network:
      path: /web
      stripPath: true
"#;
        let t = table_from_str("ci.yml", src, &opts()).unwrap();
        assert_eq!(
            backend_of(&t, None, "/web/x"),
            Some(("web".into(), 3000, "/x".into()))
        );
        assert_eq!(backend_of(&t, None, "/other"), None);
    }

    #[test]
    fn vault_in_target_is_refused_with_a_clear_message() {
        let src = r#"
schemaVersion: v0.2
prepare:
  steps: []
test:
  steps: []
run:
  ext:
    network:
      paths:
        - path: /x
          target: http://${{ vault.HOST }}/
"#;
        let e = table_from_str("ci.yml", src, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("vault.HOST") && e.contains("\"ext\""), "{e}");
    }

    #[test]
    fn every_corpus_file_builds_a_route_table() {
        // The corpus of real ci.yml files lives beside the repository (`../shared`), as for
        // landscape-spec's corpus test.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/codesphere-ci");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus missing at {}: {e}", dir.display()));
        let mut failures = Vec::new();
        let mut routes = 0;
        let mut files = 0;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "yml") {
                continue;
            }
            files += 1;
            let src = std::fs::read_to_string(&p).unwrap();
            match table_from_str("ci.yml", &src, &opts()) {
                Ok(t) => routes += t.len(),
                Err(e) => failures.push(format!("{}: {e}", p.display())),
            }
        }
        assert!(files >= 20, "expected the corpus files, found {files}");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(
            routes > files,
            "the corpus should yield routes, got {routes}"
        );
    }
}
