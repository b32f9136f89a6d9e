//! From the YAML tree to the typed model: types, required and unknown keys, shapes.
//! Semantic rules that look across fields live in [`crate::validate`].

use crate::diag::{codes, Diagnostic};
use crate::model::*;
use crate::span::{Span, Spanned};
use crate::template::Template;
use crate::yaml::{Node, NodeKind, Resolved, Style};
use indexmap::IndexMap;

type Entries<'n, 'a> = &'n [(Node<'a>, Node<'a>)];

pub(crate) struct Decoder<'d> {
    pub diags: &'d mut Vec<Diagnostic>,
    pub version: SchemaVersion,
}

const TOP_KEYS: &[&str] = &["schemaVersion", "prepare", "test", "run"];
const STAGE_KEYS: &[&str] = &["steps"];
const STEP_KEYS: &[&str] = &["name", "command"];
/// Keys a service may have.
pub const SERVICE_KEYS: &[&str] = &[
    "steps",
    "image",
    "baseImage",
    "command",
    "provider",
    "plan",
    "config",
    "secrets",
    "backups",
    "replicas",
    "isPublic",
    "healthEndpoint",
    "env",
    "network",
    "runAsUser",
    "runAsGroup",
    "volumeMounts",
    "mountSubPath",
];
const PROVIDER_KEYS: &[&str] = &["name", "version", "schemaVersion"];
const PLAN_KEYS: &[&str] = &["id", "parameters"];
const NETWORK_KEYS: &[&str] = &["ports", "paths", "path", "stripPath"];
const PORT_KEYS: &[&str] = &["port", "isPublic"];
const PATH_KEYS: &[&str] = &["port", "path", "stripPath", "target"];
const MOUNT_KEYS: &[&str] = &["name", "mountPath", "workspacePath"];

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest expected key, if close enough to be a likely typo.
pub(crate) fn did_you_mean<'k>(key: &str, expected: &[&'k str]) -> Option<&'k str> {
    expected
        .iter()
        .map(|e| (distance(key, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) && *d < e.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn key_list(expected: &[&str]) -> String {
    expected.join(", ")
}

impl<'d> Decoder<'d> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &Node<'_>, what: &str, expected: &str) {
        self.err(Diagnostic::error(
            codes::WRONG_TYPE,
            node.span,
            format!("{what} must be {expected}, found {}", node.describe()),
        ));
    }

    fn unknown_key(&mut self, key: &Node<'_>, object: &str, expected: &[&str]) {
        let k = key.as_str().unwrap_or_default();
        let mut d = Diagnostic::error(
            codes::UNKNOWN_KEY,
            key.span,
            format!("unknown key \"{k}\" in {object}"),
        );
        d = match did_you_mean(k, expected) {
            Some(s) => d.with_help(format!(
                "did you mean \"{s}\"? expected one of: {}",
                key_list(expected)
            )),
            None => d.with_help(format!("expected one of: {}", key_list(expected))),
        };
        self.err(d);
    }

    /// The entries of a mapping; null counts as empty; anything else is a type error.
    fn map<'n, 'a>(&mut self, node: &'n Node<'a>, what: &str) -> Option<Entries<'n, 'a>> {
        match &node.kind {
            NodeKind::Map(e) => Some(e),
            NodeKind::Scalar(_, Style::Plain) if node.resolve() == Some(Resolved::Null) => {
                Some(&[])
            }
            _ => {
                self.wrong_type(node, what, "a mapping");
                None
            }
        }
    }

    fn seq<'n, 'a>(&mut self, node: &'n Node<'a>, what: &str) -> Option<&'n [Node<'a>]> {
        match &node.kind {
            NodeKind::Seq(e) => Some(e),
            NodeKind::Scalar(_, Style::Plain) if node.resolve() == Some(Resolved::Null) => {
                Some(&[])
            }
            _ => {
                self.wrong_type(node, what, "a list");
                None
            }
        }
    }

    /// A string field: any non-null scalar, taken as written.
    fn string(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<String>> {
        match (&node.kind, node.resolve()) {
            (_, Some(Resolved::Null)) => {
                self.wrong_type(node, what, "a string");
                None
            }
            (NodeKind::Scalar(s, _), _) => Some(Spanned::new(s.to_string(), node.span)),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    fn bool(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<bool>> {
        match (&node.kind, node.resolve()) {
            (NodeKind::Scalar(s, Style::Plain), Some(Resolved::Bool(b))) => {
                if s == "true" || s == "false" {
                    Some(Spanned::new(b, node.span))
                } else {
                    self.err(
                        Diagnostic::error(
                            codes::WRONG_TYPE,
                            node.span,
                            format!("{what} must be true or false, found \"{s}\""),
                        )
                        .with_help(format!("write `{b}` in lower case")),
                    );
                    None
                }
            }
            (NodeKind::Scalar(s, style), _) => {
                let lower = s.to_ascii_lowercase();
                let hint = match lower.as_str() {
                    "yes" | "on" | "y" => Some("true"),
                    "no" | "off" | "n" => Some("false"),
                    "true" | "false" if *style == Style::Quoted => {
                        Some(if lower == "true" { "true" } else { "false" })
                    }
                    _ => None,
                };
                let mut d = Diagnostic::error(
                    codes::WRONG_TYPE,
                    node.span,
                    format!("{what} must be true or false, found {}", node.describe()),
                );
                if let Some(h) = hint {
                    d = d.with_help(format!(
                        "write `{h}` (unquoted); YAML 1.2 reads `{s}` as a string"
                    ));
                }
                self.err(d);
                None
            }
            _ => {
                self.wrong_type(node, what, "true or false");
                None
            }
        }
    }

    fn int(&mut self, node: &Node<'_>, what: &str, min: i128, max: i128) -> Option<Spanned<i128>> {
        match node.resolve() {
            Some(Resolved::Int(i)) => {
                if i < min || i > max {
                    self.err(Diagnostic::error(
                        codes::OUT_OF_RANGE,
                        node.span,
                        format!("{what} {i} is out of range; expected {min}..{max}"),
                    ));
                    None
                } else {
                    Some(Spanned::new(i, node.span))
                }
            }
            Some(Resolved::Str(s))
                if matches!(node.kind, NodeKind::Scalar(_, Style::Quoted))
                    && s.parse::<i128>().is_ok() =>
            {
                self.err(
                    Diagnostic::error(
                        codes::WRONG_TYPE,
                        node.span,
                        format!("{what} must be a number, found the string \"{s}\""),
                    )
                    .with_help(format!("remove the quotes: {s}")),
                );
                None
            }
            _ => {
                self.wrong_type(node, what, "an integer");
                None
            }
        }
    }

    fn port(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<u16>> {
        self.int(node, what, 1, 65535).map(|i| i.map(|v| v as u16))
    }

    fn u32(&mut self, node: &Node<'_>, what: &str, min: i128) -> Option<Spanned<u32>> {
        self.int(node, what, min, u32::MAX as i128)
            .map(|i| i.map(|v| v as u32))
    }

    fn u64(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<u64>> {
        self.int(node, what, 0, u64::MAX as i128)
            .map(|i| i.map(|v| v as u64))
    }

    /// A scalar parsed as a template; numbers and bools are taken as their text.
    fn template(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<Template>> {
        let text = match (&node.kind, node.resolve()) {
            (NodeKind::Scalar(s, _), r) if r != Some(Resolved::Null) => s,
            _ => {
                self.wrong_type(node, what, "a string, number or boolean");
                return None;
            }
        };
        self.template_text(node, text, what)
    }

    fn template_text(
        &mut self,
        node: &Node<'_>,
        text: &str,
        what: &str,
    ) -> Option<Spanned<Template>> {
        match Template::parse(text) {
            Ok(t) => Some(Spanned::new(t, node.span)),
            Err(e) => {
                let at = offset_span(node, text, e.offset);
                self.err(
                    Diagnostic::error(codes::TEMPLATE, at, format!("{what}: {}", e.message))
                        .with_help(e.help),
                );
                None
            }
        }
    }

    pub(crate) fn landscape(&mut self, root: &Node<'_>) -> Option<Landscape> {
        let NodeKind::Map(entries) = &root.kind else {
            let d = Diagnostic::error(
                codes::WRONG_TYPE,
                root.span,
                format!("a ci.yml must be a mapping with schemaVersion, prepare, test and run; found {}", root.describe()),
            );
            self.err(d);
            return None;
        };
        let mut l = Landscape::default();
        // The version decides the shape of `run`, so read it first.
        let mut version_node = None;
        for (k, v) in entries.iter() {
            if k.as_str() == Some("schemaVersion") {
                version_node = Some(v);
            }
        }
        if let Some(v) = version_node {
            if let Some(s) = self.string(v, "schemaVersion") {
                match SchemaVersion::parse(&s) {
                    Some(ver) => l.schema_version = Spanned::new(ver, s.span),
                    None => {
                        let expected: Vec<&str> =
                            SchemaVersion::ALL.iter().map(|v| v.as_str()).collect();
                        self.err(
                            Diagnostic::error(
                                codes::SCHEMA_VERSION,
                                v.span,
                                format!("unknown schemaVersion \"{}\"", s.value),
                            )
                            .with_help(format!("expected one of: {}", expected.join(", "))),
                        );
                        // Guess from the shape so that the rest is still checked.
                        l.schema_version = Spanned::new(SchemaVersion::LATEST, s.span);
                    }
                }
            }
        }
        self.version = l.schema_version.value;
        for (k, v) in entries.iter() {
            match k.as_str().unwrap_or_default() {
                "schemaVersion" => {}
                "prepare" => l.prepare = self.stage(v, "prepare"),
                "test" => l.test = self.stage(v, "test"),
                "run" => l.run = self.run(v, version_node.is_some()),
                _ => self.unknown_key(k, "the top level", TOP_KEYS),
            }
        }
        Some(l)
    }

    fn stage(&mut self, node: &Node<'_>, name: &str) -> Stage {
        let mut st = Stage::default();
        let Some(entries) = self.map(node, &format!("stage \"{name}\"")) else {
            return st;
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "steps" => st.steps = self.steps(v, &format!("{name}.steps")),
                _ => self.unknown_key(k, &format!("stage \"{name}\""), STAGE_KEYS),
            }
        }
        st
    }

    fn steps(&mut self, node: &Node<'_>, what: &str) -> Vec<Step> {
        let Some(items) = self.seq(node, what) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let what = format!("{what}[{i}]");
            if let NodeKind::Scalar(..) = item.kind {
                if item.resolve() != Some(Resolved::Null) {
                    self.err(
                        Diagnostic::error(
                            codes::WRONG_TYPE,
                            item.span,
                            format!(
                                "{what} must be a mapping with `command`, found {}",
                                item.describe()
                            ),
                        )
                        .with_help("write `- command: <shell command>`"),
                    );
                    continue;
                }
            }
            let Some(entries) = self.map(item, &what) else {
                continue;
            };
            let mut name = None;
            let mut command = None;
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "name" => name = self.string(v, &format!("{what}.name")),
                    "command" => {
                        command = match v.resolve() {
                            Some(Resolved::Null) => {
                                self.err(
                                    Diagnostic::error(
                                        codes::WRONG_TYPE,
                                        v.span,
                                        format!("{what}.command is empty (null)"),
                                    )
                                    .with_help(
                                        "write the shell command to run, or remove the step",
                                    ),
                                );
                                Some(Spanned::new(String::new(), v.span))
                            }
                            _ => self.string(v, &format!("{what}.command")),
                        }
                    }
                    _ => self.unknown_key(k, &format!("step {what}"), STEP_KEYS),
                }
            }
            match command {
                Some(c) => out.push(Step { name, command: c }),
                None if !entries.iter().any(|(k, _)| k.as_str() == Some("command")) => {
                    self.err(
                        Diagnostic::error(
                            codes::MISSING_KEY,
                            item.span,
                            format!("step {what} has no `command`"),
                        )
                        .with_help("every step needs `command: <shell command>`"),
                    );
                }
                None => {}
            }
        }
        out
    }

    fn run(&mut self, node: &Node<'_>, explicit_version: bool) -> Run {
        let Some(entries) = self.map(node, "run") else {
            return Run::default();
        };
        let steps_entry = entries
            .iter()
            .find(|(k, v)| k.as_str() == Some("steps") && !matches!(v.kind, NodeKind::Map(_)));
        if !self.version.has_services() {
            // v0.1: `run.steps`.
            let others: Vec<_> = entries
                .iter()
                .filter(|(k, _)| k.as_str() != Some("steps"))
                .collect();
            if let Some((_, v)) = steps_entry {
                for (k, _) in &others {
                    self.err(
                        Diagnostic::error(
                            codes::SHAPE_MISMATCH,
                            k.span,
                            format!("\"{}\" looks like a v0.2+ service, but this file uses the v0.1 shape (`run.steps`)", k.as_str().unwrap_or_default()),
                        )
                        .with_help("use one shape: either flat `run.steps` (no schemaVersion) or services under `run.<name>` with `schemaVersion: v0.4`"),
                    );
                }
                return Run::Steps(Stage {
                    steps: self.steps(v, "run.steps"),
                });
            }
            if !others.is_empty() {
                let first = others[0].0.span;
                let msg = if explicit_version {
                    "services under `run.<name>` need schemaVersion v0.2 or later"
                } else {
                    "services under `run.<name>` need a schemaVersion (v0.2 or later); without one, the v0.1 shape `run.steps` is expected"
                };
                self.err(
                    Diagnostic::error(codes::SHAPE_MISMATCH, first, msg)
                        .with_help("add `schemaVersion: v0.4` at the top of the file"),
                );
                return Run::Services(self.services(entries));
            }
            return Run::Steps(Stage::default());
        }
        if let Some((k, _)) = steps_entry {
            self.err(
                Diagnostic::error(
                    codes::SHAPE_MISMATCH,
                    k.span,
                    format!("flat `run.steps` is the v0.1 shape, but schemaVersion is {}", self.version),
                )
                .with_help("move the steps into a service: `run: {app: {steps: [...]}}`, or remove schemaVersion"),
            );
            let rest: Vec<(Node<'_>, Node<'_>)> = entries
                .iter()
                .filter(|(k, _)| k.as_str() != Some("steps"))
                .cloned()
                .collect();
            return Run::Services(self.services(&rest));
        }
        Run::Services(self.services(entries))
    }

    fn services(&mut self, entries: Entries<'_, '_>) -> IndexMap<String, Service> {
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let name = k.as_str().unwrap_or_default().to_string();
            let mut svc = self.service(v, &name);
            svc.name = Spanned::new(name.clone(), k.span);
            out.insert(name, svc);
        }
        out
    }

    fn service(&mut self, node: &Node<'_>, name: &str) -> Service {
        let mut s = Service::default();
        let obj = format!("service \"{name}\"");
        let Some(entries) = self.map(node, &obj) else {
            return s;
        };
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let what = format!("{obj}: {key}");
            match key {
                "steps" => s.steps = Some(self.steps(v, &format!("run.{name}.steps"))),
                "image" => s.image = self.string(v, &what),
                "baseImage" => s.base_image = self.string(v, &what),
                "command" => s.command = self.command(v, &what),
                "provider" => s.provider = self.provider(v, &obj),
                "plan" => s.plan = self.plan(v, &what),
                "config" => s.config = self.config(v, &what),
                "secrets" => s.secrets = self.secrets(v, &what),
                "backups" => s.backups = Some(Spanned::new(v.to_json(), v.span)),
                "replicas" => s.replicas = self.u32(v, &what, 1),
                "isPublic" => s.is_public = self.bool(v, &what),
                "healthEndpoint" => {
                    s.health_endpoint = self.string(v, &what);
                    if let Some(h) = &s.health_endpoint {
                        if let Err(e) = HealthEndpoint::parse(h) {
                            self.err(
                                Diagnostic::error(
                                    codes::HEALTH_ENDPOINT,
                                    h.span,
                                    format!("{obj}: {e}"),
                                )
                                .with_help(
                                    "e.g. http://localhost:3000/health or tcp://localhost:5432",
                                ),
                            );
                        }
                    }
                }
                "env" => s.env = self.env(v, &obj),
                "network" => s.network = self.network(v, &obj),
                "runAsUser" => s.run_as_user = self.u32(v, &what, 0),
                "runAsGroup" => s.run_as_group = self.u32(v, &what, 0),
                "volumeMounts" => s.volume_mounts = self.volume_mounts(v, &obj),
                "mountSubPath" => s.mount_sub_path = self.string(v, &what),
                _ => self.unknown_key(k, &obj, SERVICE_KEYS),
            }
        }
        s
    }

    fn command(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<Vec<String>>> {
        if let NodeKind::Scalar(..) = node.kind {
            self.err(
                Diagnostic::error(codes::WRONG_TYPE, node.span, format!("{what} must be a list of arguments, found {}", node.describe()))
                    .with_help("write the argv as a list, e.g. `command: [\"nginx\", \"-g\", \"daemon off;\"]`, or use `steps` for a shell command"),
            );
            return None;
        }
        let items = self.seq(node, what)?;
        let mut args = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            args.push(self.string(it, &format!("{what}[{i}]"))?.value);
        }
        Some(Spanned::new(args, node.span))
    }

    fn provider(&mut self, node: &Node<'_>, obj: &str) -> Option<Provider> {
        let entries = self.map(node, &format!("{obj}: provider"))?;
        let mut p = Provider::default();
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "name" => p.name = self.string(v, &format!("{obj}: provider.name")),
                "version" => p.version = self.string(v, &format!("{obj}: provider.version")),
                "schemaVersion" => {
                    p.schema_version = self.string(v, &format!("{obj}: provider.schemaVersion"))
                }
                _ => self.unknown_key(k, &format!("{obj}: provider"), PROVIDER_KEYS),
            }
        }
        Some(p)
    }

    fn plan(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<Plan>> {
        if let NodeKind::Map(entries) = &node.kind {
            let mut m = ManagedPlan::default();
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "id" => m.id = self.u64(v, &format!("{what}.id")),
                    "parameters" => {
                        if let Some(e) = self.map(v, &format!("{what}.parameters")) {
                            m.parameters = Some(
                                e.iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().unwrap_or_default().to_string(),
                                            Spanned::new(v.to_json(), v.span),
                                        )
                                    })
                                    .collect(),
                            );
                        }
                    }
                    _ => self.unknown_key(k, what, PLAN_KEYS),
                }
            }
            return Some(Spanned::new(Plan::Managed(m), node.span));
        }
        match node.resolve() {
            Some(Resolved::Int(_)) => self.u64(node, what).map(|i| i.map(Plan::Id)),
            _ => {
                self.wrong_type(node, what, "a plan id (an integer) or `{id, parameters}`");
                None
            }
        }
    }

    fn config(
        &mut self,
        node: &Node<'_>,
        what: &str,
    ) -> Option<IndexMap<String, Spanned<serde_json::Value>>> {
        let entries = self.map(node, what)?;
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            self.check_templates_in(v, &format!("{what}.{key}"));
            out.insert(key.to_string(), Spanned::new(v.to_json(), v.span));
        }
        Some(out)
    }

    /// Reports malformed templates in every string of a free-form value.
    fn check_templates_in(&mut self, node: &Node<'_>, what: &str) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match &n.kind {
                NodeKind::Scalar(s, _) => {
                    if s.contains("${{") {
                        self.template_text(n, s, what);
                    }
                }
                NodeKind::Seq(items) => stack.extend(items.iter()),
                NodeKind::Map(e) => stack.extend(e.iter().map(|(_, v)| v)),
            }
        }
    }

    fn secrets(
        &mut self,
        node: &Node<'_>,
        what: &str,
    ) -> Option<IndexMap<String, Spanned<Template>>> {
        let entries = self.map(node, what)?;
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            if let Some(t) = self.template(v, &format!("{what}.{key}")) {
                out.insert(key.to_string(), t);
            }
        }
        Some(out)
    }

    fn env(&mut self, node: &Node<'_>, obj: &str) -> Option<IndexMap<String, EnvVar>> {
        let entries = self.map(node, &format!("{obj}: env"))?;
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            if let Some(t) = self.template(v, &format!("{obj}: env.{key}")) {
                out.insert(
                    key.to_string(),
                    EnvVar {
                        value: t,
                        key_span: k.span,
                    },
                );
            }
        }
        Some(out)
    }

    fn network(&mut self, node: &Node<'_>, obj: &str) -> Option<Network> {
        let what = format!("{obj}: network");
        let entries = self.map(node, &what)?;
        let mut n = Network::default();
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "ports" => {
                    n.written.ports = Some(k.span);
                    let Some(items) = self.seq(v, &format!("{what}.ports")) else {
                        continue;
                    };
                    for (i, it) in items.iter().enumerate() {
                        let w = format!("{what}.ports[{i}]");
                        let Some(e) = self.map(it, &w) else { continue };
                        let mut port = None;
                        let mut is_public = None;
                        for (k, v) in e {
                            match k.as_str().unwrap_or_default() {
                                "port" => port = self.port(v, &format!("{w}.port")),
                                "isPublic" => is_public = self.bool(v, &format!("{w}.isPublic")),
                                _ => self.unknown_key(k, &w, PORT_KEYS),
                            }
                        }
                        match port {
                            Some(port) => n.ports.push(PortSpec { port, is_public }),
                            None if !e.iter().any(|(k, _)| k.as_str() == Some("port")) => self.err(
                                Diagnostic::error(
                                    codes::MISSING_KEY,
                                    it.span,
                                    format!("{w} has no `port`"),
                                )
                                .with_help("write `port: 3000`"),
                            ),
                            None => {}
                        }
                    }
                }
                "paths" => {
                    n.written.paths = Some(k.span);
                    let Some(items) = self.seq(v, &format!("{what}.paths")) else {
                        continue;
                    };
                    for (i, it) in items.iter().enumerate() {
                        let w = format!("{what}.paths[{i}]");
                        let Some(e) = self.map(it, &w) else { continue };
                        let mut p = PathSpec::default();
                        let mut has_path = false;
                        let mut ok = true;
                        for (k, v) in e {
                            match k.as_str().unwrap_or_default() {
                                "port" => {
                                    p.port = self.port(v, &format!("{w}.port"));
                                    ok &= p.port.is_some();
                                }
                                "path" => match self.string(v, &format!("{w}.path")) {
                                    Some(s) => {
                                        p.path = s;
                                        has_path = true;
                                    }
                                    None => ok = false,
                                },
                                "stripPath" => {
                                    p.strip_path = self.bool(v, &format!("{w}.stripPath"))
                                }
                                "target" => p.target = self.template(v, &format!("{w}.target")),
                                _ => self.unknown_key(k, &w, PATH_KEYS),
                            }
                        }
                        if !has_path && ok {
                            self.err(
                                Diagnostic::error(
                                    codes::MISSING_KEY,
                                    it.span,
                                    format!("{w} has no `path`"),
                                )
                                .with_help("write `path: /`"),
                            );
                            ok = false;
                        }
                        if ok {
                            n.paths.push(p);
                        }
                    }
                }
                "path" => n.legacy_path = self.string(v, &format!("{what}.path")),
                "stripPath" => n.legacy_strip_path = self.bool(v, &format!("{what}.stripPath")),
                _ => self.unknown_key(k, &what, NETWORK_KEYS),
            }
        }
        Some(n)
    }

    fn volume_mounts(&mut self, node: &Node<'_>, obj: &str) -> Option<Vec<VolumeMount>> {
        let what = format!("{obj}: volumeMounts");
        let items = self.seq(node, &what)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let w = format!("{what}[{i}]");
            let Some(e) = self.map(it, &w) else { continue };
            let mut name = None;
            let mut mount_path = None;
            let mut workspace_path = None;
            for (k, v) in e {
                match k.as_str().unwrap_or_default() {
                    "name" => name = self.string(v, &format!("{w}.name")),
                    "mountPath" => mount_path = self.string(v, &format!("{w}.mountPath")),
                    "workspacePath" => {
                        workspace_path = match v.resolve() {
                            Some(Resolved::Null) => Some(Spanned::new(String::new(), v.span)),
                            _ => self.string(v, &format!("{w}.workspacePath")),
                        }
                    }
                    _ => self.unknown_key(k, &w, MOUNT_KEYS),
                }
            }
            for (key, missing) in [
                ("name", name.is_none()),
                ("mountPath", mount_path.is_none()),
            ] {
                if missing && !e.iter().any(|(k, _)| k.as_str() == Some(key)) {
                    self.err(Diagnostic::error(
                        codes::MISSING_KEY,
                        it.span,
                        format!("{w} has no `{key}`"),
                    ));
                }
            }
            if let (Some(name), Some(mount_path)) = (name, mount_path) {
                out.push(VolumeMount {
                    name,
                    mount_path,
                    workspace_path,
                });
            }
        }
        Some(out)
    }
}

/// The span of byte `offset` inside a scalar's text, when the scalar is on one line and its
/// text maps 1:1 to the source (plain, or quoted without escapes); else the whole scalar.
fn offset_span(node: &Node<'_>, text: &str, offset: usize) -> Span {
    let sp = node.span;
    if sp.start.line != sp.end.line {
        return sp;
    }
    let chars = text.chars().count() as u32;
    let width = sp.end.col.saturating_sub(sp.start.col);
    let lead = if width == chars {
        0
    } else if width == chars + 2 {
        1
    } else {
        return sp;
    };
    let col = sp.start.col + lead + text[..offset.min(text.len())].chars().count() as u32;
    let mut start = sp.start;
    start.col = col;
    let mut end = start;
    end.col = col + 3;
    Span::new(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys() {
        assert_eq!(
            did_you_mean("healthEndpont", SERVICE_KEYS),
            Some("healthEndpoint")
        );
        assert_eq!(did_you_mean("replica", SERVICE_KEYS), Some("replicas"));
        assert_eq!(did_you_mean("stripath", PATH_KEYS), Some("stripPath"));
        assert_eq!(did_you_mean("zzzzzz", SERVICE_KEYS), None);
    }
}
