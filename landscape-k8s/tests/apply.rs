//! The apply flow against a fake API server: a hand-written `tower::Service` given to
//! `kube::Client::new`. It records every request (method, path with query, content type,
//! body) and answers like an API server would: server-side apply stores the object,
//! `GET` returns it with a status that advances on each poll (a Job becomes `Complete`, a
//! Deployment's replicas become available), `DELETE` removes it.
#![cfg(feature = "apply")]

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use landscape_k8s::apply::kube;
use landscape_k8s::apply::{self, ApplyError, ApplyOptions, Change, Progress};
use landscape_k8s::{Object, Rendered};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query (`/api/v1/namespaces/shop/secrets/vault?fieldManager=...`).
    uri: String,
    content_type: Option<String>,
    body: Option<Value>,
}

impl Seen {
    /// `METHOD /path?k=v&...` with the query's pairs in the order sent (kube writes an
    /// empty first pair, `?&force=true`, which an API server ignores; left out here).
    fn line(&self) -> String {
        let q: Vec<String> = self
            .query()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if q.is_empty() {
            format!("{} {}", self.method, self.path())
        } else {
            format!("{} {}?{}", self.method, self.path(), q.join("&"))
        }
    }
    fn query(&self) -> Vec<(String, String)> {
        let q = self.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }
    fn param(&self, key: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap()
    }
}

/// How a Job or Deployment behaves in the fake cluster.
#[derive(Clone, Default)]
struct Script {
    /// Jobs (by name) that fail instead of completing.
    failing_jobs: BTreeSet<String>,
    /// Deployments (by name) whose progress deadline passes.
    stuck_deployments: BTreeSet<String>,
    /// Jobs (by name) that exist with another template: the first apply is refused.
    immutable_jobs: BTreeSet<String>,
    /// Paths of objects that exist before the test (path → object).
    live: BTreeMap<String, Value>,
    /// Namespaces that do not exist (dry runs of objects in them answer 404).
    missing_namespaces: BTreeSet<String>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    objects: BTreeMap<String, Value>,
    /// `GET`s so far, per path: the status advances with them.
    gets: BTreeMap<String, u32>,
    script: Script,
}

#[derive(Clone)]
struct FakeApi(Arc<Mutex<State>>);

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "code": code, "reason": reason, "message": message}),
    )
}

impl FakeApi {
    fn new(script: Script) -> FakeApi {
        let objects = script.live.clone();
        FakeApi(Arc::new(Mutex::new(State {
            objects,
            script,
            ..State::default()
        })))
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }

