//! End to end against a real cluster. Runs only when `KUBECONFIG` is set (it skips with a
//! printed reason otherwise; no API server can be installed on the CI machines).
//!
//! In a fresh namespace `landscape-e2e-<pid>`: diff (everything to create), apply, diff
//! again (everything unchanged), apply again (idempotent), then an edit (replicas) that the
//! diff shows and apply makes; the namespace is deleted at the end. By default nothing is
//! waited for, so any cluster works. With `LANDSCAPE_K8S_E2E_WAIT=1` the Jobs and rollouts
//! are awaited too: that needs a `ReadWriteMany` storage class (`LANDSCAPE_K8S_E2E_STORAGE_CLASS`)
//! and an image with `/bin/sh` (`LANDSCAPE_K8S_E2E_IMAGE`, default `busybox:1.37`).
#![cfg(feature = "apply")]

mod common;

use landscape_k8s::apply::{self, kube, ApplyOptions, Change};
use landscape_k8s::{Options, Routes};
use std::time::Duration;

const SRC: &str = "\
schemaVersion: v0.4
prepare:
  steps:
    - command: echo prepared > prepared.txt
run:
  web:
    replicas: 1
    steps:
      - command: while true; do sleep 3600; done
    network:
      ports: [{port: 8080}]
";

#[tokio::test]
async fn apply_and_diff_against_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("skipped: KUBECONFIG is not set (this test needs a real cluster)");
        return;
    }
    let wait = std::env::var("LANDSCAPE_K8S_E2E_WAIT").is_ok_and(|v| v == "1");
    let ns = format!("landscape-e2e-{}", std::process::id());
    let opts = Options {
        namespace: ns.clone(),
        image: Some(
            std::env::var("LANDSCAPE_K8S_E2E_IMAGE").unwrap_or_else(|_| "busybox:1.37".into()),
        ),
        storage: "64Mi".into(),
        storage_class: std::env::var("LANDSCAPE_K8S_E2E_STORAGE_CLASS").ok(),
        // No Gateway API CRDs needed.
        routes: Routes::None,
        ..Options::default()
    };
    let render = |src: &str| landscape_k8s::render(&common::parse("ci.yml", src), &opts).unwrap();
    let rendered = render(SRC);
    let client = apply::client().await.expect("a client from KUBECONFIG");
    let aopts = ApplyOptions {
        wait,
        poll_interval: Duration::from_secs(1),
        job_timeout: Duration::from_secs(300),
        rollout_timeout: Duration::from_secs(300),
        ..ApplyOptions::default()
    };

    let result = async {
        let d = apply::diff(&client, &rendered, &aopts).await?;
        assert!(d.iter().all(|d| d.change == Change::Create), "{d:#?}");
        let mut progress = Vec::new();
        apply::apply(&client, &rendered, &aopts, |p| {
            eprintln!("{p}");
            progress.push(p.to_string());
        })
        .await?;
        assert!(progress.contains(&"deployment.apps/web serverside-applied".to_string()));

        let d = apply::diff(&client, &rendered, &aopts).await?;
        let changed: Vec<_> = d.iter().filter(|d| d.change != Change::Unchanged).collect();
        assert!(changed.is_empty(), "after apply: {changed:#?}");
        apply::apply(&client, &rendered, &aopts, |_| {}).await?;

        let edited = render(&SRC.replace("replicas: 1", "replicas: 2"));
        let d = apply::diff(&client, &edited, &aopts).await?;
        let web = d
            .iter()
            .find(|d| d.object == "deployment.apps/web")
            .unwrap();
        assert_eq!(web.change, Change::Update, "{web}");
        assert!(web.lines.contains(&"+   replicas: 2".to_string()), "{web}");
        apply::apply(&client, &edited, &aopts, |p| eprintln!("{p}")).await?;
        let d = apply::diff(&client, &edited, &aopts).await?;
        assert!(d.iter().all(|d| d.change == Change::Unchanged), "{d:#?}");
        Ok::<_, apply::ApplyError>(())
    }
    .await;

    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let _ = api.delete(&ns, &Default::default()).await;
    result.unwrap();
}
