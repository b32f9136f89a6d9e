//! `landscape up`: run a landscape in the foreground, like `docker compose up`.
//! Argument parsing, secrets and output only; the composition is `landscape::compose`.

use landscape::compose::{Landscape, UpOptions};
use landscape::runtime::{EventKind, Runtime};
use landscape::spec::{self, diag};
use landscape::vault::cli::{BackendKind, Options as VaultOptions};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `landscape up`.
#[derive(clap::Args)]
pub struct Args {
    /// The landscape directory (holds ci.yml; it is the app directory).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The router's listener [default: 127.0.0.1:3000, or the next free port].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Run in the background (not available yet).
    #[arg(short = 'd', long)]
    detach: bool,
    /// Skip the `test` stage.
    #[arg(long)]
    skip_tests: bool,
    /// No way out of the landscape network (by default instances reach the outside and
    /// the host's 127.0.0.1, at the subnet's .2, through slirp4netns).
    #[arg(long)]
    no_egress: bool,
    /// Seconds to wait for every replica to be ready.
    #[arg(long, default_value_t = 120)]
    ready_timeout: u64,
    /// Vault store directory [default: $LANDSCAPE_VAULT_DIR, else ~/.local/share/landscape/vault].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Vault scope of the landscape's secrets.
    #[arg(long, value_name = "S", default_value = "default")]
    scope: String,
    /// Vault key file [default: $LANDSCAPE_VAULT_PASSPHRASE, else the key file
    /// ~/.local/share/landscape/vault.key when it exists].
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("landscape up: {msg}");
    ExitCode::from(code)
}

fn data_home() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
}

/// A DNS label from the directory's name, with a short hash of its path (two checkouts
/// of one project get two landscapes).
fn landscape_name(dir: &Path) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_else(|| "app".into())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    let base = base.trim_matches('-');
    let mut h: u32 = 2166136261;
    for b in dir.to_string_lossy().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!(
        "{}-{:04x}",
        if base.is_empty() { "app" } else { base },
        h & 0xffff
    )
}

fn state_dir(name: &str) -> PathBuf {
    let base = if euid() == 0 {
        PathBuf::from("/run/landscape")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("landscape"))
            .unwrap_or_else(|| std::env::temp_dir().join(format!("landscape-{}", euid())))
    };
    base.join(name)
}

fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// Colours for `service-N |` prefixes (stable per name).
fn colour(name: &str) -> &'static str {
    const C: [&str; 6] = ["36", "33", "32", "35", "34", "31"];
    let h = name
        .bytes()
        .fold(0usize, |a, b| a.wrapping_mul(31) + b as usize);
    C[h % C.len()]
}

struct Printer {
    colour: bool,
}

impl Printer {
    fn line(&self, who: &str, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = if self.colour {
            writeln!(out, "\x1b[{}m{who:>10} |\x1b[0m {text}", colour(who))
        } else {
            writeln!(out, "{who:>10} | {text}")
        };
    }
}

/// Runs `landscape up`.
pub fn run(a: Args) -> ExitCode {
    if a.detach {
        return fail(
            2,
            "-d (a background control process) is not available yet; run `landscape up` in the foreground",
        );
    }
    let dir = match std::fs::canonicalize(&a.dir) {
        Ok(d) => d,
        Err(e) => return fail(2, &format!("{}: {e}", a.dir.display())),
    };
    let file = dir.join("ci.yml");
    let shown = file.display().to_string();
    let src = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(
                2,
                &format!(
                    "no ci.yml in {}; give the landscape directory (`landscape up DIR`)",
                    dir.display()
                ),
            )
        }
        Err(e) => return fail(2, &format!("cannot read {shown}: {e}")),
    };
    let parsed = spec::parse_str(&shown, &src);
    if parsed.has_errors() {
        print!("{}", diag::render_human(&shown, &src, &parsed.diagnostics));
        return fail(1, &format!("{shown} has errors; nothing was started"));
    }
    let warnings: Vec<_> = parsed.warnings().cloned().collect();
    if !warnings.is_empty() {
        eprint!("{}", diag::render_human(&shown, &src, &warnings));
    }
    let Some(model) = parsed.landscape else {
        return fail(1, &format!("{shown} could not be read"));
    };
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(t) => t,
        Err(e) => return fail(2, &format!("cannot start the async runtime: {e}")),
    };
    tokio.block_on(up(a, dir, shown, src, model))
}

