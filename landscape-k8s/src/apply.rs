//! Server-side apply of a [`Rendered`] landscape, and a diff of what it would change
//! (cargo feature `apply`; kube-rs).
//!
//! [`apply`] sends every object as a server-side apply patch (`PATCH` with content type
//! `application/apply-patch+yaml`, `fieldManager=landscape`, `force=true`,
//! `fieldValidation=Strict`) in phase order:
//!
//! 1. `setup`: the Namespace, the app-directory claim and the vault Secret. When the Secret
//!    was rendered without some of its values, the cluster's Secret must already hold them
//!    (someone filled it); otherwise apply stops with [`ApplyError::MissingSecretKeys`]
//!    before any Job or Deployment would start without them.
//! 2. `prepare`, then `test`: the Job, then (with [`ApplyOptions::wait`]) a `GET` of it every
//!    [`ApplyOptions::poll_interval`] until it is `Complete` (or `Failed`: an error). A Job
//!    whose pod template changed cannot be patched (the field is immutable): it is deleted
//!    (propagation `Background`), and applied again once it is gone. An unchanged Job that
//!    already completed is left as it is, so applying twice runs prepare once.
//! 3. `run`: the Deployments, Services and routes, then the rollout of every Deployment, with
//!    the checks of `kubectl rollout status`.
//!
//! [`diff`] runs the same patches with `dryRun=All` and compares each answer with the live
//! object (`GET`), leaving out what apply does not decide (`status`, `managedFields`,
//! `resourceVersion`, `generation`); Secret values are masked.
//!
//! Nothing is pruned: an object that a previous render had and this one has not stays in
//! the cluster.

use crate::{yaml, Object, Rendered, KEYS_ANNOTATION, PHASE_LABEL, VAULT_SECRET};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::ApiResource;
use serde_json::Value;
use std::fmt;
use std::time::{Duration, Instant};

pub use kube;
pub use kube::Client;

/// The default field manager of every apply.
pub const FIELD_MANAGER: &str = "landscape";

/// The phases in apply order (values of [`PHASE_LABEL`]).
pub const PHASES: [&str; 4] = ["setup", "prepare", "test", "run"];

/// How [`apply`] and [`diff`] talk to the cluster.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// The server-side apply field manager (default [`FIELD_MANAGER`]).
    pub field_manager: String,
    /// Take over fields another manager owns instead of failing with a conflict
    /// (`force=true`; default true, as `kubectl apply --server-side --force-conflicts`).
    pub force: bool,
    /// Wait for the Jobs to complete and the Deployments to roll out (default true).
    pub wait: bool,
    /// How long a prepare or test Job may run (default 1 h).
    pub job_timeout: Duration,
    /// How long one Deployment's rollout may take (default 10 min).
    pub rollout_timeout: Duration,
    /// The pause between two `GET`s while waiting (default 2 s).
    pub poll_interval: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            field_manager: FIELD_MANAGER.into(),
            force: true,
            wait: true,
            job_timeout: Duration::from_secs(3600),
            rollout_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl ApplyOptions {
    fn patch_params(&self, dry_run: bool) -> PatchParams {
        let mut pp = PatchParams::apply(&self.field_manager);
        pp.force = self.force;
        pp.dry_run = dry_run;
        pp.field_validation = Some(ValidationDirective::Strict);
        pp
    }
}

/// What [`apply`] reports while it works (its `Display` is one line for a terminal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A phase starts (`setup`, `prepare`, `test`, `run`).
    Phase(String),
    /// An object was applied (`deployment.apps/api`).
    Applied(String),
    /// A Job with a changed template was deleted, to be applied again.
    JobReplaced(String),
    /// Waiting for a Job or a rollout; the text says what is missing.
    Waiting {
        /// The object (`job.batch/prepare`).
        object: String,
        /// The state (`1 active`, `1 of 2 updated replicas are available`).
        state: String,
    },
    /// A Job completed.
    JobComplete(String),
    /// A Deployment rolled out.
    RolledOut(String),
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Phase(p) => write!(f, "phase {p}"),
            Progress::Applied(o) => write!(f, "{o} serverside-applied"),
            Progress::JobReplaced(o) => write!(f, "{o} deleted (its template changed)"),
            Progress::Waiting { object, state } => write!(f, "waiting for {object}: {state}"),
            Progress::JobComplete(o) => write!(f, "{o} complete"),
            Progress::RolledOut(o) => write!(f, "{o} successfully rolled out"),
        }
    }
}

