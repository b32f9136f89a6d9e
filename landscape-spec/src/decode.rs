//! From the YAML tree to the typed model: types, required and unknown keys, shapes.
//! Semantic rules that look across fields live in [`crate::validate`].

use crate::diag::{codes, Diagnostic};
use crate::model::*;
use crate::plans::PlanCatalogue;
use crate::span::{Pos, Span, Spanned};
use crate::template::Template;
use crate::yaml::{Node, NodeKind, Resolved, Style};
use indexmap::IndexMap;
use std::borrow::Cow;

type Entries<'a> = Vec<(Node<'a>, Node<'a>)>;

/// Where a value sits, rendered only when a diagnostic needs it (building message strings for
/// every field would cost more than parsing).
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'p> {
    parent: Option<&'p Ctx<'p>>,
    seg: Seg<'p>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Root,
    Service(&'p str),
    Key(&'p str),
    Index(usize),
}

impl<'p> Ctx<'p> {
    const ROOT: Ctx<'static> = Ctx {
        parent: None,
        seg: Seg::Root,
    };

    fn key<'s>(&'s self, k: &'s str) -> Ctx<'s> {
        Ctx {
            parent: Some(self),
            seg: Seg::Key(k),
        }
    }

    fn index(&self, i: usize) -> Ctx<'_> {
        Ctx {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn service<'s>(&'s self, name: &'s str) -> Ctx<'s> {
        Ctx {
            parent: Some(self),
            seg: Seg::Service(name),
        }
    }
}

pub(crate) struct Decoder<'d> {
    pub diags: &'d mut Vec<Diagnostic>,
    pub version: SchemaVersion,
    /// Services decoded ahead by the streaming fast reader (see `fast::parse_streaming`);
    /// the tree holds an empty mapping in their place.
    pub streamed: Option<StreamedRun<'d>>,
    /// Set when the services of `run` are exactly the streamed ones and they were checked
    /// while streaming: the schema version assumed and what the checks found.
    pub checked: Option<(SchemaVersion, Vec<Diagnostic>)>,
}

/// The services of a block-style `run` mapping, decoded while the fast reader was still
/// reading the file, in file order, with the diagnostics their decoding produced. Those are
/// only reported for services the decoder then uses, where it would have decoded them.
#[derive(Default)]
pub(crate) struct StreamedRun<'p> {
    services: IndexMap<String, Service>,
    /// Where each service's key starts (increasing).
    keys: Vec<Pos>,
    /// Diagnostics, with the index of the service they belong to (increasing).
    diags: Vec<(usize, Diagnostic)>,
    scratch: Vec<Diagnostic>,
    /// The semantic checks of each service (`validate::service`), run while it is still in
    /// cache; set when the schema version was known before `run`.
    pub check: Option<StreamCheck<'p>>,
    /// How many top-level `run` keys the reader met (more than one is an error).
    pub runs: u32,
}

impl StreamedRun<'_> {
    /// Whether no service was streamed yet.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Makes room for `n` more services.
    pub fn reserve(&mut self, n: usize) {
        self.services.reserve(n);
        self.keys.reserve(n);
        if let Some(c) = &mut self.check {
            // about one route per service: no rehash (which would re-read every key)
            c.routes.reserve(n);
        }
    }
}

/// The state of the per-service checks run while streaming.
pub(crate) struct StreamCheck<'p> {
    version: SchemaVersion,
    plans: Option<&'p PlanCatalogue>,
    routes: crate::validate::Routes,
    diags: Vec<Diagnostic>,
}

impl<'p> StreamCheck<'p> {
    /// Checks against `version` and `plans`.
    pub fn new(version: SchemaVersion, plans: Option<&'p PlanCatalogue>) -> Self {
        StreamCheck {
            version,
            plans,
            routes: Default::default(),
            diags: Vec::new(),
        }
    }
}