    fn answer(&self, req: &Seen) -> (u16, Value) {
        let mut st = self.0.lock().unwrap();
        let path = req.path().to_string();
        let name = path.rsplit('/').next().unwrap().to_string();
        let kind = path.rsplit('/').nth(1).unwrap().to_string();
        let dry_run = req.param("dryRun").as_deref() == Some("All");
        match req.method.as_str() {
            "PATCH" => {
                let missing = st
                    .script
                    .missing_namespaces
                    .iter()
                    .find(|ns| path.contains(&format!("/namespaces/{ns}/")));
                if let Some(ns) = missing {
                    return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
                }
                if kind == "jobs" && st.script.immutable_jobs.contains(&name) {
                    if !dry_run {
                        // Refused once; after the delete the new Job is accepted.
                        st.script.immutable_jobs.remove(&name);
                    }
                    return status(
                        422,
                        "Invalid",
                        &format!("Job.batch \"{name}\" is invalid: spec.template: Invalid value: field is immutable"),
                    );
                }
                let mut obj = req.body.clone().unwrap();
                let old = st.objects.get(&path).cloned();
                let generation = old
                    .as_ref()
                    .and_then(|o| o["metadata"]["generation"].as_i64())
                    .unwrap_or(0);
                let changed = old
                    .as_ref()
                    .map(|o| o["spec"] != obj["spec"])
                    .unwrap_or(true);
                obj["metadata"]["generation"] = json!(generation + i64::from(changed));
                obj["metadata"]["resourceVersion"] = json!("1");
                obj["metadata"]["managedFields"] =
                    json!([{"manager": "landscape", "operation": "Apply"}]);
                if let Some(old) = &old {
                    // Fields of other managers (a filled Secret's data) stay.
                    if let Some(data) = old.get("data") {
                        if obj.get("data").is_none() {
                            obj["data"] = data.clone();
                        }
                    }
                    if let Some(s) = old.get("status") {
                        obj["status"] = s.clone();
                    }
                }
                if !dry_run {
                    st.objects.insert(path.clone(), obj.clone());
                    st.gets.remove(&path);
                }
                (200, obj)
            }
            "GET" => {
                let Some(mut obj) = st.objects.get(&path).cloned() else {
                    return status(404, "NotFound", &format!("{kind} \"{name}\" not found"));
                };
                let n = {
                    let n = st.gets.entry(path.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if st.script.live.contains_key(&path) {
                    return (200, obj);
                }
                if kind == "jobs" {
                    obj["status"] = match n {
                        1 => json!({"active": 1}),
                        _ if st.script.failing_jobs.contains(&name) => json!({"failed": 1,
                            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                            "message": "Job has reached the specified backoff limit"}]}),
                        _ => json!({"succeeded": 1,
                            "conditions": [{"type": "Complete", "status": "True"}]}),
                    };
                } else if kind == "deployments" {
                    let gen = obj["metadata"]["generation"].clone();
                    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                    obj["status"] = if st.script.stuck_deployments.contains(&name) {
                        json!({"observedGeneration": gen, "replicas": want, "updatedReplicas": want,
                               "availableReplicas": 0, "conditions": [{"type": "Progressing", "status": "False",
                               "reason": "ProgressDeadlineExceeded",
                               "message": format!("ReplicaSet \"{name}-1\" has timed out progressing.")}]})
                    } else {
                        match n {
                            1 => json!({"observedGeneration": 0}),
                            2 => {
                                json!({"observedGeneration": gen, "replicas": want, "updatedReplicas": want,
                                        "availableReplicas": want - 1})
                            }
                            _ => {
                                json!({"observedGeneration": gen, "replicas": want, "updatedReplicas": want,
                                        "availableReplicas": want})
                            }
                        }
                    };
                }
                (200, obj)
            }
            "DELETE" => match st.objects.remove(&path) {
                Some(o) => (200, o),
                None => status(404, "NotFound", &format!("{kind} \"{name}\" not found")),
            },
            m => status(405, "MethodNotAllowed", m),
        }
    }
}

impl tower_service::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let seen = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.path_and_query().unwrap().to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_string()),
                body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap()),
            };
            let (code, answer) = this.answer(&seen);
            this.0.lock().unwrap().seen.push(seen);
            Ok(Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&answer).unwrap())))
                .unwrap())
        })
    }
}

fn sample() -> Rendered {
    let src = std::fs::read_to_string(manifest("../examples/sample/ci.yml")).unwrap();
    landscape_k8s::render(&parse("ci.yml", &src), &options()).unwrap()
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        poll_interval: Duration::from_millis(1),
        ..ApplyOptions::default()
    }
}

/// The sample's vault Secret as a user filled it with kubectl.
fn filled_secret() -> (String, Value) {
    (
        "/api/v1/namespaces/shop/secrets/vault".into(),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "vault", "namespace": "shop", "resourceVersion": "7"},
               "data": {"SAMPLE_API_TOKEN": "dG9rZW4="}}),
    )
}

fn script_with_secret() -> Script {
    Script {
        live: BTreeMap::from([filled_secret()]),
        ..Script::default()
    }
}

async fn run_apply(
    rendered: &Rendered,
    script: Script,
) -> (Result<(), ApplyError>, Vec<Seen>, Vec<Progress>) {
    let fake = FakeApi::new(script);
    let client = kube::Client::new(fake.clone(), "default");
    let mut progress = Vec::new();
    let r = apply::apply(&client, rendered, &fast(), |p| progress.push(p.clone())).await;
    (r, fake.seen(), progress)
}

const APPLY_Q: &str = "?force=true&fieldManager=landscape&fieldValidation=Strict";

fn url(o: &Object) -> String {
    let name = o.name();
    match o.kind() {
        "Namespace" => format!("/api/v1/namespaces/{name}"),
        "PersistentVolumeClaim" => format!("/api/v1/namespaces/shop/persistentvolumeclaims/{name}"),
        "Secret" => format!("/api/v1/namespaces/shop/secrets/{name}"),
        "Service" => format!("/api/v1/namespaces/shop/services/{name}"),
        "Job" => format!("/apis/batch/v1/namespaces/shop/jobs/{name}"),
        "Deployment" => format!("/apis/apps/v1/namespaces/shop/deployments/{name}"),
        "HTTPRoute" => {
            format!("/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/{name}")
        }
        "Ingress" => format!("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/{name}"),
        k => panic!("{k}"),
    }
}