/// Why [`apply`] or [`diff`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The API server refused a request, or could not be reached.
    #[error("{object}: {}", describe(.source))]
    Api {
        /// The object (`deployment.apps/api`).
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A prepare or test Job failed.
    #[error("{object} failed: {reason}")]
    JobFailed {
        /// The Job (`job.batch/test`).
        object: String,
        /// The `Failed` condition's reason and message.
        reason: String,
    },
    /// A rollout cannot finish (`ProgressDeadlineExceeded`).
    #[error("{object} rollout failed: {reason}")]
    RolloutFailed {
        /// The Deployment.
        object: String,
        /// The `Progressing` condition's message.
        reason: String,
    },
    /// A Job or rollout did not finish in time.
    #[error("{object}: not done after {}s (last state: {state})", .after.as_secs())]
    Timeout {
        /// The Job or Deployment.
        object: String,
        /// The timeout.
        after: Duration,
        /// What was still missing.
        state: String,
    },
    /// The vault Secret lacks values the services need.
    #[error(
        "the Secret {namespace}/{VAULT_SECRET} lacks the key{} {}; fill it, then apply again:\n  kubectl -n {namespace} create secret generic {VAULT_SECRET} {} --dry-run=client -o yaml | kubectl apply -f -",
        if .keys.len() == 1 { "" } else { "s" },
        .keys.join(", "),
        .keys.iter().map(|k| format!("--from-literal={k}=...")).collect::<Vec<_>>().join(" ")
    )]
    MissingSecretKeys {
        /// The landscape's namespace.
        namespace: String,
        /// The keys that are missing.
        keys: Vec<String>,
    },
    /// No kubeconfig or in-cluster configuration could be loaded.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let mut out = format!("{} {}", s.code, s.reason);
            if !s.message.is_empty() {
                out.push_str(": ");
                out.push_str(&s.message);
            }
            out
        }
        other => {
            // The causes too: "ServiceError: client error (Connect): ... Connection refused".
            let mut out = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(c) = cause {
                let text = c.to_string();
                if !out.contains(&text) {
                    out.push_str(": ");
                    out.push_str(&text);
                }
                cause = c.source();
            }
            out
        }
    }
}

fn status_of(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    status_of(e).is_some_and(|s| s.is_not_found())
}

/// A client from the environment: `KUBECONFIG` (or `~/.kube/config`) with its current
/// context, or the in-cluster service account.
pub async fn client() -> Result<Client, ApplyError> {
    Client::try_default()
        .await
        .map_err(|e| ApplyError::Config(describe(&e)))
}

/// A client for one kubeconfig context (`None`: the current one; in-cluster if there is no
/// kubeconfig at all).
pub async fn client_for_context(context: Option<&str>) -> Result<Client, ApplyError> {
    let Some(context) = context else {
        return client().await;
    };
    let opts = kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_kubeconfig(&opts)
        .await
        .map_err(|e| ApplyError::Config(e.to_string()))?;
    Client::try_from(config).map_err(|e| ApplyError::Config(describe(&e)))
}

/// Where an object kind lives in the API: group, version, plural, namespaced.
fn resource(kind: &str) -> (&'static str, &'static str, &'static str, bool) {
    match kind {
        "Namespace" => ("", "v1", "namespaces", false),
        "PersistentVolumeClaim" => ("", "v1", "persistentvolumeclaims", true),
        "Secret" => ("", "v1", "secrets", true),
        "Service" => ("", "v1", "services", true),
        "Job" => ("batch", "v1", "jobs", true),
        "Deployment" => ("apps", "v1", "deployments", true),
        "Ingress" => ("networking.k8s.io", "v1", "ingresses", true),
        "HTTPRoute" => ("gateway.networking.k8s.io", "v1", "httproutes", true),
        "HTTPScaledObject" => ("http.keda.sh", "v1alpha1", "httpscaledobjects", true),
        // Object has no other kinds.
        _ => ("", "v1", "unknown", true),
    }
}

