//! `landscape k8s render`: print the Kubernetes objects of a ci.yml; `landscape k8s apply`
//! and `diff` (with the `k8s-apply` feature): server-side apply them to a cluster, or show
//! what that would change. Argument parsing and output only; the translation and the apply
//! flow are `landscape_k8s` (tested there).

use landscape::spec::{self, diag, ParseOptions, PlanCatalogue};
use landscape_k8s::{GatewayRef, Options, Rendered, Routes, ScaleToZero};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `landscape k8s`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Print the landscape as multi-document Kubernetes YAML (warnings go to stderr).
    Render(RenderArgs),
    /// Server-side apply the landscape to the cluster of KUBECONFIG, phase by phase, waiting
    /// for the prepare/test Jobs and the rollouts (needs a build with `--features k8s-apply`).
    Apply(ApplyArgs),
    /// Show what `landscape k8s apply` would change (server-side dry run); exit code 0: no
    /// change, 1: changes, 2: error (needs a build with `--features k8s-apply`).
    Diff(DiffArgs),
}

/// Arguments of `landscape k8s apply`.
#[derive(clap::Args)]
#[cfg_attr(not(feature = "k8s-apply"), allow(dead_code))]
struct ApplyArgs {
    #[command(flatten)]
    render: RenderArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Apply without waiting for the Jobs and rollouts.
    #[arg(long)]
    no_wait: bool,
    /// How long each prepare/test Job may run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    job_timeout: u64,
    /// How long each Deployment's rollout may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    rollout_timeout: u64,
}

/// Arguments of `landscape k8s diff`.
#[derive(clap::Args)]
#[cfg_attr(not(feature = "k8s-apply"), allow(dead_code))]
struct DiffArgs {
    #[command(flatten)]
    render: RenderArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// How `apply` and `diff` reach the cluster.
#[derive(clap::Args)]
#[cfg_attr(not(feature = "k8s-apply"), allow(dead_code))]
struct ClusterArgs {
    /// The server-side apply field manager.
    #[arg(long, value_name = "NAME", default_value = "landscape")]
    field_manager: String,
    /// The kubeconfig context (default: the current context of KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "CONTEXT")]
    context: Option<String>,
}

/// Arguments of `landscape k8s render`.
#[derive(clap::Args)]
struct RenderArgs {
    /// A plan catalogue (JSON) for requests = limits.
    #[arg(long, value_name = "FILE")]
    plans: Option<String>,
    /// The image every Reactive and the prepare/test Jobs run in (e.g. the workspace image).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// A YAML map `service: image` overriding --image (and a container's image) per service.
    #[arg(long, value_name = "FILE")]
    image_map: Option<String>,
    /// The namespace of the landscape.
    #[arg(long, value_name = "NS", default_value = "landscape")]
    namespace: String,
    /// Emit Ingresses instead of Gateway API HTTPRoutes.
    #[arg(long)]
    ingress: bool,
    /// `ingressClassName` of the Ingresses.
    #[arg(long, value_name = "CLASS", requires = "ingress")]
    ingress_class: Option<String>,
    /// The Gateway the HTTPRoutes attach to: NAME or NAMESPACE/NAME.
    #[arg(long, value_name = "GATEWAY", default_value = "landscape")]
    gateway: String,
    /// A host name of the path routes (repeatable; none: any host).
    #[arg(long = "hostname", value_name = "HOST")]
    hostnames: Vec<String>,
    /// `${{ workspace.id }}`, and the first part of public-port host names.
    #[arg(long, value_name = "ID")]
    workspace_id: Option<String>,
    /// `${{ workspace.devDomain }}`, and the domain of public-port host names.
    #[arg(long, value_name = "DOMAIN")]
    dev_domain: Option<String>,
    /// `${{ team.id }}`.
    #[arg(long, value_name = "ID")]
    team_id: Option<String>,
    /// The size of the app-directory claim.
    #[arg(long, value_name = "SIZE", default_value = "10Gi")]
    storage: String,
    /// The storage class of the app-directory claim (it must offer ReadWriteMany).
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Leave the Namespace object out (it exists already).
    #[arg(long)]
    no_namespace: bool,
    /// Scale every service with public paths to zero when unused: a KEDA HTTP add-on
    /// HTTPScaledObject each, and its routes through the add-on's interceptor.
    #[arg(long)]
    keda: bool,
    /// How long a scaled service may go without requests before it stops (`90s`, `5m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "5m", requires = "keda", value_parser = parse_duration)]
    keda_idle: u32,
    /// The most replicas of a scaled service (default: its `replicas`; never more than its plan allows).
    #[arg(long, value_name = "N", requires = "keda")]
    keda_max_replicas: Option<u32>,
    /// The namespace the KEDA HTTP add-on (its interceptor) is installed in.
    #[arg(long, value_name = "NS", default_value = "keda", requires = "keda")]
    keda_namespace: String,
    /// The ci.yml file.
    #[arg(value_name = "FILE")]
    file: String,
}

/// `300`, `300s`, `5m`, `1h` as seconds.
fn parse_duration(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u32 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 5m, 1h)"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    n.checked_mul(factor)
        .filter(|v| i32::try_from(*v).is_ok())
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("landscape: cannot read {path}: {e}"))
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

