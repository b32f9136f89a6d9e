//! `landscape exec`: run one command in a rootless container, like `podman run --rm`.

use landscape::runtime::{
    image, InstanceSpec, Limits, PortPolicy, Process, Rootfs, Runtime, RuntimeConfig, User,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `landscape exec`.
#[derive(clap::Args)]
pub struct Args {
    /// The app directory, mounted read-write at /home/user/app (persists across runs).
    #[arg(long, value_name = "DIR")]
    app: Option<PathBuf>,
    /// Base image: `host`, `oci-layout:PATH[:TAG]`, `oci-archive:PATH[:TAG]`,
    /// `docker-archive:PATH[:TAG]` (`docker save`), `rootfs:PATH` (an unpacked root
    /// filesystem) or a registry reference (`127.0.0.1:5000/busybox:latest`, `postgres:16`).
    #[arg(long, default_value = "host", value_name = "IMAGE")]
    image: String,
    /// Plan id whose limits (memory, cpu, pids) the instance gets; needs --plans.
    #[arg(long, value_name = "ID", requires = "plans")]
    plan: Option<u64>,
    /// Plan catalogue (JSON array of {id, title, cpu, memory, ...}).
    #[arg(long, value_name = "FILE")]
    plans: Option<PathBuf>,
    /// Container user (runAsUser[:runAsGroup]); default 0:0.
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Mount a part of the app directory (repeatable): WORKSPACE_PATH:MOUNT_PATH.
    #[arg(long = "mount", value_name = "WORKSPACE_PATH:MOUNT_PATH")]
    mounts: Vec<String>,
    /// Hostname inside the container (default "landscape").
    #[arg(long)]
    hostname: Option<String>,
    /// Allow binding ports below 1024 (Managed Container policy).
    #[arg(long)]
    privileged_ports: bool,
    #[command(flatten)]
    images: ImageArgs,
    /// The command and its arguments (default: the image's entrypoint + cmd).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("landscape exec: {msg}");
    ExitCode::from(2)
}

/// Where images come from: the options `landscape exec` and `landscape up` share.
#[derive(clap::Args, Clone)]
pub struct ImageArgs {
    /// Image cache directory (default $TMPDIR/landscape-images-<uid>, shared by
    /// `landscape exec` and `landscape up`).
    #[arg(long, value_name = "DIR")]
    pub image_cache: Option<PathBuf>,
    /// Trust this CA (PEM) for HTTPS registries, besides the system's (repeatable). HTTPS
    /// registries need the `tls` feature; credentials come from $REGISTRY_AUTH_FILE or
    /// ~/.docker/config.json.
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
    /// Allow plain HTTP to this registry (`host:port`; loopback registries always may).
    #[arg(long = "registry-insecure", value_name = "HOST")]
    pub registry_insecure: Vec<String>,
}

impl ImageArgs {
    /// The image cache directory.
    pub fn cache(&self) -> PathBuf {
        self.image_cache
            .clone()
            .unwrap_or_else(image::default_cache_dir)
    }

    /// How registries are reached.
    pub fn registry(&self) -> image::RegistryOptions {
        image::RegistryOptions {
            ca_files: self.registry_ca.clone(),
            insecure: self.registry_insecure.clone(),
            ..Default::default()
        }
    }

    /// The same options on another `landscape` command line.
    pub fn forward(&self, cmd: &mut std::process::Command) {
        if let Some(c) = &self.image_cache {
            cmd.arg("--image-cache").arg(c);
        }
        for c in &self.registry_ca {
            cmd.arg("--registry-ca").arg(c);
        }
        for r in &self.registry_insecure {
            cmd.arg("--registry-insecure").arg(r);
        }
    }
}

/// Runs `landscape exec`.
pub fn run(args: Args) -> ExitCode {
    let runtime = match Runtime::new(RuntimeConfig::default()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let user = match args.user.as_deref().map(parse_user).transpose() {
        Ok(u) => u.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let mut process = Process::default();
    let mut spec_rootfs = Rootfs::Host;
    let mut image_user = None;
    if args.image != "host" {
        let reference = match image::ImageRef::parse(&args.image) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let store = image::ImageStore::new(args.images.cache(), runtime.idmap())
            .with_registry(args.images.registry());
        let mut report = |p: image::Progress| eprintln!("landscape exec: {p}");
        let img = match store.resolve(&reference, &mut report) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        spec_rootfs = Rootfs::Dir(img.rootfs.clone());
        process = img.config.process();
        image_user = img.config.user();
    }
    if !args.command.is_empty() {
        process.args = args.command.clone();
    }
    if process.args.is_empty() {
        return fail(
            "no command given and the image has no entrypoint or cmd; add `-- CMD [ARG...]`",
        );
    }
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                process.env.retain(|(ek, _)| ek != k);
                process.env.push((k.to_string(), v.to_string()));
            }
            _ => return fail(format!("--env {kv:?}: expected KEY=VALUE")),
        }
    }
    let mut spec = InstanceSpec::new("exec", process);
    spec.rootfs = spec_rootfs;
    spec.user = if args.user.is_some() {
        user
    } else {
        image_user.unwrap_or(user)
    };
    spec.hostname = Some(args.hostname.clone().unwrap_or_else(|| "landscape".into()));
    if args.privileged_ports {
        spec.ports = PortPolicy::AllowPrivileged;
    }
    if let Some(app) = &args.app {
        let app = match std::fs::canonicalize(app) {
            Ok(a) if a.is_dir() => a,
            _ => return fail(format!("--app {}: not a directory", app.display())),
        };
        spec.app_dir = Some(app.clone());
        for m in &args.mounts {
            let Some((ws, mp)) = m.split_once(':') else {
                return fail(format!("--mount {m:?}: expected WORKSPACE_PATH:MOUNT_PATH"));
            };
            if let Err(e) = spec.volume(&app, ws, mp) {
                return fail(e);
            }
        }
    } else if !args.mounts.is_empty() {
        return fail("--mount needs --app (mount paths are parts of the app directory)");
    }
    if let Some(id) = args.plan {
        let Some(file) = &args.plans else {
            return fail("--plan needs --plans FILE");
        };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => return fail(format!("--plans {}: {e}", file.display())),
        };
        let cat = match landscape::spec::PlanCatalogue::from_json(&text) {
            Ok(c) => c,
            Err(e) => return fail(format!("--plans {}: {e}", file.display())),
        };
        let Some(plan) = cat.get(id) else {
            return fail(format!(
                "--plan {id}: not in {}; expected one of {:?}",
                file.display(),
                cat.ids()
            ));
        };
        if let Err(reason) = runtime.limits_support() {
            eprintln!("landscape exec: plan {id} limits are not enforced: {reason}");
        }
        spec.limits = Some(Limits::from_plan(plan));
    }
    match runtime.run_foreground(&spec, &mut |_| {}) {
        Ok(exit) => {
            if let Some(e) = &exit.error {
                eprintln!("landscape exec: {e}");
            }
            if exit.oom_killed {
                eprintln!("landscape exec: out of memory: the plan's memory limit was reached");
            }
            if exit.error.is_some() && exit.code == Some(125) {
                return ExitCode::from(2);
            }
            ExitCode::from(exit.status_code().clamp(0, 255) as u8)
        }
        Err(e) => fail(e),
    }
}

fn parse_user(s: &str) -> Result<User, String> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    match (u.parse(), g.parse()) {
        (Ok(uid), Ok(gid)) => Ok(User { uid, gid }),
        _ => Err(format!("--user {s:?}: expected UID[:GID] (numbers)")),
    }
}

/// Hook that must run first in `main`: the runtime's helper-process entry point. No fork
/// server: nothing in this CLI calls `Runtime::spawn` (`exec` runs its instance in the
/// foreground from this single-threaded process), so the fork would be wasted.
pub fn early_init() {
    // `up` starts many instances from a multi-threaded host: it wants the fork server.
    let fork_server = std::env::args().nth(1).as_deref() == Some("up");
    landscape::runtime::init_with(landscape::runtime::InitOptions { fork_server });
}