/// `deployment.apps/api`, `service/api`: how kubectl names an object.
pub fn display_name(o: &Object) -> String {
    let (group, ..) = resource(o.kind());
    let kind = o.kind().to_ascii_lowercase();
    if group.is_empty() {
        format!("{kind}/{}", o.name())
    } else {
        format!("{kind}.{group}/{}", o.name())
    }
}

fn api_for(client: &Client, namespace: &str, o: &Object) -> Api<DynamicObject> {
    let (group, version, plural, namespaced) = resource(o.kind());
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: o.kind().into(),
        plural: plural.into(),
    };
    let ns = o.metadata().namespace.as_deref().unwrap_or(namespace);
    if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

fn phase_of(o: &Object) -> &str {
    o.metadata()
        .labels
        .as_ref()
        .and_then(|l| l.get(PHASE_LABEL))
        .map(String::as_str)
        .filter(|p| PHASES.contains(p))
        .unwrap_or("run")
}

/// Applies every object of `rendered` in phase order, waiting for the Jobs and rollouts
/// (see the [module docs](self)). `progress` gets each step as it happens.
pub async fn apply(
    client: &Client,
    rendered: &Rendered,
    opts: &ApplyOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<(), ApplyError> {
    for phase in PHASES {
        let objects: Vec<&Object> = rendered
            .objects
            .iter()
            .filter(|o| phase_of(o) == phase)
            .collect();
        if objects.is_empty() {
            continue;
        }
        progress(&Progress::Phase(phase.into()));
        for o in &objects {
            apply_one(client, rendered, o, opts, &mut progress).await?;
            if opts.wait {
                if let Object::Job(_) = o {
                    wait_job(client, rendered, o, opts, &mut progress).await?;
                }
            }
        }
        if phase == "setup" {
            check_secret(client, rendered).await?;
        }
        if phase == "run" && opts.wait {
            for o in objects
                .iter()
                .filter(|o| matches!(o, Object::Deployment(_)))
            {
                wait_rollout(client, rendered, o, opts, &mut progress).await?;
            }
        }
    }
    Ok(())
}

async fn apply_one(
    client: &Client,
    rendered: &Rendered,
    o: &Object,
    opts: &ApplyOptions,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ApplyError> {
    let api = api_for(client, &rendered.namespace, o);
    let body = o.to_json();
    let pp = opts.patch_params(false);
    let object = display_name(o);
    let err = |source| ApplyError::Api {
        object: object.clone(),
        source,
    };
    match api.patch(o.name(), &pp, &Patch::Apply(&body)).await {
        Ok(_) => {}
        Err(e) if matches!(o, Object::Job(_)) && is_immutable(&e) => {
            // A Job's template cannot change: replace the Job.
            let dp = DeleteParams::background();
            match api.delete(o.name(), &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(err(e)),
            }
            progress(&Progress::JobReplaced(object.clone()));
            let start = Instant::now();
            loop {
                match api.get_opt(o.name()).await {
                    Ok(None) => break,
                    Ok(Some(_)) => {}
                    Err(e) => return Err(err(e)),
                }
                if start.elapsed() >= opts.job_timeout {
                    return Err(ApplyError::Timeout {
                        object,
                        after: opts.job_timeout,
                        state: "the old Job is still being deleted".into(),
                    });
                }
                tokio::time::sleep(opts.poll_interval).await;
            }
            api.patch(o.name(), &pp, &Patch::Apply(&body))
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    progress(&Progress::Applied(object));
    Ok(())
}

fn is_immutable(e: &kube::Error) -> bool {
    status_of(e).is_some_and(|s| s.is_invalid() && s.message.contains("immutable"))
}

/// The values the rendered Secret lacks must be in the cluster's Secret.
async fn check_secret(client: &Client, rendered: &Rendered) -> Result<(), ApplyError> {
    let Some(o @ Object::Secret(s)) = rendered.find("Secret", VAULT_SECRET) else {
        return Ok(());
    };
    let required = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEYS_ANNOTATION))
        .map(|k| k.split(',').filter(|k| !k.is_empty()).collect::<Vec<_>>())
        .unwrap_or_default();
    let has = |k: &str| s.data.as_ref().is_some_and(|d| d.contains_key(k));
    let wanted: Vec<&str> = required.into_iter().filter(|k| !has(k)).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let api = api_for(client, &rendered.namespace, o);
    let live = api
        .get(VAULT_SECRET)
        .await
        .map_err(|source| ApplyError::Api {
            object: display_name(o),
            source,
        })?;
    let live = serde_json::to_value(&live).unwrap_or(Value::Null);
    let in_live = |k: &str| {
        ["data", "stringData"]
            .iter()
            .any(|f| live[f].get(k).is_some())
    };
    let keys: Vec<String> = wanted
        .into_iter()
        .filter(|k| !in_live(k))
        .map(String::from)
        .collect();
    if keys.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::MissingSecretKeys {
            namespace: rendered.namespace.clone(),
            keys,
        })
    }
}