/// Runs `landscape k8s`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Sub::Render(a) => render(a),
        #[cfg(feature = "k8s-apply")]
        Sub::Apply(a) => cluster::apply(a),
        #[cfg(feature = "k8s-apply")]
        Sub::Diff(a) => cluster::diff(a),
        #[cfg(not(feature = "k8s-apply"))]
        Sub::Apply(_) | Sub::Diff(_) => fail(
            "landscape: `landscape k8s apply` and `diff` are not in this build; build it with \
             `cargo build --example landscape --features k8s-apply` (kube-rs, off by default)",
        ),
    }
}

fn render(a: RenderArgs) -> ExitCode {
    match build(a) {
        Ok(out) => {
            let yaml = out.to_yaml();
            if std::io::stdout().write_all(yaml.as_bytes()).is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(code) => ExitCode::from(code),
    }
}

/// Renders the ci.yml of `a`, printing warnings and notes (or the errors) to stderr.
/// `Err`: the exit code (1 the ci.yml has errors, 2 usage or I/O).
fn build(a: RenderArgs) -> Result<Rendered, u8> {
    let fail = |msg: &str| {
        eprintln!("{msg}");
        2
    };
    let mut opts = Options {
        namespace: a.namespace,
        create_namespace: !a.no_namespace,
        image: a.image,
        routes: if a.ingress {
            Routes::Ingress
        } else {
            Routes::HttpRoute
        },
        ingress_class: a.ingress_class,
        hostnames: a.hostnames,
        storage: a.storage,
        storage_class: a.storage_class,
        scale_to_zero: a.keda.then_some(ScaleToZero {
            idle_seconds: a.keda_idle,
            max_replicas: a.keda_max_replicas,
            namespace: a.keda_namespace,
        }),
        ..Options::default()
    };
    opts.gateway = match a.gateway.split_once('/') {
        Some((ns, name)) => GatewayRef {
            name: name.into(),
            namespace: Some(ns.into()),
            section_name: None,
        },
        None => GatewayRef {
            name: a.gateway,
            ..GatewayRef::default()
        },
    };
    opts.context.workspace_id = a.workspace_id;
    opts.context.dev_domain = a.dev_domain;
    opts.context.team_id = a.team_id;
    if let Some(p) = &a.plans {
        let text = match read(p) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return Err(fail(&e)),
        };
        match PlanCatalogue::from_json(&text) {
            Ok(c) => opts.plans = Some(c),
            Err(e) => return Err(fail(&format!("landscape: {p}: {e}"))),
        }
    }
    if let Some(p) = &a.image_map {
        let text = match read(p) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return Err(fail(&e)),
        };
        match landscape_k8s::image_map_from_yaml(&text) {
            Ok(m) => opts.image_map = m,
            Err(e) => return Err(fail(&format!("landscape: {p}:{e}"))),
        }
    }
    let bytes = match read(&a.file) {
        Ok(b) => b,
        Err(e) => return Err(fail(&e)),
    };
    let src = String::from_utf8_lossy(&bytes);
    let parse_opts = ParseOptions {
        plans: opts.plans.clone(),
        ..ParseOptions::default()
    };
    let parsed = spec::parse_with(&a.file, &bytes, &parse_opts);
    let Some(landscape) = parsed.ok() else {
        let errors: Vec<_> = parsed.errors().cloned().collect();
        eprint!("{}", diag::render_human(&a.file, &src, &errors));
        eprintln!("failed: {} has errors; nothing rendered", a.file);
        return Err(1);
    };
    match landscape_k8s::render(landscape, &opts) {
        Ok(out) => {
            let mut warnings: Vec<_> = parsed.warnings().cloned().collect();
            warnings.extend(out.warnings.iter().cloned());
            warnings.sort_by_key(|d| d.span.start);
            eprint!("{}", diag::render_human(&a.file, &src, &warnings));
            for n in &out.notes {
                eprintln!("note: {n}");
            }
            Ok(out)
        }
        Err(landscape_k8s::Error::Invalid(errors)) => {
            eprint!("{}", diag::render_human(&a.file, &src, &errors));
            eprintln!(
                "failed: {} cannot be rendered for Kubernetes ({} error{}); nothing printed",
                a.file,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Err(1)
        }
        Err(e) => Err(fail(&format!("landscape: {e}"))),
    }
}

