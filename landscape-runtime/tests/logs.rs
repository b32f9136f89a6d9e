//! Instance logs: private files (0600 in a 0700 directory, rotated files too) and the
//! redaction hook (a planted secret, raw and base64, never reaches a file or a subscriber).
//! Runs as root and as an unprivileged user (scripts/test.d/runtime.sh).

mod common;

use common::TempDir;
use landscape_runtime::{InstanceSpec, LogConfig, Output, Process};
use std::os::unix::fs::PermissionsExt;

fn main() {
    common::run(&[
        ("log_files_are_private", log_files_are_private),
        (
            "planted_secret_never_reaches_the_log",
            planted_secret_never_reaches_the_log,
        ),
    ]);
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn log_files_are_private() {
    let rt = common::runtime();
    let tmp = TempDir::new("logperm");
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = LogConfig::new(&dir);
    cfg.max_bytes = 300;
    cfg.keep = 2;
    let spec = InstanceSpec::new(
        "logperm",
        Process::shell(
            "i=0; while [ $i -lt 60 ]; do echo line $i; echo err $i >&2; i=$((i+1)); done",
        ),
    );
    let mut inst = rt.spawn(&spec, Output::Logs(cfg)).unwrap();
    assert!(inst.wait().unwrap().success());
    assert_eq!(mode(&dir), 0o700, "log directory narrowed to 0700");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "rotation happened: {files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{} is not 0600", f.display());
    }
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn planted_secret_never_reaches_the_log() {
    let rt = common::runtime();
    let tmp = TempDir::new("logsecret");
    let secret = "s3cr3t-Planted-Value-42";
    let encoded = b64(secret.as_bytes());
    let (s1, e1) = (secret.to_string(), encoded.clone());
    let cfg = LogConfig::new(tmp.path())
        .with_redact(move |line| line.replace(&s1, "[redacted]").replace(&e1, "[redacted]"));
    let mut spec = InstanceSpec::new(
        "logsecret",
        Process::shell("echo token=$API_TOKEN; printf %s \"$API_TOKEN\" | base64; echo done"),
    );
    spec.process.env.push(("API_TOKEN".into(), secret.into()));
    assert!(
        !format!("{spec:?}").contains(secret),
        "Debug prints the env value"
    );
    let mut inst = rt.spawn(&spec, Output::Logs(cfg)).unwrap();
    let mut rx = inst.subscribe_logs().unwrap();
    assert!(inst.wait().unwrap().success());
    let mut seen = Vec::new();
    while let Ok(l) = rx.try_recv() {
        seen.push(l.text);
    }
    let file = std::fs::read_to_string(inst.log_path().unwrap()).unwrap();
    assert!(file.contains("token=[redacted]"), "{file}");
    assert!(file.contains("done"));
    for text in seen.iter().map(String::as_str).chain([file.as_str()]) {
        assert!(!text.contains(secret) && !text.contains(&encoded), "{text}");
    }
    assert!(
        seen.iter().any(|l| l == "[redacted]"),
        "base64 form redacted: {seen:?}"
    );
}