async fn get_json(api: &Api<DynamicObject>, o: &Object) -> Result<Value, ApplyError> {
    let live = api.get(o.name()).await.map_err(|source| ApplyError::Api {
        object: display_name(o),
        source,
    })?;
    Ok(serde_json::to_value(&live).unwrap_or(Value::Null))
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn condition_true(status: &Value, kind: &str) -> bool {
    condition(status, kind).is_some_and(|c| c["status"] == "True")
}

fn condition_text(c: &Value) -> String {
    let reason = c["reason"].as_str().unwrap_or("");
    let message = c["message"].as_str().unwrap_or("");
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.into(),
        (true, false) => message.into(),
        (true, true) => "no reason given".into(),
    }
}

/// What a Job is at: `Ok(None)` complete, `Ok(Some(state))` running, `Err` failed.
fn job_state(job: &Value) -> Result<Option<String>, String> {
    let status = &job["status"];
    if condition_true(status, "Complete") {
        return Ok(None);
    }
    if let Some(c) = condition(status, "Failed").filter(|c| c["status"] == "True") {
        return Err(condition_text(c));
    }
    let active = status["active"].as_u64().unwrap_or(0);
    let failed = status["failed"].as_u64().unwrap_or(0);
    Ok(Some(match (active, failed) {
        (0, 0) => "not started".to_string(),
        (a, 0) => format!("{a} active"),
        (a, f) => format!("{a} active, {f} failed"),
    }))
}

