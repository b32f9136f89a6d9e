//! Diagnostics: every problem found in a file, with a stable code, a severity and a location.

use crate::span::Span;
use serde::Serialize;
use std::fmt::Write as _;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth fixing; the file is still accepted.
    Warning,
    /// The file is rejected.
    Error,
}

impl Severity {
    /// `error` / `warning`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A second location that explains a diagnostic ("first defined here").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Related {
    /// Where.
    pub span: Span,
    /// What is there.
    pub message: String,
}

/// One problem in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// A stable code (see [`codes`]).
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The primary location.
    pub span: Span,
    /// An optional second location.
    pub related: Option<Related>,
    /// What is wrong, naming the thing.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            span,
            related: None,
            message: message.into(),
            help: None,
        }
    }

    /// A warning.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a related location.
    pub fn with_related(mut self, span: Span, message: impl Into<String>) -> Self {
        self.related = Some(Related {
            span,
            message: message.into(),
        });
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The stable diagnostic codes. Errors and warnings never share a code.
pub mod codes {
    /// The bytes are not valid YAML (or not UTF-8, or contain a NUL).
    pub const YAML_SYNTAX: &str = "yaml-syntax";
    /// The file exceeds a configured limit (size, depth, aliases).
    pub const LIMIT: &str = "limit-exceeded";
    /// The same key twice in one mapping.
    pub const DUPLICATE_KEY: &str = "duplicate-key";
    /// A value of the wrong type.
    pub const WRONG_TYPE: &str = "wrong-type";
    /// A key the schema does not know.
    pub const UNKNOWN_KEY: &str = "unknown-key";
    /// A required key is missing.
    pub const MISSING_KEY: &str = "missing-key";
    /// `schemaVersion` is not one of the known versions.
    pub const SCHEMA_VERSION: &str = "unknown-schema-version";
    /// v0.1 (flat `run.steps`) and v0.2+ (`run.<service>`) shapes mixed up.
    pub const SHAPE_MISMATCH: &str = "schema-shape-mismatch";
    /// A service name that is not a DNS label.
    pub const SERVICE_NAME: &str = "invalid-service-name";
    /// A number out of its range (ports, replicas, ids).
    pub const OUT_OF_RANGE: &str = "out-of-range";
    /// Fields that exclude each other (`steps` + `command`, `image` + `baseImage`, legacy `path` + `paths`).
    pub const CONFLICT: &str = "conflicting-fields";
    /// A route path that does not start with `/`.
    pub const PATH_FORMAT: &str = "invalid-path";
    /// Two routes claim the same prefix.
    pub const DUPLICATE_ROUTE: &str = "duplicate-route";
    /// The same port declared twice.
    pub const DUPLICATE_PORT: &str = "duplicate-port";
    /// `paths[].port` missing outside a headless route.
    pub const MISSING_PORT: &str = "missing-route-port";
    /// A volume mount that is not valid (`name`, `mountPath`, `workspacePath`).
    pub const VOLUME_MOUNT: &str = "invalid-volume-mount";
    /// A malformed `${{ }}` template.
    pub const TEMPLATE: &str = "invalid-template";
    /// A managed service without `provider.name` or `plan.id`.
    pub const MANAGED_SERVICE: &str = "incomplete-managed-service";
    /// A plan id not in the catalogue.
    pub const UNKNOWN_PLAN: &str = "unknown-plan";
    /// More replicas than the plan allows.
    pub const TOO_MANY_REPLICAS: &str = "too-many-replicas";
    /// A `healthEndpoint` that does not parse.
    pub const HEALTH_ENDPOINT: &str = "invalid-health-endpoint";
    /// Warning: the legacy network form (`network.path`).
    pub const W_LEGACY_NETWORK: &str = "legacy-network";
    /// Warning: `paths[].port` not declared under `ports`.
    pub const W_UNDECLARED_PORT: &str = "undeclared-route-port";
    /// Warning: a service nothing routes to.
    pub const W_NO_ROUTE: &str = "no-route";
    /// Warning: the default health endpoint port 3000 is not declared.
    pub const W_HEALTH_PORT: &str = "health-port-undeclared";
    /// Warning: service-level `isPublic` beside `ports`/`paths`.
    pub const W_REDUNDANT_PUBLIC: &str = "service-is-public-ignored";
    /// Warning: a deprecated spelling (`baseImage`, `mountSubPath`, `provider.version`).
    pub const W_DEPRECATED: &str = "deprecated";
    /// Warning: an empty command.
    pub const W_EMPTY_COMMAND: &str = "empty-command";
    /// Warning: a secret-looking env key with a literal value.
    pub const W_LITERAL_SECRET: &str = "literal-secret";
    /// Warning: an image without a tag, or `:latest`.
    pub const W_IMAGE_TAG: &str = "unpinned-image";
    /// Warning: a Reactive declaring a port below 1024.
    pub const W_PRIVILEGED_PORT: &str = "privileged-port";
    /// Warning: a plan marked deprecated in the catalogue.
    pub const W_DEPRECATED_PLAN: &str = "deprecated-plan";
}

/// Output formats for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// rustc-like, with a source snippet and a caret under the span.
    Human,
    /// One JSON object per diagnostic (see [`to_json`]).
    Json,
    /// GitHub Actions workflow commands (`::error file=F,line=L,col=C::message`).
    Github,
}

