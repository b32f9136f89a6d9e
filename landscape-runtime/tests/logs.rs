//! Instance logs: private files (0600 in a 0700 directory, rotated files too, whatever the
//! umask) and the redaction hook (a planted secret, raw and base64, never reaches the file
//! or a subscriber). Runs as root and as an unprivileged user (scripts/test.d/runtime.sh).

mod common;

use base64::Engine;
use common::TempDir;
use landscape_runtime::{InstanceSpec, LogConfig, Output, Process};
use nix::sys::stat::{umask, Mode};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn main() {
    common::run(&[
        ("log_files_are_private", log_files_are_private),
        (
            "rotated_log_files_are_private",
            rotated_log_files_are_private,
        ),
        (
            "planted_secret_never_reaches_the_log",
            planted_secret_never_reaches_the_log,
        ),
    ]);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Sets the process umask to 0 until dropped (restored even when the test panics).
struct Umask0(Mode);

impl Umask0 {
    fn new() -> Umask0 {
        Umask0(umask(Mode::empty()))
    }
}

impl Drop for Umask0 {
    fn drop(&mut self) {
        umask(self.0);
    }
}

/// The files of `dir` whose names contain `.log`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".log"))
        .collect();
    v.sort();
    v
}

fn log_files_are_private() {
    let rt = common::runtime();
    let tmp = TempDir::new("logperm");
    // Missing (with a missing parent) and created under umask 0.
    let dir = tmp.path().join("state/logs");
    let spec = InstanceSpec::new(
        "logtest",
        Process::shell("echo out one; echo err one >&2; echo out two; echo err two >&2"),
    );
    let (exit, path) = {
        let _u = Umask0::new();
        let mut inst = rt.spawn(&spec, Output::Logs(LogConfig::new(&dir))).unwrap();
        (inst.wait().unwrap(), inst.log_path().unwrap().to_path_buf())
    };
    assert!(exit.success(), "{exit:?}");
    assert_eq!(mode(&dir), 0o700, "log directory is 0700");
    assert_eq!(
        mode(&tmp.path().join("state")),
        0o700,
        "created parent is 0700"
    );
    assert_eq!(mode(&path), 0o600, "{} is 0600", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    for l in [
        "stdout out one",
        "stderr err one",
        "stdout out two",
        "stderr err two",
    ] {
        assert!(text.contains(l), "{l:?} logged: {text}");
    }
    assert_eq!(log_files(&dir), vec![path]);
    drop(tmp);
}

fn rotated_log_files_are_private() {
    let rt = common::runtime();
    let tmp = TempDir::new("logrot");
    // An existing directory of ours that others can read is narrowed.
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = LogConfig::new(&dir);
    cfg.max_bytes = 200;
    cfg.keep = 2;
    let spec = InstanceSpec::new(
        "logtest",
        Process::shell(
            "i=0; while [ $i -lt 60 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done",
        ),
    );
    let path = {
        let _u = Umask0::new();
        let mut inst = rt.spawn(&spec, Output::Logs(cfg)).unwrap();
        assert!(inst.wait().unwrap().success());
        inst.log_path().unwrap().to_path_buf()
    };
    assert_eq!(mode(&dir), 0o700, "log directory narrowed to 0700");
    let files = log_files(&dir);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let expected: Vec<PathBuf> = ["", ".1", ".2"]
        .iter()
        .map(|s| dir.join(format!("{name}{s}")))
        .collect();
    assert_eq!(files, expected, "current file and two rotated ones");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{} is 0600", f.display());
        assert!(std::fs::metadata(f).unwrap().len() <= 200);
    }
    let last = std::fs::read_to_string(&path).unwrap();
    assert!(
        last.contains("line 59") || last.contains("err 59"),
        "{last}"
    );
    drop(tmp);
}

fn planted_secret_never_reaches_the_log() {
    let rt = common::runtime();
    let tmp = TempDir::new("logsecret");
    let secret = "s3cr3t-Planted-Value-42";
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
    let (s1, e1) = (secret.to_string(), encoded.clone());
    let cfg = LogConfig::new(tmp.path())
        .with_redact(move |line| line.replace(&s1, "[redacted]").replace(&e1, "[redacted]"));
    let mut spec = InstanceSpec::new(
        "logtest",
        Process::shell(
            "echo token=$API_TOKEN; echo b64=$(echo -n $API_TOKEN | base64); \
             echo err=$API_TOKEN >&2; echo done",
        ),
    );
    spec.process.env.push(("API_TOKEN".into(), secret.into()));
    let mut inst = rt.spawn(&spec, Output::Logs(cfg)).unwrap();
    let mut rx = inst.subscribe_logs().unwrap();
    assert!(inst.wait().unwrap().success());
    let mut seen = Vec::new();
    while let Ok(l) = rx.try_recv() {
        seen.push(l.text);
    }
    let file = std::fs::read_to_string(inst.log_path().unwrap()).unwrap();
    for text in seen.iter().map(String::as_str).chain([file.as_str()]) {
        assert!(
            !text.contains(secret) && !text.contains(&encoded),
            "secret leaked: {text}"
        );
    }
    for want in [
        "token=[redacted]",
        "b64=[redacted]",
        "err=[redacted]",
        "done",
    ] {
        assert!(file.contains(want), "{want:?} in the file: {file}");
        assert!(
            seen.iter().any(|l| l == want),
            "{want:?} sent to the subscriber: {seen:?}"
        );
    }
    drop(tmp);
}