async fn wait_job(
    client: &Client,
    rendered: &Rendered,
    o: &Object,
    opts: &ApplyOptions,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ApplyError> {
    let wait = Wait {
        timeout: opts.job_timeout,
        state: job_state,
        done: Progress::JobComplete,
        failed: |object, reason| ApplyError::JobFailed { object, reason },
    };
    wait_for(client, rendered, o, opts, wait, progress).await
}

/// What [`wait_for`] polls and how it reports.
struct Wait {
    timeout: Duration,
    /// `Ok(None)` done, `Ok(Some(state))` in progress, `Err(reason)` failed.
    state: fn(&Value) -> Result<Option<String>, String>,
    done: fn(String) -> Progress,
    failed: fn(String, String) -> ApplyError,
}

/// Polls `o` until `wait.state` says it is done or failed, or the timeout passes;
/// reports each new state once.
async fn wait_for(
    client: &Client,
    rendered: &Rendered,
    o: &Object,
    opts: &ApplyOptions,
    wait: Wait,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ApplyError> {
    let api = api_for(client, &rendered.namespace, o);
    let object = display_name(o);
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let current = get_json(&api, o).await?;
        match (wait.state)(&current) {
            Ok(None) => {
                progress(&(wait.done)(object));
                return Ok(());
            }
            Err(reason) => return Err((wait.failed)(object, reason)),
            Ok(Some(state)) => {
                if start.elapsed() >= wait.timeout {
                    return Err(ApplyError::Timeout {
                        object,
                        after: wait.timeout,
                        state,
                    });
                }
                if state != last {
                    progress(&Progress::Waiting {
                        object: object.clone(),
                        state: state.clone(),
                    });
                    last = state;
                }
            }
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
}

/// Where a rollout is, with the checks of `kubectl rollout status`: `Ok(None)` done,
/// `Ok(Some(state))` in progress, `Err` the progress deadline passed.
pub fn rollout_state(deployment: &Value) -> Result<Option<String>, String> {
    let status = &deployment["status"];
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    if observed < generation {
        return Ok(Some("waiting for the spec update to be observed".into()));
    }
    if let Some(c) = condition(status, "Progressing") {
        if c["reason"] == "ProgressDeadlineExceeded" {
            return Err(condition_text(c));
        }
    }
    let desired = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let n = |k: &str| status[k].as_i64().unwrap_or(0);
    let (updated, replicas, available) =
        (n("updatedReplicas"), n("replicas"), n("availableReplicas"));
    if updated < desired {
        return Ok(Some(format!(
            "{updated} of {desired} updated replicas created"
        )));
    }
    if replicas > updated {
        return Ok(Some(format!(
            "{} old replicas are pending termination",
            replicas - updated
        )));
    }
    if available < updated {
        return Ok(Some(format!(
            "{available} of {updated} updated replicas are available"
        )));
    }
    Ok(None)
}

async fn wait_rollout(
    client: &Client,
    rendered: &Rendered,
    o: &Object,
    opts: &ApplyOptions,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), ApplyError> {
    let wait = Wait {
        timeout: opts.rollout_timeout,
        state: rollout_state,
        done: Progress::RolledOut,
        failed: |object, reason| ApplyError::RolloutFailed { object, reason },
    };
    wait_for(client, rendered, o, opts, wait, progress).await
}

/// What applying would do to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The object does not exist yet.
    Create,
    /// The object exists and would change.
    Update,
    /// The object exists and would stay as it is.
    Unchanged,
    /// A Job whose template changed: apply deletes it and creates it again.
    Replace,
}

/// One object's entry in a [`diff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDiff {
    /// The object (`deployment.apps/api`).
    pub object: String,
    /// What would happen.
    pub change: Change,
    /// Unified-style lines (`-` live, `+` after apply, ` ` context; `@@` between hunks).
    /// A new object is all `+`; empty when unchanged. Secret values are shown as `***`.
    pub lines: Vec<String>,
}

impl fmt::Display for ObjectDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.change {
            Change::Create => "would be created",
            Change::Update => "would change",
            Change::Unchanged => "unchanged",
            Change::Replace => "would be replaced (a Job's template is immutable)",
        };
        writeln!(f, "{} {what}", self.object)?;
        for l in &self.lines {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// What [`apply`] would change, object by object (in apply order): a server-side apply
/// with `dryRun=All`, compared with the live object. Changes nothing in the cluster.
pub async fn diff(
    client: &Client,
    rendered: &Rendered,
    opts: &ApplyOptions,
) -> Result<Vec<ObjectDiff>, ApplyError> {
    let pp = opts.patch_params(true);
    let mut out = Vec::new();
    for phase in PHASES {
        for o in rendered.objects.iter().filter(|o| phase_of(o) == phase) {
            let api = api_for(client, &rendered.namespace, o);
            let object = display_name(o);
            let err = |source| ApplyError::Api {
                object: object.clone(),
                source,
            };
            let body = o.to_json();
            let live = api.get_opt(o.name()).await.map_err(err)?;
            let dry = api.patch(o.name(), &pp, &Patch::Apply(&body)).await;
            let entry = match (live, dry) {
                // A namespaced object in a namespace that does not exist yet: the dry run
                // has nothing to go on, the object is shown as sent.
                (None, Err(e)) if is_not_found(&e) => ObjectDiff {
                    object,
                    change: Change::Create,
                    lines: added(&body),
                },
                (None, Err(e)) => return Err(err(e)),
                (None, Ok(_)) => ObjectDiff {
                    object,
                    change: Change::Create,
                    lines: added(&body),
                },
                (Some(_), Err(e)) if matches!(o, Object::Job(_)) && is_immutable(&e) => {
                    ObjectDiff {
                        object,
                        change: Change::Replace,
                        lines: Vec::new(),
                    }
                }
                (Some(_), Err(e)) => return Err(err(e)),
                (Some(live), Ok(dry)) => {
                    let mut before = normalize(serde_json::to_value(&live).unwrap_or_default());
                    let mut after = normalize(serde_json::to_value(&dry).unwrap_or_default());
                    if let Object::Secret(_) = o {
                        mask_secret(&mut before, &mut after);
                    }
                    let lines = line_diff(&yaml::to_yaml(&before), &yaml::to_yaml(&after), 3);
                    ObjectDiff {
                        object,
                        change: if lines.is_empty() {
                            Change::Unchanged
                        } else {
                            Change::Update
                        },
                        lines,
                    }
                }
            };
            out.push(entry);
        }
    }
    Ok(out)
}

fn added(body: &Value) -> Vec<String> {
    let mut body = body.clone();
    if let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) {
        for v in data.values_mut() {
            *v = "***".into();
        }
    }
    yaml::to_yaml(&body)
        .lines()
        .map(|l| format!("+ {l}"))
        .collect()
}

/// Leaves out what apply does not decide.
fn normalize(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["managedFields", "resourceVersion", "generation"] {
                meta.remove(k);
            }
        }
    }
    v
}