fn line_text(src: &str, line: u32) -> Option<&str> {
    if line == 0 {
        return None;
    }
    src.split('\n')
        .nth(line as usize - 1)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Renders diagnostics like rustc: header, `--> file:line:col`, the source line, carets, help.
pub fn render_human(file: &str, src: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let _ = writeln!(out, "{}[{}]: {}", d.severity.as_str(), d.code, d.message);
        snippet(&mut out, file, src, d.span, None);
        if let Some(r) = &d.related {
            snippet(&mut out, file, src, r.span, Some(&r.message));
        }
        if let Some(h) = &d.help {
            let pad = " ".repeat(d.span.start.line.to_string().len());
            let _ = writeln!(out, "{pad} = help: {h}");
        }
        out.push('\n');
    }
    out
}

/// Longest part of a source line a snippet shows (a minified or binary file can have a
/// line of megabytes); longer lines are cut around the column, marked with `…`.
const SHOWN_CHARS: u32 = 120;

fn snippet(out: &mut String, file: &str, src: &str, span: Span, label: Option<&str>) {
    let s = span.start;
    let _ = writeln!(out, "  --> {file}:{}:{}", s.line, s.col);
    let Some(text) = line_text(src, s.line) else {
        return;
    };
    let num = s.line.to_string();
    let pad = " ".repeat(num.len());
    let width = text.chars().count() as u32;
    let start = s.col.max(1);
    let end = if span.end.line == s.line && span.end.col > start {
        span.end.col.min(width + 1)
    } else {
        (width + 1).max(start + 1)
    };
    // The window of the line shown: all of it, or SHOWN_CHARS from a little before start.
    let first = if width <= SHOWN_CHARS {
        0
    } else {
        (start - 1)
            .saturating_sub(SHOWN_CHARS / 3)
            .min(width - SHOWN_CHARS)
    };
    let last = (first + SHOWN_CHARS).min(width);
    let (before, after) = (first > 0, last < width);
    // Tabs as one space, and control characters and invisible format characters (bidi
    // overrides, zero-width ones) as U+FFFD, keep the carets aligned and the text honest.
    let shown: String = text
        .chars()
        .skip(first as usize)
        .take((last - first) as usize)
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}') =>
            {
                '\u{fffd}'
            }
            c => c,
        })
        .collect();
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(
        out,
        "{num} | {}{shown}{}",
        if before { "…" } else { "" },
        if after { "…" } else { "" }
    );
    let lead = start.saturating_sub(first + 1) + u32::from(before);
    let carets = "^".repeat(end.min(last + 1).saturating_sub(start).max(1) as usize);
    let _ = writeln!(
        out,
        "{pad} | {}{carets}{}",
        " ".repeat(lead as usize),
        label.map(|l| format!(" {l}")).unwrap_or_default()
    );
}

