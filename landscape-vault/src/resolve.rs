//! Resolution: a parsed landscape + a scope → each service's final environment, or the list of
//! *all* references that could not be resolved, each with its position in the ci.yml.

use crate::error::Error;
use crate::secret::SecretValue;
use crate::vault::{Change, Vault};
use landscape_spec::{Landscape, Reference, Span, Spanned, Template};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Values for the non-secret references, and the vault scope to resolve in.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The vault scope of the landscape (e.g. the team or workspace).
    pub scope: String,
    /// `${{ workspace.id }}`.
    pub workspace_id: Option<String>,
    /// `${{ workspace.devDomain }}`.
    pub dev_domain: Option<String>,
    /// `${{ team.id }}`.
    pub team_id: Option<String>,
    /// `${{ workspace.env['KEY'] }}`.
    pub workspace_env: BTreeMap<String, String>,
}

impl Context {
    /// A context for `scope` with no workspace or team values.
    pub fn new(scope: impl Into<String>) -> Self {
        Context {
            scope: scope.into(),
            ..Default::default()
        }
    }
}

/// The final environment of one service. Values are [`SecretValue`]s (any of them may hold a
/// secret); `Debug` shows the names only.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// The service's name.
    pub service: String,
    /// `env`, rendered, in file order.
    pub vars: Vec<(String, SecretValue)>,
    /// `secrets` of a Managed Service, rendered, in file order.
    pub secrets: Vec<(String, SecretValue)>,
}

/// One vault secret used by a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The service.
    pub service: String,
    /// The scope that owns the secret.
    pub owner: String,
    /// The secret's name.
    pub name: String,
    /// The version rendered.
    pub version: u64,
}

/// The result of a successful resolution.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// One entry per service, in file order.
    pub services: Vec<ServiceEnv>,
    /// Every vault secret used, per service.
    pub uses: Vec<Use>,
}

impl Resolved {
    /// The environment of one service.
    pub fn service(&self, name: &str) -> Option<&ServiceEnv> {
        self.services.iter().find(|s| s.service == name)
    }

    /// The services that use the secret a [`Change`] is about (to restart them).
    pub fn services_using(&self, change: &Change) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .uses
            .iter()
            .filter(|u| u.owner == change.scope && u.name == change.name)
            .map(|u| u.service.as_str())
            .collect();
        v.dedup();
        v
    }
}

/// Why a reference did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The secret does not exist in the scope or its shared scopes.
    Missing,
    /// The secret belongs to a scope this one may not read.
    Denied,
    /// A workspace/team value was not provided by the host.
    Unset,
    /// The name is not a valid secret name.
    Invalid,
}

/// A reference that did not resolve, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The ci.yml file.
    pub file: String,
    /// Where (the value that holds the reference).
    pub span: Span,
    /// The service.
    pub service: String,
    /// The env (or secrets) key.
    pub key: String,
    /// The reference as written canonically, e.g. `${{ vault.DB }}`.
    pub reference: String,
    /// Why.
    pub kind: ProblemKind,
    /// A one-line message (no values).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.span.start.line, self.span.start.col, self.message
        )
    }
}

/// Resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Some references did not resolve (all of them are listed).
    #[error("{} unresolved reference(s); first: {}", .0.len(), .0.first().map(|p| p.to_string()).unwrap_or_default())]
    Problems(Vec<Problem>),
    /// The vault itself failed (wrong key, tampered store, server down...).
    #[error(transparent)]
    Vault(#[from] Error),
}

struct Site<'a> {
    service: &'a str,
    key: &'a str,
    value: &'a Spanned<Template>,
    secret_field: bool,
}

fn sites(l: &Landscape) -> Vec<Site<'_>> {
    let mut v = Vec::new();
    for s in l.services() {
        for (k, e) in s.env() {
            v.push(Site {
                service: &s.name,
                key: k,
                value: &e.value,
                secret_field: false,
            });
        }
        for (k, t) in s.secrets.iter().flat_map(|m| m.iter()) {
            v.push(Site {
                service: &s.name,
                key: k,
                value: t,
                secret_field: true,
            });
        }
    }
    v
}

enum Looked {
    Found {
        owner: String,
        name: String,
        version: u64,
        value: SecretValue,
    },
    Problem(ProblemKind, String),
}