/// Decodes one `run.<name>` entry on its own and adds it to `out`. Decoding a service does
/// not depend on the schema version or on anything outside the service. The reader drops
/// duplicate keys before this is called, so a name seen before can only come from a second
/// top-level `run`, which is itself dropped as a duplicate: such a service is skipped.
pub(crate) fn stream_service(out: &mut StreamedRun<'_>, key: &Node<'_>, value: Node<'_>) {
    let name = key.as_str().unwrap_or_default();
    if out.services.contains_key(name) {
        return;
    }
    let index = out.keys.len();
    let mut dec = Decoder {
        diags: &mut out.scratch,
        version: SchemaVersion::LATEST,
        streamed: None,
        checked: None,
    };
    let mut service = dec.service(value, Ctx::ROOT.service(name));
    service.name = Spanned::new(name.to_string(), key.span);
    out.services.insert(name.to_string(), service);
    out.keys.push(key.span.start);
    out.diags.extend(out.scratch.drain(..).map(|d| (index, d)));
    if let Some(c) = &mut out.check {
        crate::validate::service(
            &mut c.diags,
            c.version,
            &out.services,
            index,
            c.plans,
            &mut c.routes,
        );
    }
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

    fn wrong_type(&mut self, node: &Node<'_>, what: Ctx<'_>, expected: &str) {
        self.err(Diagnostic::error(
            codes::WRONG_TYPE,
            node.span,
            format!(
                "{} must be {expected}, found {}",
                Name(what),
                node.describe()
            ),
        ));
    }

    fn unknown_key(&mut self, key: &Node<'_>, object: Ctx<'_>, expected: &[&str]) {
        let k = key.as_str().unwrap_or_default();
        let mut d = Diagnostic::error(
            codes::UNKNOWN_KEY,
            key.span,
            format!("unknown key \"{k}\" in {}", Name(object)),
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

    fn missing(&mut self, at: Span, what: Ctx<'_>, key: &str, help: &str) {
        self.err(
            Diagnostic::error(
                codes::MISSING_KEY,
                at,
                format!("{} has no `{key}`", Name(what)),
            )
            .with_help(help),
        );
    }

    /// The entries of a mapping; null counts as empty; anything else is a type error.
    fn map<'a>(&mut self, node: Node<'a>, what: Ctx<'_>) -> Option<Entries<'a>> {
        match node.kind {
            NodeKind::Map(e) => Some(e),
            NodeKind::Scalar(ref s, Style::Plain) if is_null(s) => Some(Vec::new()),
            _ => {
                self.wrong_type(&node, what, "a mapping");
                None
            }
        }
    }

    fn seq<'a>(&mut self, node: Node<'a>, what: Ctx<'_>) -> Option<Vec<Node<'a>>> {
        match node.kind {
            NodeKind::Seq(e) => Some(e),
            NodeKind::Scalar(ref s, Style::Plain) if is_null(s) => Some(Vec::new()),
            _ => {
                self.wrong_type(&node, what, "a list");
                None
            }
        }
    }

    /// A string field: any non-null scalar, taken as written.
    fn string(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<String>> {
        match node.kind {
            NodeKind::Scalar(s, style) if !(style == Style::Plain && is_null(&s)) => {
                Some(Spanned::new(s.into_owned(), node.span))
            }
            _ => {
                self.wrong_type(&node, what, "a string");
                None
            }
        }
    }

    fn bool(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<bool>> {
        match (&node.kind, node.resolve()) {
            (NodeKind::Scalar(s, Style::Plain), Some(Resolved::Bool(b))) => {
                if s == "true" || s == "false" {
                    Some(Spanned::new(b, node.span))
                } else {
                    self.err(
                        Diagnostic::error(
                            codes::WRONG_TYPE,
                            node.span,
                            format!("{} must be true or false, found \"{s}\"", Name(what)),
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
                    format!(
                        "{} must be true or false, found {}",
                        Name(what),
                        node.describe()
                    ),
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
                self.wrong_type(&node, what, "true or false");
                None
            }
        }
    }

    fn int(
        &mut self,
        node: Node<'_>,
        what: Ctx<'_>,
        min: i128,
        max: i128,
    ) -> Option<Spanned<i128>> {
        match node.resolve() {
            Some(Resolved::Int(i)) => {
                if i < min || i > max {
                    self.err(Diagnostic::error(
                        codes::OUT_OF_RANGE,
                        node.span,
                        format!(
                            "{} {i} is out of range; expected {}",
                            Name(what),
                            if max >= u32::MAX as i128 {
                                format!("at least {min}")
                            } else {
                                format!("{min}..{max}")
                            }
                        ),
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
                        format!("{} must be a number, found the string \"{s}\"", Name(what)),
                    )
                    .with_help(format!("remove the quotes: {s}")),
                );
                None
            }
            _ => {
                self.wrong_type(&node, what, "an integer");
                None
            }
        }
    }

    fn port(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<u16>> {
        self.int(node, what, 1, 65535).map(|i| i.map(|v| v as u16))
    }

    fn u32(&mut self, node: Node<'_>, what: Ctx<'_>, min: i128) -> Option<Spanned<u32>> {
        self.int(node, what, min, u32::MAX as i128)
            .map(|i| i.map(|v| v as u32))
    }

    fn u64(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<u64>> {
        self.int(node, what, 0, u64::MAX as i128)
            .map(|i| i.map(|v| v as u64))
    }

    /// A scalar parsed as a template; numbers and bools are taken as their text.
    fn template(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<Template>> {
        match node.kind {
            NodeKind::Scalar(s, style) if !(style == Style::Plain && is_null(&s)) => {
                if !crate::template::has_template(&s) {
                    return Some(Spanned::new(Template::literal(s.into_owned()), node.span));
                }
                let span = node.span;
                let probe = Node {
                    kind: NodeKind::Scalar(Cow::Borrowed(""), style),
                    span,
                };
                self.template_text(&probe, &s, what)
            }
            _ => {
                self.wrong_type(&node, what, "a string, number or boolean");
                None
            }
        }
    }

    fn template_text(
        &mut self,
        node: &Node<'_>,
        text: &str,
        what: Ctx<'_>,
    ) -> Option<Spanned<Template>> {
        match Template::parse(text) {
            Ok(t) => Some(Spanned::new(t, node.span)),
            Err(e) => {
                let at = offset_span(node, text, e.offset);
                self.err(
                    Diagnostic::error(
                        codes::TEMPLATE,
                        at,
                        format!("{}: {}", Name(what), e.message),
                    )
                    .with_help(e.help),
                );
                None
            }
        }
    }

    pub(crate) fn landscape(&mut self, root: Node<'_>) -> Option<Landscape> {
        let entries = match root.kind {
            NodeKind::Map(e) => e,
            _ => {
                let d = Diagnostic::error(
                    codes::WRONG_TYPE,
                    root.span,
                    format!("a ci.yml must be a mapping with schemaVersion, prepare, test and run; found {}", root.describe()),
                );
                self.err(d);
                return None;
            }
        };
        let mut l = Landscape::default();
        // The version decides the shape of `run`, so read it first.
        let explicit_version = entries
            .iter()
            .any(|(k, _)| k.as_str() == Some("schemaVersion"));
        let ctx = Ctx::ROOT;
        let mut rest = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if k.as_str() != Some("schemaVersion") {
                rest.push((k, v));
                continue;
            }
            let span = v.span;
            if let Some(s) = self.string(v, ctx.key("schemaVersion")) {
                match SchemaVersion::parse(&s) {
                    Some(ver) => l.schema_version = Spanned::new(ver, s.span),
                    None => {
                        let expected: Vec<&str> =
                            SchemaVersion::ALL.iter().map(|v| v.as_str()).collect();
                        self.err(
                            Diagnostic::error(
                                codes::SCHEMA_VERSION,
                                span,
                                format!("unknown schemaVersion \"{}\"", s.value),
                            )
                            .with_help(format!("expected one of: {}", expected.join(", "))),
                        );
                        // Check the rest against the newest shape.
                        l.schema_version = Spanned::new(SchemaVersion::LATEST, s.span);
                    }
                }
            }
        }
        self.version = l.schema_version.value;
        for (k, v) in rest {
            match k.as_str().unwrap_or_default() {
                "prepare" => l.prepare = self.stage(v, ctx.key("prepare")),
                "test" => l.test = self.stage(v, ctx.key("test")),
                "run" => l.run = self.run(v, explicit_version),
                _ => self.unknown_key(&k, ctx, TOP_KEYS),
            }
        }
        Some(l)
    }

    fn stage(&mut self, node: Node<'_>, ctx: Ctx<'_>) -> Stage {
        let mut st = Stage::default();
        let Some(entries) = self.map(node, ctx) else {
            return st;
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "steps" => st.steps = self.steps(v, ctx.key("steps")),
                _ => self.unknown_key(&k, ctx, STAGE_KEYS),
            }
        }
        st
    }

    fn steps(&mut self, node: Node<'_>, ctx: Ctx<'_>) -> Vec<Step> {
        let Some(items) = self.seq(node, ctx) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let what = ctx.index(i);
            if let NodeKind::Scalar(ref s, style) = item.kind {
                if !(style == Style::Plain && is_null(s)) {
                    self.err(
                        Diagnostic::error(
                            codes::WRONG_TYPE,
                            item.span,
                            format!(
                                "{} must be a mapping with `command`, found {}",
                                Name(what),
                                item.describe()
                            ),
                        )
                        .with_help("write `- command: <shell command>`"),
                    );
                    continue;
                }
            }
            let item_span = item.span;
            let Some(entries) = self.map(item, what) else {
                continue;
            };
            let mut name = None;
            let mut command = None;
            let mut saw_command = false;
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "name" => name = self.string(v, what.key("name")),
                    "command" => {
                        saw_command = true;
                        command = if matches!(&v.kind, NodeKind::Scalar(s, Style::Plain) if is_null(s))
                        {
                            self.err(
                                Diagnostic::error(
                                    codes::WRONG_TYPE,
                                    v.span,
                                    format!("{} is empty (null)", Name(what.key("command"))),
                                )
                                .with_help("write the shell command to run, or remove the step"),
                            );
                            Some(Spanned::new(String::new(), v.span))
                        } else {
                            self.string(v, what.key("command"))
                        }
                    }
                    _ => self.unknown_key(&k, what, STEP_KEYS),
                }
            }
            match command {
                Some(c) => out.push(Step { name, command: c }),
                None if !saw_command => self.missing(
                    item_span,
                    what,
                    "command",
                    "every step needs `command: <shell command>`",
                ),
                None => {}
            }
        }
        out
    }

    fn run(&mut self, node: Node<'_>, explicit_version: bool) -> Run {
        let ctx = Ctx::ROOT;
        let run_ctx = ctx.key("run");
        let Some(entries) = self.map(node, run_ctx) else {
            return Run::default();
        };
        let is_flat_steps = |(k, v): &(Node<'_>, Node<'_>)| {
            k.as_str() == Some("steps") && !matches!(v.kind, NodeKind::Map(_))
        };
        let has_steps = entries.iter().any(is_flat_steps);
        if !self.version.has_services() {
            // v0.1: `run.steps`.
            if has_steps {
                let mut stage = Stage::default();
                for (k, v) in entries {
                    if k.as_str() == Some("steps") {
                        stage.steps = self.steps(v, run_ctx.key("steps"));
                    } else {
                        self.err(
                            Diagnostic::error(
                                codes::SHAPE_MISMATCH,
                                k.span,
                                format!(
                                    "\"{}\" looks like a v0.2+ service, but this file uses the v0.1 shape (`run.steps`)",
                                    k.as_str().unwrap_or_default()
                                ),
                            )
                            .with_help("use one shape: either flat `run.steps` (no schemaVersion) or services under `run.<name>` with `schemaVersion: v0.4`"),
                        );
                    }
                }
                return Run::Steps(stage);
            }
            if let Some((first, _)) = entries.first() {
                let msg = if explicit_version {
                    "services under `run.<name>` need schemaVersion v0.2 or later"
                } else {
                    "services under `run.<name>` need a schemaVersion (v0.2 or later); without one, the v0.1 shape `run.steps` is expected"
                };
                self.err(
                    Diagnostic::error(codes::SHAPE_MISMATCH, first.span, msg)
                        .with_help("add `schemaVersion: v0.4` at the top of the file"),
                );
                return Run::Services(self.services(entries));
            }
            return Run::Steps(Stage::default());
        }
        if has_steps {
            let mut rest = Vec::with_capacity(entries.len());
            for e in entries {
                if is_flat_steps(&e) {
                    self.err(
                        Diagnostic::error(
                            codes::SHAPE_MISMATCH,
                            e.0.span,
                            format!("flat `run.steps` is the v0.1 shape, but schemaVersion is {}", self.version),
                        )
                        .with_help("move the steps into a service: `run: {app: {steps: [...]}}`, or remove schemaVersion"),
                    );
                } else {
                    rest.push(e);
                }
            }
            return Run::Services(self.services(rest));
        }
        Run::Services(self.services(entries))
    }

    fn services(&mut self, entries: Entries<'_>) -> IndexMap<String, Service> {
        let streamed = self.streamed.take();
        if let Some(st) = streamed {
            let all = st.keys.len() == entries.len()
                && entries
                    .iter()
                    .zip(&st.keys)
                    .all(|((k, _), at)| k.span.start == *at);
            if all {
                // The usual case: every service was decoded while reading.
                self.diags.extend(st.diags.into_iter().map(|(_, d)| d));
                self.checked = st.check.map(|c| (c.version, c.diags));
                return st.services;
            }
            return self.services_mixed(entries, st);
        }
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let (name, svc) = self.one_service(k, v);
            out.insert(name, svc);
        }
        out
    }

    fn one_service(&mut self, k: Node<'_>, v: Node<'_>) -> (String, Service) {
        let span = k.span;
        let name = match k.kind {
            NodeKind::Scalar(s, _) => s.into_owned(),
            _ => String::new(),
        };
        let mut svc = self.service(v, Ctx::ROOT.service(&name));
        svc.name = Spanned::new(name.clone(), span);
        (name, svc)
    }

    /// Some entries of `run` were not decoded while reading (not mappings) or are not used
    /// (the shape checks of `run` dropped them): take the decoded ones by position.
    fn services_mixed(
        &mut self,
        entries: Entries<'_>,
        mut st: StreamedRun,
    ) -> IndexMap<String, Service> {
        let mut out = IndexMap::with_capacity(entries.len());
        let mut diags = st.diags.into_iter().peekable();
        for (k, v) in entries {
            match st.keys.binary_search(&k.span.start) {
                Ok(i) => {
                    while diags.next_if(|(j, _)| *j < i).is_some() {}
                    while let Some((_, d)) = diags.next_if(|(j, _)| *j == i) {
                        self.diags.push(d);
                    }
                    let svc = std::mem::take(&mut st.services[i]);
                    out.insert(svc.name.value.clone(), svc);
                }
                Err(_) => {
                    let (name, svc) = self.one_service(k, v);
                    out.insert(name, svc);
                }
            }
        }
        out
    }

    fn service(&mut self, node: Node<'_>, obj: Ctx<'_>) -> Service {
        let mut s = Service::default();
        let Some(entries) = self.map(node, obj) else {
            return s;
        };
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let what = obj.key(key);
            match key {
                "steps" => s.steps = Some(self.steps(v, what)),
                "image" => s.image = self.string(v, what),
                "baseImage" => s.base_image = self.string(v, what),
                "command" => s.command = self.command(v, what),
                "provider" => s.provider = self.provider(v, what).map(Box::new),
                "plan" => s.plan = self.plan(v, what),
                "config" => s.config = self.config(v, what).map(Box::new),
                "secrets" => s.secrets = self.secrets(v, what).map(Box::new),
                "backups" => s.backups = Some(Box::new(Spanned::new(v.to_json(), v.span))),
                "replicas" => s.replicas = self.u32(v, what, 1),
                "isPublic" => s.is_public = self.bool(v, what),
                "healthEndpoint" => {
                    s.health_endpoint = self.string(v, what);
                    if let Some(h) = &s.health_endpoint {
                        if let Err(e) = HealthEndpoint::parts(h) {
                            self.err(
                                Diagnostic::error(
                                    codes::HEALTH_ENDPOINT,
                                    h.span,
                                    format!("{}: {e}", Name(obj)),
                                )
                                .with_help(
                                    "e.g. http://localhost:3000/health or tcp://localhost:5432",
                                ),
                            );
                        }
                    }
                }
                "env" => s.env = self.env(v, what),
                "network" => s.network = self.network(v, what),
                "runAsUser" => s.run_as_user = self.u32(v, what, 0),
                "runAsGroup" => s.run_as_group = self.u32(v, what, 0),
                "volumeMounts" => s.volume_mounts = self.volume_mounts(v, what),
                "mountSubPath" => s.mount_sub_path = self.string(v, what),
                _ => self.unknown_key(&k, obj, SERVICE_KEYS),
            }
        }
        s
    }

    fn command(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<Vec<String>>> {
        if let NodeKind::Scalar(..) = node.kind {
            self.err(
                Diagnostic::error(codes::WRONG_TYPE, node.span, format!("{} must be a list of arguments, found {}", Name(what), node.describe()))
                    .with_help("write the argv as a list, e.g. `command: [\"nginx\", \"-g\", \"daemon off;\"]`, or use `steps` for a shell command"),
            );
            return None;
        }
        let span = node.span;
        let items = self.seq(node, what)?;
        let mut args = Vec::with_capacity(items.len());
        for (i, it) in items.into_iter().enumerate() {
            args.push(self.string(it, what.index(i))?.value);
        }
        Some(Spanned::new(args, span))
    }

    fn provider(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Provider> {
        let entries = self.map(node, what)?;
        let mut p = Provider::default();
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "name" => p.name = self.string(v, what.key("name")),
                "version" => p.version = self.string(v, what.key("version")),
                "schemaVersion" => p.schema_version = self.string(v, what.key("schemaVersion")),
                _ => self.unknown_key(&k, what, PROVIDER_KEYS),
            }
        }
        Some(p)
    }

    fn plan(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Spanned<Plan>> {
        let span = node.span;
        if let NodeKind::Map(entries) = node.kind {
            let mut m = ManagedPlan::default();
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "id" => m.id = self.u64(v, what.key("id")),
                    "parameters" => {
                        if let Some(e) = self.map(v, what.key("parameters")) {
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
                    _ => self.unknown_key(&k, what, PLAN_KEYS),
                }
            }
            return Some(Spanned::new(Plan::Managed(Box::new(m)), span));
        }
        match node.resolve() {
            Some(Resolved::Int(_)) => self.u64(node, what).map(|i| i.map(Plan::Id)),
            _ => {
                self.wrong_type(&node, what, "a plan id (an integer) or `{id, parameters}`");
                None
            }
        }
    }

    fn config(
        &mut self,
        node: Node<'_>,
        what: Ctx<'_>,
    ) -> Option<IndexMap<String, Spanned<serde_json::Value>>> {
        let entries = self.map(node, what)?;
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            self.check_templates_in(&v, what.key(key));
            out.insert(key.to_string(), Spanned::new(v.to_json(), v.span));
        }
        Some(out)
    }

    /// Reports malformed templates in every string of a free-form value.
    fn check_templates_in(&mut self, node: &Node<'_>, what: Ctx<'_>) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match &n.kind {
                NodeKind::Scalar(s, _) => {
                    if crate::template::has_template(s) {
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
        node: Node<'_>,
        what: Ctx<'_>,
    ) -> Option<IndexMap<String, Spanned<Template>>> {
        let entries = self.map(node, what)?;
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            if let Some(t) = self.template(v, what.key(key)) {
                out.insert(key.to_string(), t);
            }
        }
        Some(out)
    }

    fn env(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<IndexMap<String, EnvVar>> {
        let entries = self.map(node, what)?;
        let mut out = IndexMap::with_capacity(entries.len());
        for (k, v) in entries {
            let key_span = k.span;
            let key = match k.kind {
                NodeKind::Scalar(s, _) => s.into_owned(),
                _ => String::new(),
            };
            if let Some(t) = self.template(v, what.key(&key)) {
                out.insert(key, EnvVar { value: t, key_span });
            }
        }
        Some(out)
    }

    fn network(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Network> {
        let entries = self.map(node, what)?;
        let mut n = Network::default();
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "ports" => {
                    n.written.ports = Some(k.span);
                    let list = what.key("ports");
                    let Some(items) = self.seq(v, list) else {
                        continue;
                    };
                    n.ports.reserve_exact(items.len());
                    for (i, it) in items.into_iter().enumerate() {
                        let w = list.index(i);
                        let it_span = it.span;
                        let Some(e) = self.map(it, w) else { continue };
                        let mut port = None;
                        let mut is_public = None;
                        let mut saw_port = false;
                        for (k, v) in e {
                            match k.as_str().unwrap_or_default() {
                                "port" => {
                                    saw_port = true;
                                    port = self.port(v, w.key("port"));
                                }
                                "isPublic" => is_public = self.bool(v, w.key("isPublic")),
                                _ => self.unknown_key(&k, w, PORT_KEYS),
                            }
                        }
                        match port {
                            Some(port) => n.ports.push(PortSpec { port, is_public }),
                            None if !saw_port => {
                                self.missing(it_span, w, "port", "write `port: 3000`")
                            }
                            None => {}
                        }
                    }
                }
                "paths" => {
                    n.written.paths = Some(k.span);
                    let list = what.key("paths");
                    let Some(items) = self.seq(v, list) else {
                        continue;
                    };
                    n.paths.reserve_exact(items.len());
                    for (i, it) in items.into_iter().enumerate() {
                        let w = list.index(i);
                        let it_span = it.span;
                        let Some(e) = self.map(it, w) else { continue };
                        let mut p = PathSpec::default();
                        let mut has_path = false;
                        let mut ok = true;
                        for (k, v) in e {
                            match k.as_str().unwrap_or_default() {
                                "port" => {
                                    p.port = self.port(v, w.key("port"));
                                    ok &= p.port.is_some();
                                }
                                "path" => match self.string(v, w.key("path")) {
                                    Some(s) => {
                                        p.path = s;
                                        has_path = true;
                                    }
                                    None => ok = false,
                                },
                                "stripPath" => p.strip_path = self.bool(v, w.key("stripPath")),
                                "target" => p.target = self.template(v, w.key("target")),
                                _ => self.unknown_key(&k, w, PATH_KEYS),
                            }
                        }
                        if !has_path && ok {
                            self.missing(it_span, w, "path", "write `path: /`");
                            ok = false;
                        }
                        if ok {
                            n.paths.push(p);
                        }
                    }
                }
                "path" => n.legacy_path = self.string(v, what.key("path")),
                "stripPath" => n.legacy_strip_path = self.bool(v, what.key("stripPath")),
                _ => self.unknown_key(&k, what, NETWORK_KEYS),
            }
        }
        Some(n)
    }

    fn volume_mounts(&mut self, node: Node<'_>, what: Ctx<'_>) -> Option<Vec<VolumeMount>> {
        let items = self.seq(node, what)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, it) in items.into_iter().enumerate() {
            let w = what.index(i);
            let it_span = it.span;
            let Some(e) = self.map(it, w) else { continue };
            let mut name = None;
            let mut mount_path = None;
            let mut workspace_path = None;
            let (mut saw_name, mut saw_mount) = (false, false);
            for (k, v) in e {
                match k.as_str().unwrap_or_default() {
                    "name" => {
                        saw_name = true;
                        name = self.string(v, w.key("name"));
                    }
                    "mountPath" => {
                        saw_mount = true;
                        mount_path = self.string(v, w.key("mountPath"));
                    }
                    "workspacePath" => {
                        workspace_path = if matches!(&v.kind, NodeKind::Scalar(s, Style::Plain) if is_null(s))
                        {
                            Some(Spanned::new(String::new(), v.span))
                        } else {
                            self.string(v, w.key("workspacePath"))
                        }
                    }
                    _ => self.unknown_key(&k, w, MOUNT_KEYS),
                }
            }
            if !saw_name {
                self.missing(it_span, w, "name", "write `name: _workspace`");
            }
            if !saw_mount {
                self.missing(it_span, w, "mountPath", "write the absolute path inside the container, e.g. `mountPath: /home/user/app`");
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

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// Renders a context for a message: `service "web": network.ports[0].port`, `prepare.steps[1]`.
struct Name<'c>(Ctx<'c>);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut segs = Vec::new();
        let mut c = Some(&self.0);
        while let Some(x) = c {
            segs.push(x.seg);
            c = x.parent;
        }
        segs.reverse();
        let mut out = String::new();
        let mut after_service = false;
        for s in segs {
            match s {
                Seg::Root => {}
                Seg::Service(n) => {
                    out.push_str(&format!("service \"{n}\""));
                    after_service = true;
                }
                Seg::Key(k) => {
                    if after_service {
                        out.push_str(": ");
                        after_service = false;
                    } else if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if out.is_empty() {
            out.push_str("the top level");
        }
        f.write_str(&out)
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
