//! A small YAML writer for JSON values: block style, keys in the order given, strings quoted
//! whenever a YAML 1.1 or 1.2 reader (kubectl's, PyYAML) could take them for anything else.
//!
//! ```
//! let v = serde_json::json!({"a": {"b": [1, "on", "x y"]}, "c": "line 1\nline 2"});
//! assert_eq!(
//!     landscape_k8s::yaml::to_yaml(&v),
//!     "a:\n  b:\n    - 1\n    - \"on\"\n    - x y\nc: |-\n  line 1\n  line 2\n"
//! );
//! ```

use serde_json::Value;
use std::fmt::Write as _;

/// One YAML document for a JSON value (ends with a newline; no `---`).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0, false),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            scalar(&mut out, other, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A mapping at `ind`; with `inline`, the first key continues the current line (`- key:`).
fn map(out: &mut String, m: &serde_json::Map<String, Value>, ind: usize, inline: bool) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline {
            indent(out, ind);
        }
        string(out, k, ind, true);
        out.push(':');
        value_after_key(out, v, ind);
    }
}

fn value_after_key(out: &mut String, v: &Value, ind: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(out, m, ind + 2, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(out, a, ind + 2);
        }
        other => {
            out.push(' ');
            scalar(out, other, ind + 2);
            out.push('\n');
        }
    }
}

fn seq(out: &mut String, a: &[Value], ind: usize) {
    for v in a {
        indent(out, ind);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                map(out, m, ind + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(out, inner, ind + 2);
            }
            other => {
                out.push(' ');
                scalar(out, other, ind + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar (or an empty collection) on the current line; block strings continue at `ind`.
fn scalar(out: &mut String, v: &Value, ind: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(out, s, ind, false),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn string(out: &mut String, s: &str, ind: usize, key: bool) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if !key && is_block_safe(s) {
        out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, ind);
                out.push_str(line);
            }
        }
    } else {
        // JSON's string syntax is valid YAML double-quoted style.
        out.push_str(&Value::String(s.to_string()).to_string());
    }
}

/// Whether `s` reads back as this string when written unquoted, under YAML 1.1 and 1.2.
pub(crate) fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        // Digits, signs and dots may start numbers, dates or sexagesimals.
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./ :@+=,".contains(c))
    {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') || s.contains(": ") || s.contains(" #") {
        return false;
    }
    const WORDS: [&str; 13] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "~", "=",
    ];
    let lower = s.to_ascii_lowercase();
    !WORDS.contains(&lower.as_str())
}

/// Whether `s` can be written as a literal block scalar (`|` / `|-`) unchanged.
fn is_block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n', '\t'])
        && !s.ends_with("\n\n")
        && !s.contains('\r')
        && s.chars()
            .all(|c| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{feff}'))
        && !s.split('\n').any(|l| l.ends_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "on", "No", "TRUE", "null", "~", "1", "0755", "1:20", "1e3", ".5", "-x", "", "a: b",
            "a #b", "x:", " lead", "500m", "1Gi", "@x", "*a", "&a", "!t", "%x", "{a}", "[a]",
            "'q'", "\"q\"", "a\tb",
        ] {
            assert!(!is_plain_safe(s), "{s:?} must be quoted");
        }
        for s in [
            "web",
            "/api",
            "node:22-alpine",
            "ReplicaSet",
            "app.kubernetes.io/name",
            "x y",
        ] {
            assert!(is_plain_safe(s), "{s:?} can stay plain");
        }
    }

    #[test]
    fn block_strings_keep_their_content() {
        let mut out = String::new();
        string(&mut out, "set -e\necho a\n\necho b", 4, false);
        assert_eq!(out, "|-\n    set -e\n    echo a\n\n    echo b");
        // A leading space on the first line would set the indentation: quoted instead.
        let mut out = String::new();
        string(&mut out, "  a\nb", 4, false);
        assert_eq!(out, "\"  a\\nb\"");
        let mut out = String::new();
        string(&mut out, "a\n  b\n", 2, false);
        assert_eq!(out, "|\n  a\n    b");
    }

    #[test]
    fn nested_sequences_and_maps() {
        // serde_json's map is sorted, so keys come out in order (apiVersion, kind, ...).
        let v = json!({"l": [{"a": 1, "b": [{"c": "d"}]}, [], {}], "e": {}});
        assert_eq!(
            to_yaml(&v),
            "e: {}\nl:\n  - a: 1\n    b:\n      - c: d\n  - []\n  - {}\n"
        );
    }
}