/// One JSON object per diagnostic:
/// `{file, line, column, endLine, endColumn, severity, code, message, help}`.
pub fn to_json(file: &str, diags: &[Diagnostic]) -> Vec<serde_json::Value> {
    diags
        .iter()
        .map(|d| {
            let mut v = serde_json::json!({
                "file": file,
                "line": d.span.start.line,
                "column": d.span.start.col,
                "endLine": d.span.end.line,
                "endColumn": d.span.end.col,
                "severity": d.severity.as_str(),
                "code": d.code,
                "message": d.message,
                "help": d.help,
            });
            if let Some(r) = &d.related {
                v["related"] = serde_json::json!({
                    "line": r.span.start.line, "column": r.span.start.col, "message": r.message
                });
            }
            v
        })
        .collect()
}

fn gh_escape(s: &str, prop: bool) -> String {
    let mut o = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if prop {
        o = o.replace(':', "%3A").replace(',', "%2C");
    }
    o
}

/// GitHub Actions workflow commands, one line per diagnostic.
pub fn render_github(file: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let kind = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut msg = format!("[{}] {}", d.code, d.message);
        if let Some(h) = &d.help {
            msg.push_str(" (help: ");
            msg.push_str(h);
            msg.push(')');
        }
        let _ = writeln!(
            out,
            "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            gh_escape(file, true),
            d.span.start.line,
            d.span.start.col,
            d.span.end.line,
            d.span.end.col,
            gh_escape(d.code, true),
            gh_escape(&msg, false)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Pos;

    fn one(src: &str, start: (u32, u32), end: (u32, u32)) -> String {
        let d = Diagnostic::error(
            "E",
            Span::new(Pos::new(start.0, start.1), Pos::new(end.0, end.1)),
            "bad",
        );
        render_human("ci.yml", src, &[d])
    }

    /// The source line and the caret line of a rendering.
    fn lines(out: &str) -> (String, String) {
        let l: Vec<&str> = out.lines().collect();
        (l[3].to_string(), l[4].to_string())
    }

    #[test]
    fn a_short_line_is_shown_whole_with_carets_under_the_span() {
        let (text, carets) = lines(&one("key: value\n", (1, 6), (1, 11)));
        assert_eq!(text, "1 | key: value");
        assert_eq!(carets, "  |      ^^^^^");
    }

    #[test]
    fn a_long_line_is_cut_around_the_column_and_the_carets_stay_under_it() {
        let line = format!("{}XYZ{}", "a".repeat(5000), "b".repeat(5000));
        let out = one(&line, (1, 5001), (1, 5004));
        let (text, carets) = lines(&out);
        assert!(out.len() < 600, "{} bytes", out.len());
        assert!(text.starts_with("1 | …a") && text.ends_with("b…"), "{text}");
        // The carets point at XYZ in the shown text.
        let at = carets.find('^').unwrap();
        let shown: Vec<char> = text.chars().collect();
        assert_eq!(
            shown[at..at + 3].iter().collect::<String>(),
            "XYZ",
            "{text}\n{carets}"
        );
        assert_eq!(carets.matches('^').count(), 3);
        // At the start and at the end of a long line: one ellipsis only.
        let (text, carets) = lines(&one(&line, (1, 1), (1, 1)));
        assert!(text.starts_with("1 | aaa") && text.ends_with('…'), "{text}");
        // (An empty span underlines the rest of the line: here the rest that is shown.)
        assert_eq!(carets, format!("  | {}", "^".repeat(SHOWN_CHARS as usize)));
        let (text, _) = lines(&one(&line, (1, 10003), (1, 10003)));
        assert!(text.starts_with("1 | …") && text.ends_with("bbb"), "{text}");
    }

    #[test]
    fn control_characters_of_the_line_are_not_printed() {
        let (text, carets) = lines(&one("a\u{1b}[31m\u{7}b: 1\n", (1, 7), (1, 8)));
        assert_eq!(text, "1 | a\u{fffd}[31m\u{fffd}b: 1");
        assert_eq!(carets, "  |       ^");
        let (text, _) = lines(&one("k\u{202e}x\u{200b}: 1\n", (1, 1), (1, 2)));
        assert_eq!(text, "1 | k\u{fffd}x\u{fffd}: 1");
    }
}