/// Replaces Secret values by `***`, marking the ones that would change.
fn mask_secret(before: &mut Value, after: &mut Value) {
    for field in ["data", "stringData"] {
        let old = before.get(field).cloned().unwrap_or(Value::Null);
        if let Some(m) = after.get_mut(field).and_then(Value::as_object_mut) {
            for (k, v) in m.iter_mut() {
                *v = if old.get(k) == Some(v) {
                    "***".into()
                } else {
                    "*** (changed)".into()
                };
            }
        }
        if let Some(m) = before.get_mut(field).and_then(Value::as_object_mut) {
            for v in m.values_mut() {
                *v = "***".into();
            }
        }
    }
}

/// A line diff of two texts with `context` lines around each change; empty when equal.
pub fn line_diff(before: &str, after: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a == b {
        return Vec::new();
    }
    // Longest common subsequence table (objects are a few hundred lines at most).
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= context);
    let mut out = Vec::new();
    let mut gap = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near(k) {
            if gap || (out.is_empty() && k > 0) {
                out.push("@@".to_string());
            }
            gap = false;
            out.push(format!("{op} {line}"));
        } else {
            gap = !out.is_empty();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn line_diff_hunks() {
        let a = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let b = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(
            line_diff(a, b, 1),
            ["@@", "  d", "- e", "+ E", "  f"].map(String::from)
        );
        assert!(line_diff(a, a, 3).is_empty());
        assert_eq!(line_diff("", "x\n", 3), ["+ x"].map(String::from));
    }

    #[test]
    fn rollout_states() {
        let d = |gen: i64, status: Value| json!({"metadata": {"generation": gen}, "spec": {"replicas": 2}, "status": status});
        assert!(rollout_state(&d(2, json!({"observedGeneration": 1})))
            .unwrap()
            .unwrap()
            .contains("observed"));
        let s = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            rollout_state(&d(2, s)).unwrap().unwrap(),
            "1 old replicas are pending termination"
        );
        let s = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1});
        assert_eq!(
            rollout_state(&d(2, s)).unwrap().unwrap(),
            "1 of 2 updated replicas are available"
        );
        let s = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(rollout_state(&d(2, s)), Ok(None));
        let s = json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"api-1\" has timed out progressing."}]});
        assert!(rollout_state(&d(2, s))
            .unwrap_err()
            .starts_with("ProgressDeadlineExceeded"));
    }

    #[test]
    fn job_states() {
        assert_eq!(
            job_state(&json!({"status": {}})),
            Ok(Some("not started".into()))
        );
        assert_eq!(
            job_state(&json!({"status": {"active": 1}})),
            Ok(Some("1 active".into()))
        );
        assert_eq!(
            job_state(&json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})),
            Ok(None)
        );
        let failed = json!({"status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
        assert_eq!(
            job_state(&failed),
            Err("BackoffLimitExceeded: Job has reached the specified backoff limit".into())
        );
    }

    #[test]
    fn secrets_are_masked() {
        let mut before = json!({"data": {"a": "eA==", "b": "eQ=="}});
        let mut after = json!({"data": {"a": "eA==", "b": "eg=="}});
        mask_secret(&mut before, &mut after);
        assert_eq!(before, json!({"data": {"a": "***", "b": "***"}}));
        assert_eq!(after, json!({"data": {"a": "***", "b": "*** (changed)"}}));
    }
}
