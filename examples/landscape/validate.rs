//! `landscape validate`, `landscape upgrade`, `landscape schema`.

use landscape::spec::{self, diag, Diagnostic, ParseOptions, PlanCatalogue};
use std::io::Write;
use std::process::ExitCode;

/// Output format of `landscape validate`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OutputFormat {
    /// rustc-like snippets with a caret under each problem.
    Human,
    /// One JSON array of {file, line, column, endLine, endColumn, severity, code, message, help}.
    Json,
    /// GitHub Actions annotations (::error file=F,line=L,col=C::message).
    Github,
}

/// Arguments of `landscape validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: OutputFormat,
    /// A plan catalogue (JSON array of {id, title, cpu, memory, disk, onDemand, maxReplicas, deprecated})
    /// to check plan ids and replica counts against.
    #[arg(long, value_name = "FILE")]
    plans: Option<String>,
    /// The ci.yml files to check (a directory stands for its ci.yml).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
}

/// Arguments of `landscape upgrade`.
#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// The ci.yml file to upgrade to the newest schema.
    #[arg(value_name = "FILE")]
    file: String,
}

/// Arguments of `landscape schema`.
#[derive(clap::Args)]
pub struct SchemaArgs {}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("landscape: cannot read {path}: {e}"))
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

/// Runs `landscape validate`.
pub fn run_validate(a: ValidateArgs) -> ExitCode {
    let mut opts = ParseOptions::default();
    if let Some(p) = &a.plans {
        let text = match read(p) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return usage_error(&e),
        };
        match PlanCatalogue::from_json(&text) {
            Ok(c) => opts.plans = Some(c),
            Err(e) => return usage_error(&format!("landscape: {p}: {e}")),
        }
    }
    let mut any_error = false;
    let mut json = Vec::new();
    let mut out = String::new();
    let (mut errors, mut warnings) = (0usize, 0usize);
    for f in &a.files {
        // A landscape directory stands for its ci.yml (as `landscape up DIR`).
        let dir_file;
        let f = if std::path::Path::new(f).is_dir() {
            dir_file = std::path::Path::new(f).join("ci.yml").display().to_string();
            &dir_file
        } else {
            f
        };
        let bytes = match read(f) {
            Ok(b) => b,
            Err(e) => return usage_error(&e),
        };
        let parsed = spec::parse_with(f, &bytes, &opts);
        any_error |= parsed.has_errors();
        let diags: &[Diagnostic] = &parsed.diagnostics;
        errors += parsed.errors().count();
        warnings += parsed.warnings().count();
        match a.format {
            OutputFormat::Human => {
                let src = String::from_utf8_lossy(&bytes);
                out.push_str(&diag::render_human(f, &src, diags));
            }
            OutputFormat::Json => json.extend(diag::to_json(f, diags)),
            OutputFormat::Github => out.push_str(&diag::render_github(f, diags)),
        }
    }
    match a.format {
        OutputFormat::Json => {
            out = serde_json::to_string_pretty(&json).unwrap_or_default();
            out.push('\n');
        }
        OutputFormat::Human => {
            let files = a.files.len();
            let s = |n: usize| if n == 1 { "" } else { "s" };
            out.push_str(&format!(
                "{}: {files} file{} checked, {errors} error{}, {warnings} warning{}\n",
                if any_error { "failed" } else { "ok" },
                s(files),
                s(errors),
                s(warnings)
            ));
        }
        OutputFormat::Github => {}
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    ExitCode::from(u8::from(any_error))
}

/// Runs `landscape upgrade`: upgraded YAML on stdout, change notes on stderr.
pub fn run_upgrade(a: UpgradeArgs) -> ExitCode {
    let bytes = match read(&a.file) {
        Ok(b) => b,
        Err(e) => return usage_error(&e),
    };
    let parsed = spec::parse_bytes(&a.file, &bytes);
    let src = String::from_utf8_lossy(&bytes);
    let landscape = match parsed.ok() {
        Some(l) => l,
        None => {
            let errs: Vec<Diagnostic> = parsed.errors().cloned().collect();
            eprint!("{}", diag::render_human(&a.file, &src, &errs));
            eprintln!(
                "landscape: {} has errors; fix them before upgrading",
                a.file
            );
            return ExitCode::from(1);
        }
    };
    let up = spec::upgrade(landscape);
    let _ = std::io::stdout().write_all(spec::emit::to_yaml(&up.landscape).as_bytes());
    for c in &up.changes {
        eprintln!(
            "{}:{}:{}: {}",
            a.file, c.span.start.line, c.span.start.col, c.message
        );
    }
    if up.changes.is_empty() {
        eprintln!(
            "{}: already at {}; nothing to change",
            a.file,
            spec::SchemaVersion::LATEST
        );
    }
    if src.lines().any(|l| l.trim_start().starts_with('#')) {
        eprintln!("note: comments of {} are not carried over", a.file);
    }
    ExitCode::SUCCESS
}

/// Runs `landscape schema`.
pub fn run_schema(_a: SchemaArgs) -> ExitCode {
    let s = serde_json::to_string_pretty(&spec::schema::json_schema()).unwrap_or_default();
    let _ = writeln!(std::io::stdout(), "{s}");
    ExitCode::SUCCESS
}