#[tokio::test]
async fn apply_sends_every_object_in_phase_order_and_waits() {
    let rendered = sample();
    let (r, seen, progress) = run_apply(&rendered, script_with_secret()).await;
    r.unwrap();

    let job = |n: &str| format!("/apis/batch/v1/namespaces/shop/jobs/{n}");
    let deploy = |n: &str| format!("/apis/apps/v1/namespaces/shop/deployments/{n}");
    let mut want = vec![
        format!("PATCH /api/v1/namespaces/shop{APPLY_Q}"),
        format!("PATCH /api/v1/namespaces/shop/persistentvolumeclaims/app{APPLY_Q}"),
        format!("PATCH /api/v1/namespaces/shop/secrets/vault{APPLY_Q}"),
        // The Secret was rendered without its value: the cluster's must hold it.
        "GET /api/v1/namespaces/shop/secrets/vault".to_string(),
        format!("PATCH {}{APPLY_Q}", job("prepare")),
        format!("GET {}", job("prepare")), // active
        format!("GET {}", job("prepare")), // complete
        format!("PATCH {}{APPLY_Q}", job("test")),
        format!("GET {}", job("test")),
        format!("GET {}", job("test")),
    ];
    let run: Vec<&Object> = rendered
        .objects
        .iter()
        .filter(|o| {
            !matches!(
                o.kind(),
                "Namespace" | "PersistentVolumeClaim" | "Secret" | "Job"
            )
        })
        .collect();
    for o in &run {
        want.push(format!("PATCH {}{APPLY_Q}", url(o)));
    }
    for o in run.iter().filter(|o| o.kind() == "Deployment") {
        // not observed, 1 short of available, rolled out
        for _ in 0..3 {
            want.push(format!("GET {}", deploy(o.name())));
        }
    }
    let got: Vec<String> = seen.iter().map(Seen::line).collect();
    assert_eq!(got, want);

    // Every PATCH is a server-side apply of exactly the rendered object.
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), rendered.objects.len());
    for s in &patches {
        assert_eq!(
            s.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{}",
            s.uri
        );
        assert_eq!(
            s.param("fieldManager").as_deref(),
            Some("landscape"),
            "{}",
            s.uri
        );
        assert_eq!(s.param("force").as_deref(), Some("true"), "{}", s.uri);
        assert_eq!(s.param("dryRun"), None, "{}", s.uri);
    }
    for o in &rendered.objects {
        let s = patches.iter().find(|s| s.path() == url(o)).unwrap();
        assert_eq!(s.body.as_ref(), Some(&o.to_json()), "{}", url(o));
    }
    // The Deployment's body in full: kind, apiVersion, the rendered spec.
    let api = patches.iter().find(|s| s.path() == deploy("api")).unwrap();
    let body = api.body.as_ref().unwrap();
    assert_eq!(body["apiVersion"], "apps/v1");
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["metadata"]["namespace"], "shop");
    assert_eq!(body["spec"]["replicas"], 2);

    // Progress, as a terminal shows it.
    let lines: Vec<String> = progress.iter().map(|p| p.to_string()).collect();
    for l in [
        "phase setup",
        "namespace/shop serverside-applied",
        "secret/vault serverside-applied",
        "phase prepare",
        "job.batch/prepare serverside-applied",
        "waiting for job.batch/prepare: 1 active",
        "job.batch/prepare complete",
        "phase test",
        "job.batch/test complete",
        "phase run",
        "deployment.apps/api serverside-applied",
        "httproute.gateway.networking.k8s.io/web serverside-applied",
        "waiting for deployment.apps/api: waiting for the spec update to be observed",
        "waiting for deployment.apps/api: 1 of 2 updated replicas are available",
        "deployment.apps/api successfully rolled out",
        "deployment.apps/worker successfully rolled out",
    ] {
        assert!(
            lines.contains(&l.to_string()),
            "missing {l:?} in {lines:#?}"
        );
    }
    let pos = |l: &str| lines.iter().position(|x| x == l).unwrap();
    assert!(pos("job.batch/prepare complete") < pos("phase test"));
    assert!(pos("job.batch/test complete") < pos("phase run"));
}

