//! `landscape k8s render`: print the Kubernetes objects of a ci.yml. Argument parsing and
//! output only; the translation is `landscape_k8s` (tested there).

use landscape::spec::{self, diag, ParseOptions, PlanCatalogue};
use landscape_k8s::{GatewayRef, Options, Routes};
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
    /// The ci.yml file.
    #[arg(value_name = "FILE")]
    file: String,
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
    }
}

fn render(a: RenderArgs) -> ExitCode {
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
            Err(e) => return fail(&e),
        };
        match PlanCatalogue::from_json(&text) {
            Ok(c) => opts.plans = Some(c),
            Err(e) => return fail(&format!("landscape: {p}: {e}")),
        }
    }
    if let Some(p) = &a.image_map {
        let text = match read(p) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return fail(&e),
        };
        match landscape_k8s::image_map_from_yaml(&text) {
            Ok(m) => opts.image_map = m,
            Err(e) => return fail(&format!("landscape: {p}:{e}")),
        }
    }
    let bytes = match read(&a.file) {
        Ok(b) => b,
        Err(e) => return fail(&e),
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
        return ExitCode::from(1);
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
            let yaml = out.to_yaml();
            if std::io::stdout().write_all(yaml.as_bytes()).is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(landscape_k8s::Error::Invalid(errors)) => {
            eprint!("{}", diag::render_human(&a.file, &src, &errors));
            eprintln!(
                "failed: {} cannot be rendered for Kubernetes ({} error{}); nothing printed",
                a.file,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
        Err(e) => fail(&format!("landscape: {e}")),
    }
}