async fn resolve_env(
    a: &Args,
    file: &str,
    src: &str,
    model: &spec::Landscape,
) -> Result<
    (
        BTreeMap<String, Vec<(String, String)>>,
        Vec<landscape::vault::SecretValue>,
    ),
    ExitCode,
> {
    use landscape::vault::resolve::{self, Context, ResolveError};
    let needs_vault = model.services().any(|s| {
        s.env().any(|(_, v)| {
            v.value
                .value
                .references()
                .any(|r| matches!(r, spec::Reference::Vault(_)))
        })
    });
    let mut env = BTreeMap::new();
    if !needs_vault {
        for s in model.services() {
            let vars = s
                .env()
                .map(|(k, v)| {
                    let text = v
                        .value
                        .value
                        .render(|_| Ok::<_, ()>(String::new()))
                        .unwrap_or_default();
                    (k.clone(), text)
                })
                .collect();
            env.insert(s.name.value.clone(), vars);
        }
        return Ok((env, Vec::new()));
    }
    let default_key = data_home().map(|d| d.join("landscape/vault.key"));
    let key_file = a.key_file.clone().or_else(|| {
        if std::env::var_os("LANDSCAPE_VAULT_PASSPHRASE").is_some() {
            None
        } else {
            default_key.filter(|k| k.is_file())
        }
    });
    let opts = VaultOptions {
        store: a.store.clone(),
        scope: Some(a.scope.clone()),
        shared: Vec::new(),
        backend: BackendKind::File,
        addr: None,
        mount: None,
        key_file,
        actor: None,
    };
    let (vault, scope) = landscape::vault::cli::open_vault(&opts).map_err(|e| {
        fail(
            2,
            &format!("{file} uses vault secrets, but the vault cannot be opened: {e}"),
        )
    })?;
    let mut ctx = Context::new(scope.clone());
    ctx.workspace_id = Some(String::new());
    ctx.dev_domain = Some(String::new());
    ctx.team_id = Some(String::new());
    match resolve::resolve(&vault, file, model, &ctx).await {
        Ok(r) => {
            let mut secrets = Vec::new();
            for s in r.services {
                // The values that came from the vault are redacted from every log line.
                let secret_keys: Vec<&String> = model
                    .service(&s.service)
                    .into_iter()
                    .flat_map(|svc| svc.env())
                    .filter(|(_, v)| {
                        v.value
                            .value
                            .references()
                            .any(|r| matches!(r, spec::Reference::Vault(_)))
                    })
                    .map(|(k, _)| k)
                    .collect();
                let mut vars = Vec::new();
                for (k, v) in s.vars {
                    vars.push((k.clone(), String::from_utf8_lossy(v.expose()).into_owned()));
                    if secret_keys.contains(&&k) {
                        secrets.push(v);
                    }
                }
                env.insert(s.service, vars);
            }
            Ok((env, secrets))
        }
        Err(ResolveError::Problems(mut p)) => {
            resolve::refine_positions(&mut p, src);
            for problem in &p {
                eprintln!("{problem}");
            }
            Err(fail(
                1,
                &format!(
                    "{} secret reference(s) do not resolve in vault scope {scope:?}; store them with `landscape vault set NAME`; nothing was started",
                    p.len()
                ),
            ))
        }
        Err(ResolveError::Vault(e)) => Err(fail(2, &format!("vault: {e}"))),
    }
}