#[tokio::test]
async fn without_wait_nothing_is_polled() {
    let rendered = sample();
    let fake = FakeApi::new(script_with_secret());
    let client = kube::Client::new(fake.clone(), "default");
    let opts = ApplyOptions {
        wait: false,
        field_manager: "ci-bot".into(),
        force: false,
        ..fast()
    };
    apply::apply(&client, &rendered, &opts, |_| {})
        .await
        .unwrap();
    let seen = fake.seen();
    let gets: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "GET")
        .map(Seen::line)
        .collect();
    // Only the Secret check.
    assert_eq!(gets, ["GET /api/v1/namespaces/shop/secrets/vault"]);
    for s in seen.iter().filter(|s| s.method == "PATCH") {
        assert!(
            s.line()
                .ends_with("?fieldManager=ci-bot&fieldValidation=Strict"),
            "{}",
            s.uri
        );
    }
}

#[tokio::test]
async fn a_failed_job_stops_before_the_services() {
    let rendered = sample();
    let mut script = script_with_secret();
    script.failing_jobs.insert("test".into());
    let (r, seen, _) = run_apply(&rendered, script).await;
    let err = r.unwrap_err();
    assert!(matches!(err, ApplyError::JobFailed { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "job.batch/test failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
    );
    assert!(!seen.iter().any(|s| s.uri.contains("deployments")));
    assert_eq!(
        seen.last().unwrap().line(),
        "GET /apis/batch/v1/namespaces/shop/jobs/test"
    );
}

#[tokio::test]
async fn missing_secret_values_stop_after_setup() {
    let rendered = sample();
    let (r, seen, _) = run_apply(&rendered, Script::default()).await;
    let err = r.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ApplyError::MissingSecretKeys { ref keys, .. } if keys == &["SAMPLE_API_TOKEN"]),
        "{text}"
    );
    assert!(
        text.contains(
            "kubectl -n shop create secret generic vault --from-literal=SAMPLE_API_TOKEN=..."
        ),
        "{text}"
    );
    assert!(!seen.iter().any(|s| s.uri.contains("/jobs/")));
    // The Secret exists now (without values), so a user can fill it and apply again.
    assert_eq!(
        seen.last().unwrap().line(),
        "GET /api/v1/namespaces/shop/secrets/vault"
    );

    // With the value resolved into the rendering, no check is needed.
    let mut opts = options();
    opts.vault = Some(landscape_k8s::SecretValues(BTreeMap::from([(
        "SAMPLE_API_TOKEN".to_string(),
        "token".to_string(),
    )])));
    let src = std::fs::read_to_string(manifest("../examples/sample/ci.yml")).unwrap();
    let rendered = landscape_k8s::render(&parse("ci.yml", &src), &opts).unwrap();
    let (r, seen, _) = run_apply(&rendered, Script::default()).await;
    r.unwrap();
    assert!(!seen
        .iter()
        .any(|s| s.method == "GET" && s.uri.contains("/secrets/")));
}

#[tokio::test]
async fn a_job_with_a_changed_template_is_replaced() {
    let rendered = sample();
    let mut script = script_with_secret();
    script.immutable_jobs.insert("prepare".into());
    let (r, seen, progress) = run_apply(&rendered, script).await;
    r.unwrap();
    let job = "/apis/batch/v1/namespaces/shop/jobs/prepare";
    let lines: Vec<String> = seen
        .iter()
        .filter(|s| s.path() == job)
        .map(Seen::line)
        .collect();
    assert_eq!(
        lines,
        [
            format!("PATCH {job}{APPLY_Q}"), // 422: field is immutable
            format!("DELETE {job}"),
            format!("GET {job}"), // 404: gone
            format!("PATCH {job}{APPLY_Q}"),
            format!("GET {job}"),
            format!("GET {job}"),
        ]
    );
    let delete = seen.iter().find(|s| s.method == "DELETE").unwrap();
    assert_eq!(
        delete.body.as_ref().unwrap()["propagationPolicy"],
        "Background"
    );
    assert!(progress.contains(&Progress::JobReplaced("job.batch/prepare".into())));
}

#[tokio::test]
async fn a_stuck_rollout_is_an_error() {
    let rendered = sample();
    let mut script = script_with_secret();
    script.stuck_deployments.insert("api".into());
    let (r, _, _) = run_apply(&rendered, script).await;
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployment.apps/api rollout failed: ProgressDeadlineExceeded: ReplicaSet \"api-1\" has timed out progressing."
    );
}

