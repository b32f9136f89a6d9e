//! `landscape vault`: manage secrets. Argument parsing only; the logic is
//! `landscape_vault::cli` (tested there).

use landscape_vault::cli::{self, BackendKind, Command, Io, Options};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `landscape vault`.
#[derive(clap::Args)]
pub struct Args {
    /// Store directory of the embedded backend [default: $LANDSCAPE_VAULT_DIR, else
    /// ~/.local/share/landscape/vault]. Keep it outside the app directory.
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The scope (team, workspace...) whose secrets to use.
    #[arg(long, global = true, value_name = "S", default_value = "default")]
    scope: String,
    /// A shared scope this scope may read (repeatable); deny by default.
    #[arg(long = "share", global = true, value_name = "S")]
    shared: Vec<String>,
    /// Key file (32 bytes or 64 hex digits) [default: $LANDSCAPE_VAULT_PASSPHRASE, else
    /// the key file ~/.local/share/landscape/vault.key, which the first `set` creates].
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Backend: `file` (embedded, default) or `openbao` (token from $BAO_TOKEN).
    #[arg(long, global = true, value_name = "KIND", default_value = "file", value_parser = ["file", "openbao"])]
    backend: String,
    /// OpenBao address [default: $BAO_ADDR, else http://127.0.0.1:8200].
    #[arg(long, global = true, value_name = "URL")]
    addr: Option<String>,
    /// OpenBao KV v2 mount [default: secret].
    #[arg(long, global = true, value_name = "PATH")]
    mount: Option<String>,
    /// Who acts, for the audit log [default: $USER].
    #[arg(long, global = true, value_name = "NAME")]
    actor: Option<String>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Store a secret; the value is read from stdin (never from arguments).
    Set {
        /// The secret's name.
        name: String,
        /// Only write if the current version is N (0: only if it does not exist).
        #[arg(long, value_name = "N")]
        cas: Option<u64>,
    },
    /// Print a secret's value.
    Get {
        /// The secret's name (SCOPE/NAME for a shared scope).
        name: String,
        /// A kept older version.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// List names and versions (never values).
    List,
    /// Delete a secret and all its versions.
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Re-encrypt under a new data key; with --new-key-file or $LANDSCAPE_VAULT_NEW_PASSPHRASE,
    /// re-wrap under a new master key instead.
    RotateKey {
        /// The new key file (created with 32 random bytes if it does not exist).
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditSub,
    },
    /// Check that every vault reference in a ci.yml resolves (missing ones as file:line:col).
    Check {
        /// The ci.yml file.
        file: PathBuf,
    },
}

#[derive(clap::Subcommand)]
enum AuditSub {
    /// Verify the HMAC chain of the audit log.
    Verify,
}

/// Runs `landscape vault`.
pub fn run(args: Args) -> ExitCode {
    let opts = Options {
        store: args.store,
        scope: Some(args.scope),
        shared: args.shared,
        backend: if args.backend == "openbao" {
            BackendKind::OpenBao
        } else {
            BackendKind::File
        },
        addr: args.addr,
        mount: args.mount,
        key_file: args.key_file,
        actor: args.actor,
    };
    let cmd = match args.command {
        Sub::Set { name, cas } => Command::Set { name, cas },
        Sub::Get { name, version } => Command::Get { name, version },
        Sub::List => Command::List,
        Sub::Rm { name } => Command::Rm { name },
        Sub::RotateKey { new_key_file } => Command::RotateKey { new_key_file },
        Sub::Audit {
            command: AuditSub::Verify,
        } => Command::AuditVerify,
        Sub::Check { file } => Command::Check { file },
    };
    let env = |k: &str| std::env::var(k).ok();
    let (mut stdin, mut stdout, mut stderr) = (
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        std::io::stderr().lock(),
    );
    let mut io = Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
        env: &env,
    };
    ExitCode::from(cli::run(&opts, &cmd, &mut io))
}