async fn free_listener(explicit: Option<SocketAddr>) -> SocketAddr {
    if let Some(a) = explicit {
        return a;
    }
    for port in 3000..3100 {
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(a).is_ok() {
            return a;
        }
    }
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn up(a: Args, dir: PathBuf, file: String, src: String, model: spec::Landscape) -> ExitCode {
    let (env, secrets) = match resolve_env(&a, &file, &src, &model).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let runtime = match Runtime::with_defaults() {
        Ok(r) => Arc::new(r),
        Err(e) => return fail(2, &e.to_string()),
    };
    if let Err(e) = runtime.adopt_dir(&dir, Default::default()) {
        return fail(2, &e.to_string());
    }
    let name = landscape_name(&dir);
    let mut opts = UpOptions::new(name.clone(), dir.clone(), state_dir(&name));
    opts.listen = free_listener(a.listen).await;
    opts.run_tests = !a.skip_tests;
    opts.egress = !a.no_egress;
    if !secrets.is_empty() {
        let redactor = Arc::new(landscape::vault::redact::Redactor::new(secrets.iter()));
        opts.redact = Some(Arc::new(move |line: &str| {
            String::from_utf8_lossy(&redactor.redact(line.as_bytes())).into_owned()
        }));
    }
    let printer = Arc::new(Printer {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    });
    // Stage output while `up` runs prepare and test: the supervisor is made inside `up`,
    // so its events are printed as they come through a channel set up by a first task.
    eprintln!("landscape up: {name} from {file}");
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let p2 = printer.clone();
    let printer_task = tokio::spawn(async move {
        while let Some(ev) = ev_rx.recv().await {
            print_event(&p2, ev);
        }
    });
    let started = Landscape::up_with_events(runtime, &model, env, opts, ev_tx).await;
    let land = match started {
        Ok(l) => l,
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), printer_task).await;
            if let landscape::compose::UpError::Stage(f) = &e {
                for l in &f.last_lines {
                    eprintln!("    {l}");
                }
            }
            return fail(1, &format!("{e}; nothing is left running"));
        }
    };
    let ready = land.wait_ready(Duration::from_secs(a.ready_timeout)).await;
    if let Err(e) = ready {
        eprintln!("landscape up: {e}");
        land.down().await;
        return ExitCode::from(1);
    }
    for (path, host) in land.routes() {
        let h = if host.is_empty() {
            String::new()
        } else {
            format!(" (Host: {host})")
        };
        println!("landscape up: ready: http://{}{path}{h}", land.local_addr());
    }
    println!("landscape up: press Ctrl-C to stop");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return fail(2, &format!("cannot handle SIGTERM: {e}")),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("landscape up: stopping");
    land.down().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), printer_task).await;
    eprintln!("landscape up: stopped");
    ExitCode::SUCCESS
}

fn print_event(p: &Printer, ev: landscape::runtime::Event) {
    match ev.kind {
        EventKind::StepStarted { stage, step } => p.line(&stage, &format!("$ {step}")),
        EventKind::StepOutput { stage, line, .. } => p.line(&stage, &line.text),
        EventKind::StepFinished {
            stage,
            step,
            exit_code,
        } if exit_code != 0 => p.line(
            &stage,
            &format!("step {step:?} failed with exit code {exit_code}"),
        ),
        EventKind::Log {
            service,
            replica,
            line,
        } => p.line(&format!("{service}-{replica}"), &line.text),
        EventKind::ReplicaReady { service, replica } => {
            p.line(&format!("{service}-{replica}"), "ready")
        }
        EventKind::ReplicaUnhealthy {
            service,
            replica,
            reason,
        } => p.line(
            &format!("{service}-{replica}"),
            &format!("unhealthy: {reason}"),
        ),
        EventKind::ReplicaExited {
            service,
            replica,
            exit,
        } => p.line(
            &format!("{service}-{replica}"),
            &format!(
                "exited: {}",
                exit.error
                    .clone()
                    .unwrap_or_else(|| format!("status {}", exit.status_code()))
            ),
        ),
        EventKind::ReplicaRestarting {
            service,
            replica,
            in_ms,
            crash_loop,
            ..
        } => p.line(
            &format!("{service}-{replica}"),
            &format!(
                "restarting in {in_ms} ms{}",
                if crash_loop { " (crash loop)" } else { "" }
            ),
        ),
        _ => {}
    }
}
