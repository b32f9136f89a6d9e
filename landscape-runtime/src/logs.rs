//! Instance logs: stdout/stderr become timestamped lines tagged with their stream, written
//! to a size-rotated per-instance log file (so a host that restarts can still read them)
//! and broadcast to async subscribers.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC timestamp with milliseconds.
    pub timestamp: String,
    /// The stream.
    pub stream: Stream,
    /// The text, without the trailing newline.
    pub text: String,
}

/// A redaction hook: called on the text of every log line (stdout and stderr, without the
/// newline) before the line is written to the log file or sent to subscribers, and its
/// result is what both see. landscape-vault's redactor (over an instance's resolved
/// secrets, raw and encoded) fits it; the runtime itself never imports the vault.
pub type Redact = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Where and how much to log. Log files are created 0600 in a 0700 directory.
#[derive(Clone)]
pub struct LogConfig {
    /// Directory of the log files; the instance writes `<dir>/<instance-id>.log`.
    pub dir: PathBuf,
    /// Rotate when the file exceeds this size (the previous file becomes `.log.1`, ...).
    pub max_bytes: u64,
    /// How many rotated files to keep.
    pub keep: u32,
    /// Applied to every line's text before it is written or broadcast (see [`Redact`]);
    /// `None` logs lines as printed.
    pub redact: Option<Redact>,
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("keep", &self.keep)
            .field("redact", &self.redact.as_ref().map(|_| Hook))
            .finish()
    }
}

/// Shown for a redaction hook in [`LogConfig`]'s `Debug` output.
struct Hook;

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hook>")
    }
}

impl LogConfig {
    /// Logs into `dir` with 10 MiB files, 3 kept.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            max_bytes: 10 << 20,
            keep: 3,
            redact: None,
        }
    }

    /// Sets the redaction hook applied to every line (see [`Redact`]).
    pub fn with_redact(mut self, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.redact = Some(Arc::new(f));
        self
    }
}

/// Adds the path to an io error, keeping its kind.
fn at(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Opens (creating) a log file with mode 0600, narrowing a wider existing one.
fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| at("open log file", path, e))?;
    // The mode above only applies to a new file (and is subject to the umask): narrow an
    // existing one through the open descriptor (fchmod).
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| at("make log file private (0600)", path, e))?;
    Ok(file)
}

/// Creates the log directory (and missing parents) 0700; narrows an existing one of ours
/// that group or others can access. A directory someone else owns is not changed: an
/// error names it.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| at("create log directory", dir, e))?;
    let meta = std::fs::metadata(dir).map_err(|e| at("stat log directory", dir, e))?;
    if meta.mode() & 0o077 != 0 {
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "log directory {} (mode {:04o}) is accessible to others and owned by \
                     uid {}, not by us: make it 0700 or use a directory of our own",
                    dir.display(),
                    meta.mode() & 0o7777,
                    meta.uid()
                ),
            ));
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| at("make log directory private (0700)", dir, e))?;
    }
    Ok(())
}

/// Formats a Unix time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

struct Rotating {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    keep: u32,
}

impl Rotating {
    fn open(path: &Path, max: u64, keep: u32) -> std::io::Result<Self> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max,
            keep,
        })
    }
    fn write_line(&mut self, line: &str) {
        if self.size + line.len() as u64 > self.max && self.size > 0 {
            self.file = None;
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(
                    format!("{}.{i}", self.path.display()),
                    format!("{}.{}", self.path.display(), i + 1),
                );
            }
            if self.keep > 0 {
                let _ = std::fs::rename(&self.path, format!("{}.1", self.path.display()));
            } else {
                let _ = std::fs::remove_file(&self.path);
            }
            self.file = open_private(&self.path).ok();
            self.size = 0;
        }
        if let Some(f) = &mut self.file {
            if f.write_all(line.as_bytes()).is_ok() {
                self.size += line.len() as u64;
            }
        }
    }
}