#[tokio::test]
async fn a_rollout_that_takes_too_long_times_out() {
    let rendered = sample();
    let fake = FakeApi::new(script_with_secret());
    let client = kube::Client::new(fake.clone(), "default");
    let opts = ApplyOptions {
        rollout_timeout: Duration::ZERO,
        ..fast()
    };
    let err = apply::apply(&client, &rendered, &opts, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Timeout { .. }), "{err}");
    assert!(err.to_string().starts_with("deployment.apps/"), "{err}");
}

#[tokio::test]
async fn api_errors_name_the_object() {
    let rendered = sample();
    // The Namespace of the sample is missing and objects in it cannot be applied.
    let mut script = script_with_secret();
    script.missing_namespaces.insert("shop".into());
    let (r, seen, _) = run_apply(&rendered, script).await;
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        "persistentvolumeclaim/app: 404 NotFound: namespaces \"shop\" not found"
    );
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn diff_of_a_new_landscape_creates_everything() {
    let rendered = sample();
    let mut script = Script::default();
    script.missing_namespaces.insert("shop".into());
    let fake = FakeApi::new(script);
    let client = kube::Client::new(fake.clone(), "default");
    let diffs = apply::diff(&client, &rendered, &fast()).await.unwrap();
    assert_eq!(diffs.len(), rendered.objects.len());
    assert!(diffs.iter().all(|d| d.change == Change::Create));
    let ns = &diffs[0];
    assert_eq!(ns.object, "namespace/shop");
    assert!(ns.lines.contains(&"+ kind: Namespace".to_string()), "{ns}");
    // Dry runs only: nothing stored, every PATCH carries dryRun=All.
    let seen = fake.seen();
    assert!(fake.0.lock().unwrap().objects.is_empty());
    for s in seen.iter().filter(|s| s.method == "PATCH") {
        assert_eq!(s.param("dryRun").as_deref(), Some("All"), "{}", s.uri);
        assert_eq!(
            s.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }
    assert!(seen
        .iter()
        .all(|s| matches!(s.method.as_str(), "GET" | "PATCH")));
}

#[tokio::test]
async fn diff_after_apply_shows_only_what_changed() {
    let rendered = sample();
    let fake = FakeApi::new(script_with_secret());
    let client = kube::Client::new(fake.clone(), "default");
    apply::apply(&client, &rendered, &fast(), |_| {})
        .await
        .unwrap();
    let stored = fake.0.lock().unwrap().objects.clone();

    // Applied as rendered: nothing to change (status and managedFields do not count).
    let diffs = apply::diff(&client, &rendered, &fast()).await.unwrap();
    let changed: Vec<_> = diffs
        .iter()
        .filter(|d| d.change != Change::Unchanged)
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
    assert!(diffs.iter().all(|d| d.lines.is_empty()));

    // Three replicas of api, an edited Job, and a new Secret value.
    let mut opts = options();
    opts.vault = Some(landscape_k8s::SecretValues(BTreeMap::from([(
        "SAMPLE_API_TOKEN".to_string(),
        "other".to_string(),
    )])));
    let src = std::fs::read_to_string(manifest("../examples/sample/ci.yml"))
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    let edited = landscape_k8s::render(&parse("ci.yml", &src), &opts).unwrap();
    fake.0
        .lock()
        .unwrap()
        .script
        .immutable_jobs
        .insert("test".into());
    let diffs = apply::diff(&client, &edited, &fast()).await.unwrap();
    let by_name: BTreeMap<&str, &apply::ObjectDiff> =
        diffs.iter().map(|d| (d.object.as_str(), d)).collect();
    let api = by_name["deployment.apps/api"];
    assert_eq!(api.change, Change::Update);
    assert!(api.lines.contains(&"-   replicas: 2".to_string()), "{api}");
    assert!(api.lines.contains(&"+   replicas: 3".to_string()), "{api}");
    assert!(api.lines.len() < 12, "only the hunk, with context: {api}");
    assert_eq!(by_name["job.batch/test"].change, Change::Replace);
    let secret = by_name["secret/vault"];
    assert_eq!(secret.change, Change::Update);
    assert!(
        secret
            .lines
            .contains(&"+   SAMPLE_API_TOKEN: \"*** (changed)\"".to_string()),
        "{secret}"
    );
    assert!(
        !secret.to_string().contains("b3RoZXI="),
        "a value leaked: {secret}"
    );
    assert!(
        !secret.to_string().contains("dG9rZW4="),
        "a value leaked: {secret}"
    );
    assert_eq!(by_name["service/api"].change, Change::Unchanged);
    // The dry runs changed nothing.
    assert_eq!(fake.0.lock().unwrap().objects, stored);
}