/// `apply` and `diff`: a client from the kubeconfig, a current-thread tokio runtime, and
/// the library's flow.
#[cfg(feature = "k8s-apply")]
mod cluster {
    use super::{build, fail, ApplyArgs, ClusterArgs, DiffArgs};
    use landscape_k8s::apply::{self, ApplyError, ApplyOptions, Change, Client};
    use std::io::Write;
    use std::process::ExitCode;
    use std::time::Duration;

    fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(&format!("landscape: cannot start the async runtime: {e}")))
    }

    async fn client(c: &ClusterArgs) -> Result<Client, ExitCode> {
        apply::client_for_context(c.context.as_deref())
            .await
            .map_err(|e| fail(&format!("landscape: {e}")))
    }

    /// Runs `landscape k8s apply`.
    pub fn apply(a: ApplyArgs) -> ExitCode {
        let rendered = match build(a.render) {
            Ok(r) => r,
            Err(code) => return ExitCode::from(code),
        };
        let opts = ApplyOptions {
            field_manager: a.cluster.field_manager.clone(),
            wait: !a.no_wait,
            job_timeout: Duration::from_secs(a.job_timeout),
            rollout_timeout: Duration::from_secs(a.rollout_timeout),
            ..ApplyOptions::default()
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        rt.block_on(async {
            let client = match client(&a.cluster).await {
                Ok(c) => c,
                Err(code) => return code,
            };
            let result = apply::apply(&client, &rendered, &opts, |p| {
                let _ = writeln!(std::io::stdout(), "{p}");
            })
            .await;
            match result {
                Ok(()) => {
                    println!(
                        "applied {} objects to namespace {}",
                        rendered.objects.len(),
                        rendered.namespace
                    );
                    ExitCode::SUCCESS
                }
                Err(e @ (ApplyError::Api { .. } | ApplyError::Config(_))) => {
                    fail(&format!("landscape: {e}"))
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    ExitCode::from(1)
                }
            }
        })
    }

    /// Runs `landscape k8s diff`: 0 nothing would change, 1 something would, 2 an error.
    pub fn diff(a: DiffArgs) -> ExitCode {
        let rendered = match build(a.render) {
            Ok(r) => r,
            Err(_) => return ExitCode::from(2),
        };
        let opts = ApplyOptions {
            field_manager: a.cluster.field_manager.clone(),
            ..ApplyOptions::default()
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        rt.block_on(async {
            let client = match client(&a.cluster).await {
                Ok(c) => c,
                Err(code) => return code,
            };
            let diffs = match apply::diff(&client, &rendered, &opts).await {
                Ok(d) => d,
                Err(e) => return fail(&format!("landscape: {e}")),
            };
            let mut out = std::io::stdout().lock();
            let count = |c: Change| diffs.iter().filter(|d| d.change == c).count();
            for d in diffs.iter().filter(|d| d.change != Change::Unchanged) {
                let _ = write!(out, "{d}");
            }
            let _ = writeln!(
                out,
                "{} to create, {} to change, {} to replace, {} unchanged",
                count(Change::Create),
                count(Change::Update),
                count(Change::Replace),
                count(Change::Unchanged)
            );
            if diffs.iter().all(|d| d.change == Change::Unchanged) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        })
    }
}
