//! The translation itself: one pass over the (upgraded) model, collecting every error and
//! warning before deciding.

use crate::gateway::{
    BackendRef, HttpRoute, HttpRouteFilter, HttpRouteMatch, HttpRouteRule, HttpRouteSpec,
    ParentRef, PathMatch,
};
use crate::keda::{
    HttpScaledObject, HttpScaledObjectSpec, ReplicaRange, ScaleTargetRef, INTERCEPTOR_ALIAS,
    INTERCEPTOR_PORT, INTERCEPTOR_SERVICE,
};
use crate::names::{is_dns1035_label, is_dns1123_label, is_env_name, is_secret_key};
use crate::{codes, Error, Object, Options, Rendered, Routes, APP_CLAIM, KEYS_ANNOTATION};
use crate::{PHASE_LABEL, VAULT_SECRET};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use landscape_spec::upgrade::APP_DIR;
use landscape_spec::{
    Diagnostic, HealthEndpoint, HealthScheme, Landscape, Part, Plan, Pos, Reference, Run, Service,
    ServiceKind, Span, Spanned, Stage, Template,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The prefix of the helper variables that carry a vault value into a composed env value.
const HELPER_PREFIX: &str = "LANDSCAPE_VAULT_";

/// Translates a landscape. v0.1 files and legacy forms are upgraded first
/// ([`landscape_spec::upgrade()`]). Returns every error at once, or the objects with the
/// warnings.
pub fn render(landscape: &Landscape, opts: &Options) -> Result<Rendered, Error> {
    if !is_dns1123_label(&opts.namespace) {
        return Err(Error::Options(format!(
            "namespace {:?} is not a valid Kubernetes namespace; use 1-63 lower-case letters, digits and `-`",
            opts.namespace
        )));
    }
    let up = landscape_spec::upgrade(landscape).landscape;
    let services: Vec<&Service> = match &up.run {
        Run::Services(m) => m.values().collect(),
        Run::Steps(_) => Vec::new(),
    };
    if let Some(unknown) = opts
        .image_map
        .keys()
        .find(|k| !services.iter().any(|s| &s.name.value == *k))
    {
        return Err(Error::Options(format!(
            "image map: service {unknown:?} is not in the landscape (services: {})",
            services
                .iter()
                .map(|s| s.name.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut t = Translator {
        opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        vault_keys: BTreeMap::new(),
        names: HashMap::new(),
        uses_claim: false,
        fallback: Span::at(Pos::new(1, 1)),
        scaled: None,
        interceptor_alias: false,
        scaled_services: Vec::new(),
    };
    let mut stage_objects = Vec::new();
    for (stage, name) in [(&up.prepare, "prepare"), (&up.test, "test")] {
        if let Some(job) = t.job(stage, name) {
            stage_objects.push(Object::Job(job));
        }
    }
    let mut run_objects = Vec::new();
    for s in &services {
        t.service(s, &mut run_objects);
    }
    let mut objects = Vec::new();
    if opts.create_namespace {
        objects.push(Object::Namespace(core::Namespace {
            metadata: ObjectMeta {
                name: Some(opts.namespace.clone()),
                labels: Some(t.labels(&opts.namespace, "namespace", "setup")),
                ..Default::default()
            },
            ..Default::default()
        }));
    }
    if t.uses_claim {
        objects.push(Object::PersistentVolumeClaim(t.claim()));
    }
    let mut notes = Vec::new();
    if !t.vault_keys.is_empty() {
        objects.push(Object::Secret(t.secret(&mut notes)));
    }
    if t.interceptor_alias {
        run_objects.insert(0, Object::Service(t.interceptor_alias_service()));
    }
    if let Some(note) = t.scale_to_zero_note() {
        notes.push(note);
    }
    objects.extend(stage_objects);
    objects.extend(run_objects);
    if !t.errors.is_empty() {
        t.errors.sort_by_key(|d| d.span.start);
        return Err(Error::Invalid(t.errors));
    }
    t.warnings.sort_by_key(|d| d.span.start);
    Ok(Rendered {
        namespace: opts.namespace.clone(),
        objects,
        warnings: t.warnings,
        notes,
    })
}

struct Translator<'o> {
    opts: &'o Options,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Vault names referenced, with the first place each is used.
    vault_keys: BTreeMap<String, Span>,
    /// (kind, name) of every object made, with the ci.yml place that made it.
    names: HashMap<(&'static str, String), (Span, String)>,
    uses_claim: bool,
    /// Where the service being translated is written (see [`Translator::at`]).
    fallback: Span,
    /// The service being translated is scaled to zero: its routes go through the interceptor.
    scaled: Option<Scaled>,
    /// Whether an Ingress sends to the interceptor (through [`INTERCEPTOR_ALIAS`]).
    interceptor_alias: bool,
    /// The services that got an `HTTPScaledObject`.
    scaled_services: Vec<String>,
}

/// A service scaled to zero: the one port its public traffic goes to, and (for HTTPRoutes)
/// the Host header its routes set, which the interceptor routes by.
struct Scaled {
    port: u16,
    host: String,
}

/// A container's process: image, argv, working directory.
struct Process {
    image: String,
    command: Option<Vec<String>>,
    working_dir: Option<String>,
}

impl Translator<'_> {
    /// `span`, or where the current service is written when `span` is unknown (values
    /// that [`landscape_spec::upgrade()`] made up have no position of their own).
    fn at(&self, span: Span) -> Span {
        if span.is_known() {
            span
        } else {
            self.fallback
        }
    }

    fn err(&mut self, code: &'static str, span: Span, msg: String, help: &str) {
        let span = self.at(span);
        self.errors
            .push(Diagnostic::error(code, span, msg).with_help(help));
    }

    fn warn(&mut self, code: &'static str, span: Span, msg: String, help: &str) {
        let span = self.at(span);
        self.warnings
            .push(Diagnostic::warning(code, span, msg).with_help(help));
    }

    /// Claims a (kind, name) pair; a second claimant is an error naming both places.
    fn claim_name(&mut self, kind: &'static str, name: &str, span: Span, what: String) -> bool {
        let span = self.at(span);
        if !is_dns1123_label(name) || (kind == "Service" && !is_dns1035_label(name)) {
            self.err(
                codes::INVALID_NAME,
                span,
                format!("{what}: {name:?} is not a valid Kubernetes {kind} name"),
                "use 1-63 lower-case letters, digits and `-`, starting with a letter",
            );
            return false;
        }
        match self.names.get(&(kind, name.to_string())) {
            Some((first, first_what)) => {
                let d = Diagnostic::error(
                    codes::COLLISION,
                    span,
                    format!("{what} would be the {kind} {name:?}, which {first_what} already is"),
                )
                .with_related(*first, format!("{first_what} is here"))
                .with_help("rename one of the services");
                self.errors.push(d);
                false
            }
            None => {
                self.names.insert((kind, name.to_string()), (span, what));
                true
            }
        }
    }

    fn labels(&self, name: &str, component: &str, phase: &str) -> BTreeMap<String, String> {
        let mut l = self.selector(name, component);
        l.insert(
            "app.kubernetes.io/part-of".into(),
            self.opts.namespace.clone(),
        );
        l.insert("app.kubernetes.io/managed-by".into(), "landscape".into());
        l.insert(PHASE_LABEL.into(), phase.into());
        l
    }

    fn selector(&self, name: &str, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), name.to_string()),
            (
                "app.kubernetes.io/instance".to_string(),
                self.opts.namespace.clone(),
            ),
            (
                "app.kubernetes.io/component".to_string(),
                component.to_string(),
            ),
        ])
    }

    fn meta(&self, name: &str, component: &str, phase: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.opts.namespace.clone()),
            labels: Some(self.labels(name, component, phase)),
            ..Default::default()
        }
    }

    fn claim(&self) -> core::PersistentVolumeClaim {
        core::PersistentVolumeClaim {
            metadata: self.meta(APP_CLAIM, "app-directory", "setup"),
            spec: Some(core::PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteMany".into()]),
                storage_class_name: self.opts.storage_class.clone(),
                resources: Some(core::VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(self.opts.storage.clone()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn secret(&mut self, notes: &mut Vec<String>) -> core::Secret {
        let mut meta = self.meta(VAULT_SECRET, "vault", "setup");
        let keys: Vec<String> = self.vault_keys.keys().cloned().collect();
        meta.annotations = Some(BTreeMap::from([(
            KEYS_ANNOTATION.to_string(),
            keys.join(","),
        )]));
        let ns = &self.opts.namespace;
        let data = match &self.opts.vault {
            Some(values) => {
                let mut data = BTreeMap::new();
                for (k, span) in self.vault_keys.clone() {
                    match values.0.get(&k) {
                        Some(v) => {
                            data.insert(k, ByteString(v.clone().into_bytes()));
                        }
                        None => self.warn(
                            codes::W_VAULT_MISSING,
                            span,
                            format!("vault secret {k:?} has no value; the Secret {VAULT_SECRET:?} is rendered without it"),
                            "set it in the vault, or add it to the Secret before the services start",
                        ),
                    }
                }
                Some(data)
            }
            None => {
                let lits: Vec<String> = keys
                    .iter()
                    .map(|k| format!("--from-literal={k}=..."))
                    .collect();
                notes.push(format!(
                    "the Secret {VAULT_SECRET:?} is rendered without values (keys: {}); fill it before phase=run:\n  kubectl -n {ns} create secret generic {VAULT_SECRET} {} --dry-run=client -o yaml | kubectl apply -f -",
                    keys.join(", "),
                    lits.join(" ")
                ));
                None
            }
        };
        core::Secret {
            metadata: meta,
            type_: Some("Opaque".into()),
            data,
            ..Default::default()
        }
    }

    fn claim_volume(&mut self) -> core::Volume {
        self.uses_claim = true;
        core::Volume {
            name: APP_CLAIM.into(),
            persistent_volume_claim: Some(core::PersistentVolumeClaimVolumeSource {
                claim_name: APP_CLAIM.into(),
                read_only: None,
            }),
            ..Default::default()
        }
    }

    fn app_mount(path: &str, sub: Option<String>) -> core::VolumeMount {
        core::VolumeMount {
            name: APP_CLAIM.into(),
            mount_path: path.to_string(),
            sub_path: sub,
            ..Default::default()
        }
    }

    /// The prepare / test stage as a Job: one init container per step, the last step as
    /// the main container, so steps run in order and the first failure fails the Job.
    fn job(&mut self, stage: &Stage, name: &'static str) -> Option<Job> {
        let first = stage.steps.first()?;
        let image = match &self.opts.image {
            Some(i) => i.clone(),
            None => {
                self.err(
                    codes::NO_IMAGE,
                    first.command.span,
                    format!("the {name} stage has no image to run in"),
                    "pass --image (the workspace image the stages and Reactives run in)",
                );
                return None;
            }
        };
        self.claim_name("Job", name, first.command.span, format!("the {name} stage"));
        let mut containers: Vec<core::Container> = stage
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| core::Container {
                name: format!("step-{}", i + 1),
                image: Some(image.clone()),
                command: Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    escape_expansion(&step.command.value),
                ]),
                working_dir: Some(APP_DIR.into()),
                volume_mounts: Some(vec![Self::app_mount(APP_DIR, None)]),
                security_context: Some(security(None, None, false, false)),
                ..Default::default()
            })
            .collect();
        let main = containers.pop()?;
        let steps_note: Vec<String> = stage
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = s.name.as_ref().map_or("", |n| n.value.as_str());
                format!("step-{}: {n}", i + 1)
            })
            .collect();
        let mut meta = self.meta(name, "stage", name);
        meta.annotations = Some(BTreeMap::from([(
            "landscape.dev/steps".to_string(),
            steps_note.join("\n"),
        )]));
        let volume = self.claim_volume();
        Some(Job {
            metadata: meta,
            spec: Some(JobSpec {
                backoff_limit: Some(0),
                template: core::PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels(name, "stage", name)),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        restart_policy: Some("Never".into()),
                        init_containers: (!containers.is_empty()).then_some(containers),
                        containers: vec![main],
                        volumes: Some(vec![volume]),
                        enable_service_links: Some(false),
                        automount_service_account_token: Some(false),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn service(&mut self, s: &Service, out: &mut Vec<Object>) {
        let name = s.name.value.as_str();
        let first_step = s.steps().first().map(|st| st.command.span);
        self.fallback = [Some(s.name.span), first_step]
            .into_iter()
            .flatten()
            .find(Span::is_known)
            .unwrap_or(Span::at(Pos::new(1, 1)));
        let span = self.at(s.name.span);
        match s.kind() {
            ServiceKind::ManagedService => {
                let provider = s
                    .provider
                    .as_ref()
                    .and_then(|p| p.name.as_ref())
                    .map_or("?", |n| n.value.as_str());
                self.warn(
                    codes::W_MANAGED_SERVICE,
                    span,
                    format!("managed service {name:?} (provider {provider}) is not rendered"),
                    &format!("provision it in the cluster (an operator or a chart) behind a Service named {name:?} in namespace {:?}, so the other services reach it by the same name", self.opts.namespace),
                );
                return;
            }
            ServiceKind::HeadlessRoute => {
                self.headless(s, out);
                return;
            }
            ServiceKind::Reactive | ServiceKind::ManagedContainer => {}
        }
        let ports = ports_of(s);
        let process = self.process(s);
        let resources = self.resources(s);
        let env = self.env(s);
        let probe = self.probe(s, &ports);
        let mounts = self.mounts(s);
        if !self.claim_name("Deployment", name, span, format!("service {name:?}")) {
            return;
        }
        let Some(process) = process else { return };
        let scaled_port = self.scale_plan(s, &ports);
        let privileged_port = ports.iter().any(|(p, _)| *p < 1024);
        let root_image = s.kind() == ServiceKind::ManagedContainer
            && s.run_as_user.as_ref().is_none_or(|u| u.value == 0);
        let container = core::Container {
            name: name.to_string(),
            image: Some(process.image),
            command: process.command,
            working_dir: process.working_dir,
            env: (!env.is_empty()).then_some(env),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|(p, _)| core::ContainerPort {
                        container_port: i32::from(*p),
                        name: Some(port_name(*p)),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect()
            }),
            resources,
            startup_probe: probe.as_ref().map(|p| probe_with(p, 2, 150)),
            readiness_probe: probe.as_ref().map(|p| probe_with(p, 5, 2)),
            liveness_probe: probe.as_ref().map(|p| probe_with(p, 10, 3)),
            security_context: Some(security(
                s.run_as_user.as_ref().map(|u| u.value),
                s.run_as_group.as_ref().map(|g| g.value),
                root_image,
                privileged_port,
            )),
            volume_mounts: Some(mounts),
            ..Default::default()
        };
        let volume = self.claim_volume();
        let selector = self.selector(name, "service");
        out.push(Object::Deployment(Deployment {
            metadata: self.meta(name, "service", "run"),
            spec: Some(DeploymentSpec {
                // A scaled Deployment's replicas belong to KEDA (an apply must not reset them).
                replicas: scaled_port
                    .is_none()
                    .then(|| i32::try_from(s.replicas()).unwrap_or(i32::MAX)),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..Default::default()
                },
                template: core::PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels(name, "service", "run")),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        hostname: Some(name.to_string()),
                        containers: vec![container],
                        volumes: Some(vec![volume]),
                        enable_service_links: Some(false),
                        automount_service_account_token: Some(false),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }));
        if !ports.is_empty() && self.claim_name("Service", name, span, format!("service {name:?}"))
        {
            out.push(Object::Service(core::Service {
                metadata: self.meta(name, "service", "run"),
                spec: Some(core::ServiceSpec {
                    type_: Some("ClusterIP".into()),
                    selector: Some(selector),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(p, _)| core::ServicePort {
                                name: Some(port_name(*p)),
                                port: i32::from(*p),
                                target_port: Some(IntOrString::Int(i32::from(*p))),
                                protocol: Some("TCP".into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }));
        }
        self.scaled = scaled_port.map(|port| Scaled {
            port,
            host: format!("{name}.{}.svc", self.opts.namespace),
        });
        self.routes(s, &ports, out);
        self.public_ports(s, out);
        if let Some(sc) = self.scaled.take() {
            if let Some(o) = self.scaled_object(s, &ports, &sc, span) {
                out.push(Object::HttpScaledObject(o));
            }
        }
    }

    fn process(&mut self, s: &Service) -> Option<Process> {
        let name = &s.name.value;
        let image = self
            .opts
            .image_map
            .get(name)
            .cloned()
            .or_else(|| s.image_ref().map(|i| i.value.clone()))
            .or_else(|| self.opts.image.clone());
        let Some(image) = image else {
            let what = if s.kind() == ServiceKind::Reactive {
                format!(
                    "reactive service {name:?} has no image to run in (a cluster has no host base)"
                )
            } else {
                format!("service {name:?} has a `command` but no `image`")
            };
            self.err(
                codes::NO_IMAGE,
                s.name.span,
                what,
                "pass --image (for every Reactive) or --image-map with an entry for this service",
            );
            return None;
        };
        let steps = s.steps();
        let (command, working_dir) = if let Some(argv) = &s.command {
            (
                Some(argv.value.iter().map(|a| escape_expansion(a)).collect()),
                None,
            )
        } else if !steps.is_empty() {
            // As the local runtime runs them: one shell, `set -e`, the steps in order.
            let script: Vec<&str> = steps.iter().map(|st| st.command.value.as_str()).collect();
            (
                Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    escape_expansion(&format!("set -e\n{}", script.join("\n"))),
                ]),
                Some(APP_DIR.to_string()),
            )
        } else {
            (None, None)
        };
        Some(Process {
            image,
            command,
            working_dir,
        })
    }

    fn resources(&mut self, s: &Service) -> Option<core::ResourceRequirements> {
        let plan = s.plan.as_ref()?;
        let Plan::Id(id) = plan.value else {
            return None;
        };
        let name = &s.name.value;
        let Some(cat) = &self.opts.plans else {
            self.warn(
                codes::W_NO_CATALOGUE,
                plan.span,
                format!("service {name:?}: plan {id} is not looked up (no plan catalogue); the Deployment gets no resources"),
                "pass --plans FILE to set requests = limits from the plan",
            );
            return None;
        };
        let Some(info) = cat.get(id) else {
            let ids = cat.ids();
            self.err(
                codes::UNKNOWN_PLAN,
                plan.span,
                format!("service {name:?}: plan {id} is not in the plan catalogue"),
                &format!("use one of {ids:?}"),
            );
            return None;
        };
        if s.replicas() > info.max_replicas {
            let span = s.replicas.as_ref().map_or(plan.span, |r| r.span);
            self.err(
                codes::TOO_MANY_REPLICAS,
                span,
                format!(
                    "service {name:?}: {} replicas, but plan {id} allows at most {}",
                    s.replicas(),
                    info.max_replicas
                ),
                "lower `replicas` or pick a larger plan",
            );
        }
        if info.on_demand && self.opts.scale_to_zero.is_none() {
            self.warn(
                codes::W_ON_DEMAND,
                plan.span,
                format!("service {name:?}: plan {id} is on-demand (off when unused), which is not rendered; the Deployment runs all the time"),
                "scale it to zero yourself, or use KEDA's HTTP add-on or Knative",
            );
        }
        let mut q = BTreeMap::new();
        if info.cpu > 0.0 {
            q.insert("cpu".to_string(), Quantity(cpu_quantity(info.cpu)));
        }
        if info.memory > 0 {
            q.insert("memory".to_string(), Quantity(bytes_quantity(info.memory)));
        }
        (!q.is_empty()).then(|| core::ResourceRequirements {
            requests: Some(q.clone()),
            limits: Some(q),
            ..Default::default()
        })
    }

    /// Env vars. A value that is exactly one vault reference becomes a `secretKeyRef`; a
    /// value that mixes text and references refers to helper variables with `$(NAME)`,
    /// which the kubelet expands; every other `$` is escaped so nothing else expands.
    fn env(&mut self, s: &Service) -> Vec<core::EnvVar> {
        let name = &s.name.value;
        let mut helpers: Vec<core::EnvVar> = Vec::new();
        let mut plain: Vec<core::EnvVar> = Vec::new();
        let user_names: BTreeSet<&str> = s.env().map(|(k, _)| k.as_str()).collect();
        for (key, var) in s.env() {
            if !is_env_name(key) {
                self.err(
                    codes::INVALID_NAME,
                    var.key_span,
                    format!("service {name:?}: env {key:?} is not a valid Kubernetes environment variable name"),
                    "use letters, digits, `_`, `-` and `.`, not starting with a digit",
                );
                continue;
            }
            let what = format!("service {name:?} env {key}");
            let parts = var.value.value.parts();
            if let [Part::Ref(Reference::Vault(v))] = parts {
                if self.vault_key(v, var.value.span, &what) {
                    plain.push(secret_env(key, v));
                }
                continue;
            }
            let mut value = String::new();
            for p in parts {
                match p {
                    Part::Literal(l) => value.push_str(&escape_expansion(l)),
                    Part::Ref(Reference::Vault(v)) => {
                        if !self.vault_key(v, var.value.span, &what) {
                            continue;
                        }
                        let helper = format!("{HELPER_PREFIX}{v}");
                        if user_names.contains(helper.as_str()) {
                            self.err(
                                codes::COLLISION,
                                var.value.span,
                                format!("{what}: the helper variable {helper} for vault.{v} collides with an env entry of the same name"),
                                &format!("rename the env entry {helper}"),
                            );
                        }
                        if !helpers.iter().any(|h| h.name == helper) {
                            helpers.push(secret_env(&helper, v));
                        }
                        value.push_str(&format!("$({helper})"));
                    }
                    Part::Ref(r) => {
                        let v = self.context_value(r, var.value.span, &what);
                        value.push_str(&escape_expansion(&v));
                    }
                }
            }
            plain.push(core::EnvVar {
                name: key.clone(),
                value: Some(value),
                value_from: None,
            });
        }
        helpers.extend(plain);
        helpers
    }

    fn vault_key(&mut self, v: &str, span: Span, what: &str) -> bool {
        if !is_secret_key(v) {
            self.err(
                codes::INVALID_NAME,
                span,
                format!("{what}: vault secret {v:?} is not a valid Kubernetes Secret key"),
                "rename the secret: letters, digits, `-`, `_` and `.` only",
            );
            return false;
        }
        self.vault_keys.entry(v.to_string()).or_insert(span);
        true
    }

    fn context_value(&mut self, r: &Reference, span: Span, what: &str) -> String {
        let c = &self.opts.context;
        let (v, flag) = match r {
            Reference::WorkspaceId => (c.workspace_id.clone(), "--workspace-id"),
            Reference::WorkspaceDevDomain => (c.dev_domain.clone(), "--dev-domain"),
            Reference::TeamId => (c.team_id.clone(), "--team-id"),
            Reference::WorkspaceEnv(k) => (c.env.get(k).cloned(), "Context::env"),
            Reference::Vault(_) => (None, ""),
        };
        v.unwrap_or_else(|| {
            self.warn(
                codes::W_CONTEXT,
                span,
                format!("{what}: {r} has no value; rendered as an empty string"),
                &format!("pass {flag}"),
            );
            String::new()
        })
    }

    fn probe(&mut self, s: &Service, ports: &[(u16, Span)]) -> Option<ProbeKind> {
        let h = match &s.health_endpoint {
            // As the local supervisor: without a health endpoint, TCP on the first port.
            None => return ports.first().map(|(p, _)| ProbeKind::Tcp(*p)),
            Some(written) => match HealthEndpoint::parse(written) {
                Ok(h) => (h, written.span),
                Err(e) => {
                    self.err(
                        codes::INVALID_VALUE,
                        written.span,
                        format!("service {:?}: {e}", s.name.value),
                        "write http://localhost:PORT/PATH or tcp://localhost:PORT",
                    );
                    return None;
                }
            },
        };
        let (h, span) = h;
        if !["localhost", "127.0.0.1", "[::1]", "::1"].contains(&h.host.as_str()) {
            self.warn(
                codes::W_HEALTH_HOST,
                span,
                format!("service {:?}: health endpoint host {:?} is not used; the kubelet probes the pod itself", s.name.value, h.host),
                "probe the service's own port",
            );
        }
        Some(match h.scheme {
            HealthScheme::Http => ProbeKind::Http(h.port, h.path, "HTTP"),
            HealthScheme::Https => ProbeKind::Http(h.port, h.path, "HTTPS"),
            HealthScheme::Tcp => ProbeKind::Tcp(h.port),
        })
    }

    fn mounts(&mut self, s: &Service) -> Vec<core::VolumeMount> {
        let mut out = Vec::new();
        let vms = s.volume_mounts();
        if !vms
            .iter()
            .any(|v| v.mount_path.value.trim_end_matches('/') == APP_DIR)
        {
            out.push(Self::app_mount(APP_DIR, None));
        }
        for vm in vms {
            let sub = vm
                .workspace_path
                .as_ref()
                .map(|w| w.value.trim_matches('/').to_string())
                .filter(|w| !w.is_empty() && w != ".");
            if let Some(w) = &sub {
                if w.split('/').any(|c| c == "..") {
                    let span = vm.workspace_path.as_ref().map_or(vm.name.span, |w| w.span);
                    self.err(
                        codes::INVALID_VALUE,
                        span,
                        format!(
                            "service {:?}: workspacePath {w:?} leaves the app directory",
                            s.name.value
                        ),
                        "use a path inside the app directory, without `..`",
                    );
                    continue;
                }
            }
            out.push(Self::app_mount(&vm.mount_path.value, sub));
        }
        out
    }

    fn parent_refs(&self) -> Vec<ParentRef> {
        vec![ParentRef {
            name: self.opts.gateway.name.clone(),
            namespace: self.opts.gateway.namespace.clone(),
            section_name: self.opts.gateway.section_name.clone(),
        }]
    }

    /// Path routes to the service's own ports.
    fn routes(&mut self, s: &Service, ports: &[(u16, Span)], out: &mut Vec<Object>) {
        let name = s.name.value.as_str();
        let Some(network) = &s.network else { return };
        let mut rules = Vec::new();
        let mut ingress_paths = Vec::new();
        for p in network.paths.iter().filter(|p| p.target.is_none()) {
            let port = match (&p.port, ports) {
                (Some(port), _) => port.value,
                (None, [(only, _)]) => *only,
                (None, _) => {
                    self.err(
                        codes::INVALID_ROUTE,
                        p.path.span,
                        format!("service {name:?}: path {:?} names no port and the service does not have exactly one", p.path.value),
                        "add `port:` to the path",
                    );
                    continue;
                }
            };
            let prefix = normalise_prefix(&p.path.value);
            if self.opts.routes == Routes::Ingress && p.strip() {
                self.warn(
                    codes::W_INGRESS_STRIP,
                    p.strip_path.as_ref().map_or(p.path.span, |s| s.span),
                    format!("service {name:?}: stripPath of {prefix:?} is not expressible on an Ingress; requests arrive with the prefix"),
                    "use the Gateway API output (the default), or a controller-specific rewrite annotation",
                );
            }
            let (backend, host, ingress_to) = self.backend(name, port, p.path.span);
            ingress_paths.push(ingress_path(&prefix, &ingress_to.0, ingress_to.1));
            let strip = p.strip().then(|| "/".to_string());
            rules.push(HttpRouteRule {
                matches: vec![prefix_match(&prefix)],
                filters: if strip.is_some() || host.is_some() {
                    vec![HttpRouteFilter::replace_prefix(strip, host)]
                } else {
                    Vec::new()
                },
                backend_refs: vec![backend],
            });
        }
        self.route_objects(
            s,
            name,
            rules,
            ingress_paths,
            self.opts.hostnames.clone(),
            out,
        );
    }

    fn route_objects(
        &mut self,
        s: &Service,
        route_name: &str,
        rules: Vec<HttpRouteRule>,
        ingress_paths: Vec<net::HTTPIngressPath>,
        hostnames: Vec<String>,
        out: &mut Vec<Object>,
    ) {
        if rules.is_empty() {
            return;
        }
        let span = s
            .network
            .as_ref()
            .and_then(|n| n.written.paths)
            .unwrap_or(s.name.span);
        let what = format!("the routes of service {:?}", s.name.value);
        match self.opts.routes {
            Routes::None => {}
            Routes::HttpRoute => {
                if self.claim_name("HTTPRoute", route_name, span, what) {
                    out.push(Object::HttpRoute(HttpRoute::new(
                        self.meta(route_name, "route", "run"),
                        HttpRouteSpec {
                            parent_refs: self.parent_refs(),
                            hostnames,
                            rules,
                        },
                    )));
                }
            }
            Routes::Ingress => {
                if self.claim_name("Ingress", route_name, span, what) {
                    let http = Some(net::HTTPIngressRuleValue {
                        paths: ingress_paths,
                    });
                    let rules = if hostnames.is_empty() {
                        vec![net::IngressRule { host: None, http }]
                    } else {
                        hostnames
                            .into_iter()
                            .map(|h| net::IngressRule {
                                host: Some(h),
                                http: http.clone(),
                            })
                            .collect()
                    };
                    out.push(Object::Ingress(net::Ingress {
                        metadata: self.meta(route_name, "route", "run"),
                        spec: Some(net::IngressSpec {
                            ingress_class_name: self.opts.ingress_class.clone(),
                            rules: Some(rules),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }));
                }
            }
        }
    }

    /// Public ports: a route for `<workspace>-<port>-<service>.<domain>`, as the local router.
    fn public_ports(&mut self, s: &Service, out: &mut Vec<Object>) {
        let name = s.name.value.as_str();
        let Some(network) = &s.network else { return };
        for p in &network.ports {
            let Some(public) = p.is_public.as_ref().filter(|b| b.value) else {
                continue;
            };
            let port = p.port.value;
            let c = &self.opts.context;
            let (Some(ws), Some(domain)) = (&c.workspace_id, &c.dev_domain) else {
                self.warn(
                    codes::W_PUBLIC_PORT,
                    public.span,
                    format!("service {name:?}: public port {port} gets no host route (no workspace id and dev domain given)"),
                    "pass --workspace-id and --dev-domain to route <workspace>-<port>-<service>.<domain>",
                );
                continue;
            };
            let host = format!("{ws}-{port}-{name}.{domain}").to_ascii_lowercase();
            let (backend, rewrite, ingress_to) = self.backend(name, port, p.port.span);
            let rule = HttpRouteRule {
                matches: vec![prefix_match("/")],
                filters: rewrite
                    .map(|h| vec![HttpRouteFilter::replace_prefix(None, Some(h))])
                    .unwrap_or_default(),
                backend_refs: vec![backend],
            };
            let ingress = vec![ingress_path("/", &ingress_to.0, ingress_to.1)];
            let route_name = format!("{name}-{port}");
            let before = out.len();
            self.route_objects(s, &route_name, vec![rule], ingress, vec![host], out);
            if out.len() == before && self.opts.routes != Routes::None {
                // The collision or invalid name is reported; point it at the port.
                let span = self.at(p.port.span);
                if let Some(e) = self.errors.last_mut() {
                    e.span = span;
                }
            }
        }
    }

    /// A headless route: an `ExternalName` Service per target host, and the routes to it.
    fn headless(&mut self, s: &Service, out: &mut Vec<Object>) {
        let name = s.name.value.as_str();
        let Some(network) = &s.network else { return };
        let mut hosts: Vec<(String, u16)> = Vec::new();
        let mut rules = Vec::new();
        let mut ingress_paths = Vec::new();
        for p in &network.paths {
            let Some(target) = &p.target else { continue };
            let Some(url) = self.target_url(name, target) else {
                continue;
            };
            let Some((scheme, host, port, base)) = split_url(&url) else {
                self.err(
                    codes::INVALID_ROUTE,
                    target.span,
                    format!("service {name:?}: target {url:?} is not an http(s) URL with a host"),
                    "write http://HOST[:PORT][/PATH]",
                );
                continue;
            };
            if host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .trim_start_matches('[')
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok()
            {
                self.warn(
                    codes::W_TARGET,
                    target.span,
                    format!("service {name:?}: target host {host} is an IP address, which an ExternalName Service cannot name; the route is not rendered"),
                    "use a DNS name, or a Service with an EndpointSlice",
                );
                continue;
            }
            if scheme == "https" {
                self.warn(
                    codes::W_TARGET,
                    target.span,
                    format!("service {name:?}: target {url:?} is https; the Gateway must originate TLS to it (a BackendTLSPolicy, not rendered)"),
                    "add a BackendTLSPolicy for the Service, or use an http target",
                );
            }
            let idx = match hosts.iter().position(|(h, p)| *h == host && *p == port) {
                Some(i) => i,
                None => {
                    hosts.push((host.clone(), port));
                    hosts.len() - 1
                }
            };
            let svc = if idx == 0 {
                name.to_string()
            } else {
                format!("{name}-{}", idx + 1)
            };
            if idx == hosts.len() - 1
                && self.claim_name(
                    "Service",
                    &svc,
                    target.span,
                    format!("the target {host}:{port} of headless route {name:?}"),
                )
            {
                out.push(Object::Service(core::Service {
                    metadata: self.meta(&svc, "headless-route", "run"),
                    spec: Some(core::ServiceSpec {
                        type_: Some("ExternalName".into()),
                        external_name: Some(host.clone()),
                        ports: Some(vec![core::ServicePort {
                            name: Some(port_name(port)),
                            port: i32::from(port),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }));
            }
            let prefix = normalise_prefix(&p.path.value);
            // What the local router sends: the target's path, then the request path (its
            // prefix removed with stripPath).
            let base = base.trim_end_matches('/');
            let replace = match (p.strip(), base.is_empty()) {
                (true, true) => Some("/".to_string()),
                (true, false) => Some(base.to_string()),
                (false, true) => None,
                (false, false) => Some(format!(
                    "{base}{}",
                    if prefix == "/" { "" } else { &prefix }
                )),
            };
            if self.opts.routes == Routes::Ingress {
                self.warn(
                    codes::W_TARGET,
                    target.span,
                    format!("service {name:?}: an Ingress cannot set the Host header {host:?}{} for target {url:?}", if replace.is_some() { " or rewrite the path" } else { "" }),
                    "use the Gateway API output (the default)",
                );
            }
            ingress_paths.push(ingress_path(&prefix, &svc, port));
            rules.push(HttpRouteRule {
                matches: vec![prefix_match(&prefix)],
                filters: vec![HttpRouteFilter::replace_prefix(replace, Some(host.clone()))],
                backend_refs: vec![BackendRef {
                    name: svc,
                    namespace: None,
                    port,
                }],
            });
        }
        self.route_objects(
            s,
            name,
            rules,
            ingress_paths,
            self.opts.hostnames.clone(),
            out,
        );
    }

    /// Where a route of service `name` to `port` sends: the Service itself, or (scaled to
    /// zero) the KEDA interceptor. Returns the HTTPRoute backend, the Host header the
    /// HTTPRoute sets (scaled only), and the Ingress backend (Service, port).
    fn backend(
        &mut self,
        name: &str,
        port: u16,
        span: Span,
    ) -> (BackendRef, Option<String>, (String, u16)) {
        let (Some(sc), Some(stz)) = (&self.scaled, &self.opts.scale_to_zero) else {
            let b = BackendRef {
                name: name.to_string(),
                namespace: None,
                port,
            };
            return (b, None, (name.to_string(), port));
        };
        let backend = BackendRef {
            name: INTERCEPTOR_SERVICE.into(),
            namespace: Some(stz.namespace.clone()),
            port: INTERCEPTOR_PORT,
        };
        let host = sc.host.clone();
        if self.opts.routes == Routes::Ingress && !self.interceptor_alias {
            self.interceptor_alias = self.claim_name(
                "Service",
                INTERCEPTOR_ALIAS,
                span,
                "the KEDA interceptor alias (scale-to-zero)".into(),
            );
        }
        (
            backend,
            Some(host),
            (INTERCEPTOR_ALIAS.into(), INTERCEPTOR_PORT),
        )
    }

    /// The ports public traffic reaches a service on: its paths' and its routed public
    /// ports', each once, with where each is written.
    fn traffic_ports(&self, s: &Service, ports: &[(u16, Span)]) -> Vec<(u16, Span)> {
        let mut out: Vec<(u16, Span)> = Vec::new();
        let Some(network) = &s.network else {
            return out;
        };
        let c = &self.opts.context;
        let public_routed = c.workspace_id.is_some() && c.dev_domain.is_some();
        let paths = network
            .paths
            .iter()
            .filter(|p| p.target.is_none())
            .filter_map(|p| match (&p.port, ports) {
                (Some(port), _) => Some((port.value, port.span)),
                (None, [(only, _)]) => Some((*only, p.path.span)),
                (None, _) => None,
            });
        let public = network
            .ports
            .iter()
            .filter(|p| public_routed && p.is_public.as_ref().is_some_and(|b| b.value))
            .map(|p| (p.port.value, p.port.span));
        for (p, span) in paths.chain(public) {
            if !out.iter().any(|(q, _)| *q == p) {
                out.push((p, span));
            }
        }
        out
    }

    /// With [`Options::scale_to_zero`]: the port a service is scaled by, or `None` with a
    /// warning saying why it is not scaled.
    fn scale_plan(&mut self, s: &Service, ports: &[(u16, Span)]) -> Option<u16> {
        self.opts.scale_to_zero.as_ref()?;
        let name = s.name.value.as_str();
        let traffic = self.traffic_ports(s, ports);
        match traffic.as_slice() {
            [] => {
                self.warn(
                    codes::W_NOT_SCALED,
                    s.name.span,
                    format!("service {name:?} has no public paths, so it is not scaled to zero: other services reach it by name, and no request through the KEDA interceptor would wake it"),
                    "it runs its replicas all the time; give it a path in network.paths to scale it by its traffic",
                );
                None
            }
            [(port, _)] => Some(*port),
            [_, (_, second), ..] => {
                let list: Vec<String> = traffic.iter().map(|(p, _)| p.to_string()).collect();
                self.warn(
                    codes::W_NOT_SCALED,
                    *second,
                    format!("service {name:?} gets public traffic on ports {}; an HTTPScaledObject forwards to one port, so it is not scaled to zero", list.join(", ")),
                    "route its paths (and public ports) to one port to scale it by its traffic",
                );
                None
            }
        }
    }

    /// The `HTTPScaledObject` of a scaled service.
    fn scaled_object(
        &mut self,
        s: &Service,
        ports: &[(u16, Span)],
        sc: &Scaled,
        span: Span,
    ) -> Option<HttpScaledObject> {
        let stz = self.opts.scale_to_zero.as_ref()?;
        let name = s.name.value.as_str();
        let network = s.network.as_ref()?;
        let c = &self.opts.context;
        let via_host = self.opts.routes == Routes::HttpRoute;
        let mut prefixes: Vec<String> = Vec::new();
        let mut hosts: Vec<String> = Vec::new();
        let routed: Vec<_> = network
            .paths
            .iter()
            .filter(|p| p.target.is_none())
            .filter(|p| p.port.is_some() || ports.len() == 1)
            .collect();
        for p in &routed {
            // What reaches the interceptor: an HTTPRoute has already stripped the prefix.
            prefixes.push(if via_host && p.strip() {
                "/".into()
            } else {
                normalise_prefix(&p.path.value)
            });
        }
        if !routed.is_empty() && !via_host {
            if self.opts.hostnames.is_empty() {
                hosts.push("*".into());
            } else {
                hosts.extend(self.opts.hostnames.iter().cloned());
            }
        }
        if let (Some(ws), Some(domain)) = (&c.workspace_id, &c.dev_domain) {
            for p in network.ports.iter() {
                if p.is_public.as_ref().is_some_and(|b| b.value) {
                    prefixes.push("/".into());
                    hosts.push(
                        format!("{ws}-{}-{name}.{domain}", p.port.value).to_ascii_lowercase(),
                    );
                }
            }
        }
        if via_host {
            hosts = vec![sc.host.clone()];
        }
        if prefixes.iter().any(|p| p == "/") {
            prefixes = vec!["/".into()];
        }
        let mut seen = BTreeSet::new();
        prefixes.retain(|p| seen.insert(p.clone()));
        let mut seen = BTreeSet::new();
        hosts.retain(|h| seen.insert(h.clone()));
        let plan_max = s
            .plan_id()
            .and_then(|id| self.opts.plans.as_ref()?.get(id))
            .map_or(u32::MAX, |p| p.max_replicas);
        let max = stz
            .max_replicas
            .unwrap_or(s.replicas())
            .min(plan_max)
            .max(1);
        let spec = HttpScaledObjectSpec {
            hosts,
            path_prefixes: prefixes,
            scale_target_ref: ScaleTargetRef {
                name: name.to_string(),
                kind: "Deployment".into(),
                api_version: "apps/v1".into(),
                service: name.to_string(),
                port: sc.port,
            },
            replicas: ReplicaRange {
                min: 0,
                max: i32::try_from(max).unwrap_or(i32::MAX),
            },
            scaledown_period: Some(stz.idle_seconds),
        };
        if !self.claim_name(
            "HTTPScaledObject",
            name,
            span,
            format!("service {name:?} (scale-to-zero)"),
        ) {
            return None;
        }
        self.scaled_services.push(name.to_string());
        Some(HttpScaledObject::new(
            self.meta(name, "scale-to-zero", "run"),
            spec,
        ))
    }

    /// The `ExternalName` Service that lets Ingresses reach the interceptor.
    fn interceptor_alias_service(&self) -> core::Service {
        let ns = self
            .opts
            .scale_to_zero
            .as_ref()
            .map_or("keda", |z| z.namespace.as_str());
        core::Service {
            metadata: self.meta(INTERCEPTOR_ALIAS, "scale-to-zero", "run"),
            spec: Some(core::ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(format!("{INTERCEPTOR_SERVICE}.{ns}.svc.cluster.local")),
                ports: Some(vec![core::ServicePort {
                    name: Some(port_name(INTERCEPTOR_PORT)),
                    port: i32::from(INTERCEPTOR_PORT),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What a user must set up for the scaled services (never a secret).
    fn scale_to_zero_note(&self) -> Option<String> {
        let stz = self.opts.scale_to_zero.as_ref()?;
        if self.scaled_services.is_empty() {
            return None;
        }
        let (kns, ns) = (&stz.namespace, &self.opts.namespace);
        let list = self.scaled_services.join(", ");
        let mut n = format!(
            "scale-to-zero ({list}): install KEDA and its HTTP add-on in namespace {kns} (e.g. helm install http-add-on kedacore/keda-add-ons-http -n {kns}); the routes of these services go through its interceptor {INTERCEPTOR_SERVICE}.{kns}:{INTERCEPTOR_PORT}"
        );
        match self.opts.routes {
            Routes::HttpRoute => n.push_str(&format!(
                " (the HTTPRoutes set the Host header {{service}}.{ns}.svc, which it routes by); allow the cross-namespace backend with a ReferenceGrant in namespace {kns}:
  kubectl apply -f - <<'EOF'
  apiVersion: gateway.networking.k8s.io/v1beta1
  kind: ReferenceGrant
  metadata: {{name: landscape-{ns}, namespace: {kns}}}
  spec:
    from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {ns}}}]
    to: [{{group: \"\", kind: Service, name: {INTERCEPTOR_SERVICE}}}]
  EOF"
            )),
            Routes::Ingress => n.push_str(&format!(
                ", reached through the ExternalName Service {INTERCEPTOR_ALIAS}; the Ingress controller must allow ExternalName backends"
            )),
            Routes::None => n.push_str(": point your own routes there"),
        }
        Some(n)
    }

    fn target_url(&mut self, name: &str, target: &Spanned<Template>) -> Option<String> {
        let mut url = String::new();
        for p in target.value.parts() {
            match p {
                Part::Literal(l) => url.push_str(l),
                Part::Ref(Reference::Vault(v)) => {
                    self.err(
                        codes::INVALID_ROUTE,
                        target.span,
                        format!("service {name:?}: target uses vault.{v}; secrets are not allowed in route targets"),
                        "write the host into the target, or use a workspace reference",
                    );
                    return None;
                }
                Part::Ref(r) => {
                    let v = self.context_value(r, target.span, &format!("service {name:?} target"));
                    url.push_str(&v);
                }
            }
        }
        Some(url)
    }
}

enum ProbeKind {
    Http(u16, String, &'static str),
    Tcp(u16),
}

fn probe_with(p: &ProbeKind, period: i32, failures: i32) -> core::Probe {
    let mut probe = core::Probe {
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    match p {
        ProbeKind::Http(port, path, scheme) => {
            probe.http_get = Some(core::HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int(i32::from(*port)),
                scheme: Some((*scheme).into()),
                ..Default::default()
            })
        }
        ProbeKind::Tcp(port) => {
            probe.tcp_socket = Some(core::TCPSocketAction {
                port: IntOrString::Int(i32::from(*port)),
                host: None,
            })
        }
    }
    probe
}

/// The hardened security context. `root_image`: a container image that may expect root
/// (no `runAsUser`, or 0): it keeps the few capabilities root entrypoints use.
fn security(
    user: Option<u32>,
    group: Option<u32>,
    root_image: bool,
    privileged_port: bool,
) -> core::SecurityContext {
    let mut add: Vec<String> = Vec::new();
    if root_image {
        add.extend(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"].map(String::from));
    }
    if privileged_port {
        add.push("NET_BIND_SERVICE".into());
    }
    core::SecurityContext {
        run_as_user: user.map(i64::from),
        run_as_group: group.map(i64::from),
        run_as_non_root: user.filter(|u| *u != 0).map(|_| true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(core::Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: (!add.is_empty()).then_some(add),
        }),
        seccomp_profile: Some(core::SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

fn secret_env(name: &str, key: &str) -> core::EnvVar {
    core::EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(core::EnvVarSource {
            secret_key_ref: Some(core::SecretKeySelector {
                name: VAULT_SECRET.into(),
                key: key.to_string(),
                optional: None,
            }),
            ..Default::default()
        }),
    }
}

/// The declared ports, then ports that only a path names (the validator warns about those),
/// each once, in order.
fn ports_of(s: &Service) -> Vec<(u16, Span)> {
    let mut out: Vec<(u16, Span)> = Vec::new();
    let Some(n) = &s.network else { return out };
    let declared = n.ports.iter().map(|p| (p.port.value, p.port.span));
    let routed = n
        .paths
        .iter()
        .filter(|p| p.target.is_none())
        .filter_map(|p| p.port.as_ref().map(|q| (q.value, q.span)));
    for (p, span) in declared.chain(routed) {
        if !out.iter().any(|(q, _)| *q == p) {
            out.push((p, span));
        }
    }
    out
}

/// A port name (IANA_SVC_NAME: at most 15 characters, with a letter).
fn port_name(p: u16) -> String {
    format!("p{p}")
}

/// `/api/` and `api` become `/api`; the root stays `/` (as the local router normalises).
pub(crate) fn normalise_prefix(p: &str) -> String {
    let t = p.trim().trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else if t.starts_with('/') {
        t.into()
    } else {
        format!("/{t}")
    }
}

fn prefix_match(prefix: &str) -> HttpRouteMatch {
    HttpRouteMatch {
        path: PathMatch {
            type_: "PathPrefix".into(),
            value: prefix.to_string(),
        },
    }
}

fn ingress_path(prefix: &str, service: &str, port: u16) -> net::HTTPIngressPath {
    net::HTTPIngressPath {
        path: Some(prefix.to_string()),
        path_type: "Prefix".into(),
        backend: net::IngressBackend {
            service: Some(net::IngressServiceBackend {
                name: service.to_string(),
                port: Some(net::ServiceBackendPort {
                    number: Some(i32::from(port)),
                    name: None,
                }),
            }),
            resource: None,
        },
    }
}

/// Escapes text for fields the kubelet expands (`command`, `args`, `env[].value`): there,
/// `$(NAME)` is replaced by a variable and `$$` becomes `$`, so a `$` that precedes `$` or
/// `(` is doubled and the text reaches the process as written.
pub(crate) fn escape_expansion(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && matches!(chars.peek(), Some('$') | Some('(')) {
            out.push('$');
        }
    }
    out
}

/// `cpu` in cores as a Kubernetes quantity (`500m`, `2`).
pub(crate) fn cpu_quantity(cores: f64) -> String {
    let milli = (cores * 1000.0).round().max(1.0) as u64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Bytes as a Kubernetes quantity, in the largest binary unit that divides them.
pub(crate) fn bytes_quantity(b: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if b % size == 0 {
            return format!("{}{unit}", b / size);
        }
    }
    b.to_string()
}

/// Scheme, host, port and path of an `http(s)://` URL.
fn split_url(url: &str) -> Option<(&'static str, String, u16, String)> {
    let (scheme, rest, default) = if let Some(r) = url.strip_prefix("http://") {
        ("http", r, 80)
    } else if let Some(r) = url.strip_prefix("https://") {
        ("https", r, 443)
    } else {
        return None;
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, default),
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((
        scheme,
        host.to_ascii_lowercase(),
        port,
        path.split('?').next().unwrap_or("").to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_escape_round_trips_through_the_kubelet_rules() {
        // The kubelet's rules: `$$` -> `$`, `$(X)` -> X's value (left as is when unknown),
        // any other `$` kept. Undo them here and check the text comes back unchanged.
        fn kubelet(s: &str) -> String {
            let mut out = String::new();
            let mut c = s.chars().peekable();
            while let Some(ch) = c.next() {
                if ch == '$' && c.peek() == Some(&'$') {
                    c.next();
                    out.push('$');
                } else if ch == '$' && c.peek() == Some(&'(') {
                    out.push_str("<EXPANDED>");
                    for n in c.by_ref() {
                        if n == ')' {
                            break;
                        }
                    }
                } else {
                    out.push(ch);
                }
            }
            out
        }
        for s in [
            "echo $$ $(date) $HOME ${X} $",
            "$$(",
            "a$",
            "$(HOME)",
            "no dollar",
        ] {
            assert_eq!(kubelet(&escape_expansion(s)), s, "{s}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(0.5), "500m");
        assert_eq!(cpu_quantity(2.0), "2");
        assert_eq!(cpu_quantity(0.0001), "1m");
        assert_eq!(bytes_quantity(1 << 30), "1Gi");
        assert_eq!(bytes_quantity(3 << 29), "1536Mi");
        assert_eq!(bytes_quantity(1000), "1000");
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://Docs.internal:8000/v1?x=1"),
            Some(("http", "docs.internal".into(), 8000, "/v1".into()))
        );
        assert_eq!(
            split_url("https://example.com"),
            Some(("https", "example.com".into(), 443, String::new()))
        );
        assert_eq!(split_url("ftp://x"), None);
        assert_eq!(split_url("http://:80/"), None);
    }
}
