//! The audit log: append-only JSON lines, each chained to the previous one with HMAC-SHA256.
//!
//! Each line holds who, what, scope, name, version and result (never a value), the MAC of the
//! previous line (`prev`) and its own MAC (`mac`) over all its other fields. Changing, inserting,
//! removing or reordering lines breaks the chain; [`AuditLog::verify`] finds the first bad line.
//! Cutting lines off the end is not detectable from the log alone (see the README's threat model).

use crate::crypto;
use crate::error::{Error, Result};
use crate::file::FileBackend;
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    /// A value was written.
    Set,
    /// A value was read.
    Get,
    /// A secret was deleted.
    Delete,
    /// A key was rotated.
    Rotate,
    /// A landscape's references were resolved.
    Resolve,
}

/// One audit event (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who (user, service, host component).
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The secret's name (or what was rotated / resolved).
    pub name: String,
    /// The version concerned, if any.
    pub version: Option<u64>,
    /// `"ok"`, `"not-found"`, `"denied"`, `"conflict"`, `"error"`.
    pub result: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    ts: u64,
    actor: String,
    action: AuditAction,
    scope: String,
    name: String,
    version: Option<u64>,
    result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gen: Option<u64>,
    prev: String,
    #[serde(default)]
    mac: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit log file with its chain key.
pub struct AuditLog {
    path: PathBuf,
    scope: String,
    key: Zeroizing<[u8; 32]>,
    /// The store generation seen when the log was opened (recorded in each line).
    generation: Option<u64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Number of lines checked.
    pub lines: u64,
    /// The newest store generation recorded in the log (embedded store only).
    pub max_generation: Option<u64>,
}

impl AuditLog {
    /// The audit log of a scope of the embedded store (its key lives wrapped in the store).
    pub fn for_scope(backend: &FileBackend, scope: &str) -> Result<Self> {
        let (key, generation) = backend.audit_key(scope)?;
        Ok(AuditLog {
            path: backend.audit_path(scope),
            scope: scope.to_string(),
            key,
            generation: Some(generation),
        })
    }

    /// An audit log at `path` chained with `key` (for hosts that keep their own).
    pub fn open(path: impl Into<PathBuf>, scope: &str, key: [u8; 32]) -> Self {
        AuditLog {
            path: path.into(),
            scope: scope.to_string(),
            key: Zeroizing::new(key),
            generation: None,
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn line_mac(&self, l: &Line) -> Result<String> {
        let mut c = Line {
            mac: String::new(),
            ..clone_line(l)
        };
        c.mac.clear();
        let bytes =
            serde_json::to_vec(&c).map_err(|e| Error::Crypto(format!("encode audit line: {e}")))?;
        Ok(hex::encode(crypto::mac(
            self.key.as_ref(),
            &[b"landscape-vault/1 audit", &bytes],
        )))
    }

    /// Appends one event, chained to the last line. Takes an exclusive lock on the file.
    pub fn append(&self, ev: &AuditEvent) -> Result<()> {
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| Error::io("open audit log", &self.path, e))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io("lock audit log", &self.path, e.into()))?;
        let (seq, prev) = match last_line(&mut f)
            .map_err(|e| Error::io("read audit log", &self.path, e))?
        {
            None => (1, GENESIS.to_string()),
            Some(text) => {
                let l: Line = serde_json::from_str(&text).map_err(|_| Error::AuditTampered {
                    path: self.path.clone(),
                    line: 0,
                    reason: "the last line does not parse; run `landscape vault audit verify`"
                        .into(),
                })?;
                (l.seq + 1, l.mac)
            }
        };
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut line = Line {
            seq,
            ts,
            actor: ev.actor.clone(),
            action: ev.action,
            scope: self.scope.clone(),
            name: ev.name.clone(),
            version: ev.version,
            result: ev.result.clone(),
            gen: self.generation,
            prev,
            mac: String::new(),
        };
        line.mac = self.line_mac(&line)?;
        let mut out = serde_json::to_vec(&line)
            .map_err(|e| Error::Crypto(format!("encode audit line: {e}")))?;
        out.push(b'\n');
        f.write_all(&out)
            .map_err(|e| Error::io("append to audit log", &self.path, e))?;
        f.sync_data()
            .map_err(|e| Error::io("fsync audit log", &self.path, e))
    }

    /// Checks the whole chain. An absent log verifies as empty.
    pub fn verify(&self) -> Result<AuditReport> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AuditReport {
                    lines: 0,
                    max_generation: None,
                })
            }
            Err(e) => return Err(Error::io("read audit log", &self.path, e)),
        };
        let bad = |line: u64, reason: &str| Error::AuditTampered {
            path: self.path.clone(),
            line,
            reason: reason.to_string(),
        };
        let mut prev = GENESIS.to_string();
        let mut n = 0u64;
        let mut max_gen: Option<u64> = None;
        for raw in text.split(|&b| b == b'\n') {
            if raw.is_empty() {
                continue;
            }
            n += 1;
            let l: Line =
                serde_json::from_slice(raw).map_err(|_| bad(n, "the line does not parse"))?;
            if l.seq != n {
                return Err(bad(
                    n,
                    "the sequence number is out of order (lines removed or inserted)",
                ));
            }
            if l.prev != prev {
                return Err(bad(
                    n,
                    "the chain is broken (a previous line was removed or changed)",
                ));
            }
            let tag = hex::decode(&l.mac).map_err(|_| bad(n, "the MAC is malformed"))?;
            let mut c = clone_line(&l);
            c.mac.clear();
            let bytes = serde_json::to_vec(&c)
                .map_err(|e| Error::Crypto(format!("encode audit line: {e}")))?;
            if !crypto::mac_verify(
                self.key.as_ref(),
                &[b"landscape-vault/1 audit", &bytes],
                &tag,
            ) {
                return Err(bad(n, "the MAC does not match (the line was changed)"));
            }
            max_gen = max_gen.max(l.gen);
            prev = l.mac;
        }
        Ok(AuditReport {
            lines: n,
            max_generation: max_gen,
        })
    }
}

fn clone_line(l: &Line) -> Line {
    Line {
        seq: l.seq,
        ts: l.ts,
        actor: l.actor.clone(),
        action: l.action,
        scope: l.scope.clone(),
        name: l.name.clone(),
        version: l.version,
        result: l.result.clone(),
        gen: l.gen,
        prev: l.prev.clone(),
        mac: l.mac.clone(),
    }
}

/// The last non-empty line of the file, reading backwards in blocks.
fn last_line(f: &mut std::fs::File) -> std::io::Result<Option<String>> {
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut tail = Vec::new();
    let mut pos = len;
    loop {
        let step = pos.min(4096);
        pos -= step;
        f.seek(SeekFrom::Start(pos))?;
        let mut buf = vec![0u8; step as usize];
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if let Some(i) = trimmed.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(
                String::from_utf8_lossy(&trimmed[i + 1..]).into_owned(),
            ));
        }
        if pos == 0 {
            return Ok(Some(String::from_utf8_lossy(trimmed).into_owned()));
        }
    }
}