/// Resolves every service's `env` (and Managed Services' `secrets`) of `landscape`, read from
/// `file`, against `vault` in `ctx.scope`. Reports *all* unresolved references at once.
pub async fn resolve(
    vault: &Vault,
    file: &str,
    landscape: &Landscape,
    ctx: &Context,
) -> Result<Resolved, ResolveError> {
    let sites = sites(landscape);
    // Look every distinct vault name up once.
    let mut looked: HashMap<String, Looked> = HashMap::new();
    for site in &sites {
        for r in site.value.references() {
            let Reference::Vault(name) = r else { continue };
            if looked.contains_key(name) {
                continue;
            }
            let l = match vault.lookup(&ctx.scope, name).await {
                Ok(f) => Looked::Found { owner: f.owner, name: f.name, version: f.version, value: f.value },
                Err(Error::NotFound { .. }) => Looked::Problem(
                    ProblemKind::Missing,
                    format!("vault secret \"{name}\" is not set in scope \"{}\" (or its shared scopes); set it with `landscape vault set {name}`", ctx.scope),
                ),
                Err(Error::Denied { owner, .. }) => Looked::Problem(
                    ProblemKind::Denied,
                    format!("scope \"{}\" may not read vault secrets of scope \"{owner}\"", ctx.scope),
                ),
                Err(Error::InvalidName { reason, .. }) => {
                    Looked::Problem(ProblemKind::Invalid, format!("\"{name}\" is not a valid secret name: {reason}"))
                }
                Err(e) => return Err(ResolveError::Vault(e)),
            };
            looked.insert(name.clone(), l);
        }
    }

    let mut problems = Vec::new();
    let mut out = Resolved::default();
    let mut current: Option<ServiceEnv> = None;
    for site in &sites {
        if current.as_ref().map(|c| c.service.as_str()) != Some(site.service) {
            out.services.extend(current.take());
            current = Some(ServiceEnv {
                service: site.service.to_string(),
                vars: Vec::new(),
                secrets: Vec::new(),
            });
        }
        let mut site_problems = Vec::new();
        let rendered = site
            .value
            .render(|r| -> Result<String, std::convert::Infallible> {
                let unset = |what: &str| {
                    (
                        ProblemKind::Unset,
                        format!(
                            "{} is not provided by the host (no value for {what})",
                            r.to_source()
                        ),
                    )
                };
                let res = match r {
                    Reference::Vault(reference) => match &looked[reference] {
                        Looked::Found {
                            owner,
                            name,
                            version,
                            value,
                        } => {
                            let u = Use {
                                service: site.service.into(),
                                owner: owner.clone(),
                                name: name.clone(),
                                version: *version,
                            };
                            if !out.uses.contains(&u) {
                                out.uses.push(u);
                            }
                            // Env values are text; a non-UTF-8 secret is passed lossily.
                            Ok(String::from_utf8_lossy(value.expose()).into_owned())
                        }
                        Looked::Problem(k, m) => Err((k.clone(), m.clone())),
                    },
                    Reference::WorkspaceId => ctx
                        .workspace_id
                        .clone()
                        .ok_or_else(|| unset("workspace.id")),
                    Reference::WorkspaceDevDomain => ctx
                        .dev_domain
                        .clone()
                        .ok_or_else(|| unset("workspace.devDomain")),
                    Reference::TeamId => ctx.team_id.clone().ok_or_else(|| unset("team.id")),
                    Reference::WorkspaceEnv(k) => {
                        ctx.workspace_env.get(k).cloned().ok_or_else(|| unset(k))
                    }
                };
                match res {
                    Ok(v) => Ok(v),
                    Err((kind, message)) => {
                        site_problems.push((r.to_source(), kind, message));
                        Ok(String::new()) // keep going: report every reference
                    }
                }
            });
        let rendered = rendered.unwrap_or_else(|never| match never {});
        for (reference, kind, message) in site_problems {
            problems.push(Problem {
                file: file.to_string(),
                span: site.value.span,
                service: site.service.to_string(),
                key: site.key.to_string(),
                reference,
                kind,
                message: format!(
                    "service \"{}\" {} {}: {message}",
                    site.service,
                    if site.secret_field { "secret" } else { "env" },
                    site.key
                ),
            });
        }
        if let Some(c) = current.as_mut() {
            let v = (site.key.to_string(), SecretValue::from_string(rendered));
            if site.secret_field {
                c.secrets.push(v);
            } else {
                c.vars.push(v);
            }
        }
    }
    out.services.extend(current.take());
    // Services without env still get an (empty) entry.
    for s in landscape.services() {
        if out.service(&s.name).is_none() {
            out.services.push(ServiceEnv {
                service: s.name.to_string(),
                vars: Vec::new(),
                secrets: Vec::new(),
            });
        }
    }
    let result = if problems.is_empty() {
        "ok".to_string()
    } else {
        format!("{} unresolved", problems.len())
    };
    vault
        .audit_resolve(&ctx.scope, &format!("landscape {file}"), &result)
        .await?;
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ResolveError::Problems(problems))
    }
}

/// Moves each problem's column from the start of the value to the reference itself, using the
/// source text (best effort: only when the reference is written on the value's first line).
pub fn refine_positions(problems: &mut [Problem], source: &str) {
    let lines: Vec<&str> = source.lines().collect();
    for p in problems.iter_mut() {
        let Some(line) = lines.get((p.span.start.line as usize).wrapping_sub(1)) else {
            continue;
        };
        let from = (p.span.start.col as usize).saturating_sub(1);
        let Some(tail) = line.get(from..) else {
            continue;
        };
        let needle = match Template::parse(&p.reference)
            .ok()
            .and_then(|t| t.references().next().cloned())
        {
            Some(Reference::Vault(n)) | Some(Reference::WorkspaceEnv(n)) => n,
            _ => continue,
        };
        let mut search = 0;
        while let Some(i) = tail[search..].find("${{") {
            let start = search + i;
            let end = tail[start..]
                .find("}}")
                .map(|e| start + e)
                .unwrap_or(tail.len());
            if tail[start..end].contains(needle.as_str()) {
                // Columns count characters, 1-based.
                p.span.start.col = (line[..from + start].chars().count() + 1) as u32;
                break;
            }
            search = start + 3;
        }
    }
}