/// The logging side of one instance: a reader thread per stream.
pub(crate) struct Logs {
    pub(crate) tx: broadcast::Sender<LogLine>,
    pub(crate) path: PathBuf,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Logs {
    pub(crate) fn start(
        cfg: &LogConfig,
        id: &str,
        streams: Vec<(Stream, Box<dyn std::io::Read + Send>)>,
    ) -> std::io::Result<Logs> {
        private_dir(&cfg.dir)?;
        let path = cfg.dir.join(format!("{id}.log"));
        let file = Arc::new(Mutex::new(Rotating::open(&path, cfg.max_bytes, cfg.keep)?));
        let (tx, _) = broadcast::channel(1024);
        let mut threads = Vec::new();
        for (stream, reader) in streams {
            let (file, tx, redact) = (file.clone(), tx.clone(), cfg.redact.clone());
            threads.push(std::thread::spawn(move || {
                let mut r = BufReader::new(reader);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match read_line(&mut r, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let text = finish_line(&buf, redact.as_ref());
                    let line = LogLine {
                        timestamp: rfc3339(std::time::SystemTime::now()),
                        stream,
                        text,
                    };
                    let text = format!("{} {} {}\n", line.timestamp, stream.tag(), line.text);
                    if let Ok(mut f) = file.lock() {
                        f.write_line(&text);
                    }
                    let _ = tx.send(line);
                }
            }));
        }
        Ok(Logs { tx, path, threads })
    }

    /// Waits until both streams reached end of file (the instance and its children closed
    /// them).
    pub(crate) fn finish(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Longest line kept: a process that writes without newlines (a progress bar, binary
/// output) must not make the host buffer without bound. A longer line is cut there and
/// marked with [`CUT`]; the rest of it is dropped.
pub const MAX_LINE: usize = 256 << 10;

/// Read beyond [`MAX_LINE`] before a line is cut, so that redaction sees a secret that
/// crosses the cut whole (secrets are far shorter) before the text is cut.
const SLACK: usize = 64 << 10;

/// Ends a line cut at [`MAX_LINE`].
pub const CUT: &str = " [… cut: line longer than 256 KiB]";

/// Reads one line without its newline into `buf`, at most [`MAX_LINE`] + [`SLACK`] bytes
/// of it (the rest of a longer line is skipped); `Ok(0)` at end of file.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let n = r
        .by_ref()
        .take((MAX_LINE + SLACK) as u64)
        .read_until(b'\n', buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n == MAX_LINE + SLACK {
        // Skip to the end of the line, in bounded pieces.
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let m = r.by_ref().take(64 << 10).read_until(b'\n', &mut rest)?;
            if m == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(n)
}

/// A line as it is written and sent: redacted first, then cut to [`MAX_LINE`] bytes (on a
/// character boundary) and marked with [`CUT`] when longer.
fn finish_line(raw: &[u8], redact: Option<&Redact>) -> String {
    let raw = String::from_utf8_lossy(raw);
    let mut text = match redact {
        Some(r) => r(&raw),
        None => raw.into_owned(),
    };
    if text.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(CUT);
    }
    text
}

/// Parses a log file line written by the runtime back into a [`LogLine`].
pub fn parse_line(line: &str) -> Option<LogLine> {
    let (ts, rest) = line.split_once(' ')?;
    let (tag, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let stream = match tag {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    Some(LogLine {
        timestamp: ts.to_string(),
        stream,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_line_longer_than_the_limit_is_cut_once_and_the_next_line_is_whole() {
        // One byte, then two-byte characters: the limit falls inside a character.
        let mut input = format!("x{}", "é".repeat(MAX_LINE)).into_bytes();
        input.extend_from_slice(b"\nnext\nlast without newline");
        let mut r = BufReader::new(&input[..]);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut r, &mut buf).unwrap() > 0 {
            lines.push(finish_line(&std::mem::take(&mut buf), None));
        }
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with('x'));
        assert!(
            lines[0].ends_with(&format!("é{CUT}")),
            "a whole character before the cut"
        );
        assert_eq!(lines[0].len(), MAX_LINE - 1 + CUT.len());
        assert_eq!(lines[1], "next");
        assert_eq!(lines[2], "last without newline");
        // Exactly the limit is whole.
        let exact = "y".repeat(MAX_LINE);
        assert_eq!(finish_line(exact.as_bytes(), None), exact);
        assert!(CUT.contains(&format!("{} KiB", MAX_LINE >> 10)));
    }
    #[test]
    fn a_secret_across_the_cut_is_redacted_before_the_line_is_cut() {
        let secret = "S3CRET-VALUE-0123456789";
        let line = format!("{}{secret}{}", "a".repeat(MAX_LINE - 5), "b".repeat(100));
        let redact: Redact = Arc::new(move |l: &str| l.replace(secret, "***"));
        let mut r = BufReader::new(line.as_bytes());
        let mut buf = Vec::new();
        read_line(&mut r, &mut buf).unwrap();
        let text = finish_line(&buf, Some(&redact));
        assert!(
            text.ends_with(&format!("a***bb{CUT}")),
            "{}",
            &text[text.len() - 60..]
        );
        assert!(!text.contains("S3CR"));
    }
    #[test]
    fn timestamps_are_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
    #[test]
    fn log_files_rotate_by_size() {
        let dir = std::env::temp_dir().join(format!("landscape-rt-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("i.log");
        let mut r = Rotating::open(&path, 100, 2).unwrap();
        for i in 0..10 {
            r.write_line(&format!("{i:02} {}\n", "x".repeat(36)));
        }
        drop(r);
        let cur = std::fs::read_to_string(&path).unwrap();
        let one = std::fs::read_to_string(dir.join("i.log.1")).unwrap();
        let two = std::fs::read_to_string(dir.join("i.log.2")).unwrap();
        assert!(!dir.join("i.log.3").exists());
        assert!(cur.starts_with("08 ") && cur.contains("\n09 "), "{cur}");
        assert!(
            one.starts_with("06 ") && two.starts_with("04 "),
            "{one} {two}"
        );
        assert!(cur.len() <= 100 && one.len() <= 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn existing_wide_files_and_dirs_are_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let top = std::env::temp_dir().join(format!("landscape-rt-narrow-{}", std::process::id()));
        let dir = top.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!((mode(&top.join("a")), mode(&dir)), (0o700, 0o700));
        set(&dir, 0o755);
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("x.log");
        std::fs::write(&file, "old\n").unwrap();
        set(&file, 0o666);
        drop(open_private(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn debug_hides_the_hook() {
        let cfg = LogConfig::new("/l").with_redact(|s| s.replace("k", "*"));
        let d = format!("{cfg:?}");
        assert!(d.contains("redact: Some(<hook>)"), "{d}");
        assert!(format!("{:?}", LogConfig::new("/l")).contains("redact: None"));
        assert_eq!(cfg.redact.as_ref().map(|r| r("kk")).as_deref(), Some("**"));
    }

    #[test]
    fn log_lines_round_trip() {
        let l = parse_line("2023-11-14T22:13:20.123Z stderr oops: x y").unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert_eq!(l.text, "oops: x y");
        assert!(parse_line("garbage").is_none());
    }
}
