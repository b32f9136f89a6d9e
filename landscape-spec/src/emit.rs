//! Writes a model back as YAML (block style; strings quoted only where needed). Comments and
//! anchors of the original are not kept. Reading the output gives back an equal model.

use crate::model::*;
use crate::template::Template;
use crate::yaml::{resolve_plain, Resolved};
use std::fmt::Write as _;

/// Renders a landscape as YAML.
pub fn to_yaml(l: &Landscape) -> String {
    let mut o = String::new();
    if l.schema_version.value != SchemaVersion::V0_1 {
        let _ = writeln!(o, "schemaVersion: {}", l.schema_version.value);
    }
    stage(&mut o, "prepare", &l.prepare);
    stage(&mut o, "test", &l.test);
    match &l.run {
        Run::Steps(st) => stage(&mut o, "run", st),
        Run::Services(m) if m.is_empty() => o.push_str("run: {}\n"),
        Run::Services(m) => {
            o.push_str("run:\n");
            for (name, s) in m {
                block_entry(&mut o, 2, name, "");
                service(&mut o, s, 4);
            }
        }
    }
    o
}

/// A scalar as YAML: plain when that reads back as the same string, else double-quoted.
pub fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_alphanumeric()
        || matches!(first, '/' | '.' | '_' | '$' | '(' | '+' | '~' | '=' | ';'))
    {
        return false;
    }
    if s.ends_with([' ', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s.contains([
            '\n', '\r', '\t', '"', '\'', '{', '}', '[', ']', ',', '#', '`', '\\',
        ])
    {
        return false;
    }
    if s.chars().any(needs_escape) {
        return false;
    }
    matches!(resolve_plain(s), Resolved::Str(_))
}

/// Characters YAML does not allow raw (outside its printable set) or that readers mangle.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// A double-quoted YAML string.
pub fn quoted(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// YAML limits implicit keys to 1024 characters; longer keys are written as explicit keys
/// (`? key` then `: value`).
const MAX_IMPLICIT_KEY: usize = 1000;

fn long_key(written: &str) -> bool {
    written.len() > MAX_IMPLICIT_KEY && written.chars().count() > MAX_IMPLICIT_KEY
}

/// A block mapping entry `key: value` at `indent` (`value` empty: the value follows on the next
/// lines, indented deeper).
fn block_entry(o: &mut String, indent: usize, key: &str, value: &str) {
    let k = scalar(key);
    let p = pad(indent);
    if long_key(&k) {
        let _ = writeln!(o, "{p}? {k}");
        if value.is_empty() {
            let _ = writeln!(o, "{p}:");
        } else {
            let _ = writeln!(o, "{p}: {value}");
        }
    } else if value.is_empty() {
        let _ = writeln!(o, "{p}{k}:");
    } else {
        let _ = writeln!(o, "{p}{k}: {value}");
    }
}

/// A flow mapping key with its `:` (explicit `? key :` when too long for an implicit key).
fn flow_key(key: &str) -> String {
    let k = quoted(key);
    if long_key(&k) {
        format!("? {k} :")
    } else {
        format!("{k}:")
    }
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

fn stage(o: &mut String, name: &str, st: &Stage) {
    let _ = writeln!(o, "{name}:");
    steps(o, "steps", &st.steps, 2);
}

fn steps(o: &mut String, key: &str, steps: &[Step], ind: usize) {
    if steps.is_empty() {
        let _ = writeln!(o, "{}{key}: []", pad(ind));
        return;
    }
    let _ = writeln!(o, "{}{key}:", pad(ind));
    for st in steps {
        match &st.name {
            Some(n) => {
                let _ = writeln!(o, "{}- name: {}", pad(ind + 2), scalar(n));
                let _ = writeln!(o, "{}  command: {}", pad(ind + 2), scalar(&st.command));
            }
            None => {
                let _ = writeln!(o, "{}- command: {}", pad(ind + 2), scalar(&st.command));
            }
        }
    }
}

fn tpl(t: &Template) -> String {
    scalar(&t.to_source())
}

/// JSON as a YAML flow value.
pub fn json_flow(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quoted(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(json_flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{} {}", flow_key(k), json_flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn service(o: &mut String, s: &Service, ind: usize) {
    let p = pad(ind);
    let start_len = o.len();
    let line = |o: &mut String, text: String| {
        let _ = writeln!(o, "{p}{text}");
    };
    if let Some(plan) = &s.plan {
        match &plan.value {
            Plan::Id(id) => line(o, format!("plan: {id}")),
            Plan::Managed(m) => {
                let mut parts = Vec::new();
                if let Some(id) = &m.id {
                    parts.push(format!("id: {}", id.value));
                }
                if let Some(params) = &m.parameters {
                    let inner: Vec<String> = params
                        .iter()
                        .map(|(k, v)| format!("{} {}", flow_key(k), json_flow(v)))
                        .collect();
                    parts.push(format!("parameters: {{{}}}", inner.join(", ")));
                }
                line(o, format!("plan: {{{}}}", parts.join(", ")));
            }
        }
    }
    if let Some(pr) = &s.provider {
        let mut parts = Vec::new();
        if let Some(n) = &pr.name {
            parts.push(format!("name: {}", quoted(n)));
        }
        if let Some(v) = &pr.version {
            parts.push(format!("version: {}", quoted(v)));
        }
        if let Some(v) = &pr.schema_version {
            parts.push(format!("schemaVersion: {}", quoted(v)));
        }
        line(o, format!("provider: {{{}}}", parts.join(", ")));
    }
    if let Some(c) = &s.config {
        let inner: Vec<String> = c
            .iter()
            .map(|(k, v)| format!("{} {}", flow_key(k), json_flow(v)))
            .collect();
        line(o, format!("config: {{{}}}", inner.join(", ")));
    }
    if let Some(sec) = &s.secrets {
        let inner: Vec<String> = sec
            .iter()
            .map(|(k, v)| format!("{} {}", flow_key(k), quoted(&v.to_source())))
            .collect();
        line(o, format!("secrets: {{{}}}", inner.join(", ")));
    }
    if let Some(b) = &s.backups {
        line(o, format!("backups: {}", json_flow(b)));
    }
    if let Some(i) = &s.image {
        line(o, format!("image: {}", scalar(i)));
    }
    if let Some(i) = &s.base_image {
        line(o, format!("baseImage: {}", scalar(i)));
    }
    if let Some(c) = &s.command {
        line(
            o,
            format!(
                "command: [{}]",
                c.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    if let Some(r) = &s.replicas {
        line(o, format!("replicas: {}", r.value));
    }
    if let Some(b) = &s.is_public {
        line(o, format!("isPublic: {}", b.value));
    }
    if let Some(h) = &s.health_endpoint {
        line(o, format!("healthEndpoint: {}", scalar(h)));
    }
    if let Some(env) = &s.env {
        if env.is_empty() {
            line(o, "env: {}".into());
        } else {
            line(o, "env:".into());
            for (k, v) in env {
                block_entry(o, ind + 2, k, &tpl(&v.value));
            }
        }
    }
    if let Some(n) = &s.network {
        network(o, n, ind);
    }
    if let Some(u) = &s.run_as_user {
        line(o, format!("runAsUser: {}", u.value));
    }
    if let Some(g) = &s.run_as_group {
        line(o, format!("runAsGroup: {}", g.value));
    }
    if let Some(vms) = &s.volume_mounts {
        if vms.is_empty() {
            line(o, "volumeMounts: []".into());
        }
        for (i, vm) in vms.iter().enumerate() {
            if i == 0 {
                line(o, "volumeMounts:".into());
            }
            line(o, format!("  - name: {}", scalar(&vm.name)));
            line(o, format!("    mountPath: {}", scalar(&vm.mount_path)));
            if let Some(w) = &vm.workspace_path {
                line(o, format!("    workspacePath: {}", quoted(w)));
            }
        }
    }
    if let Some(m) = &s.mount_sub_path {
        line(o, format!("mountSubPath: {}", quoted(m)));
    }
    if let Some(st) = &s.steps {
        steps(o, "steps", st, ind);
    }
    if o.len() == start_len {
        // An empty service: turn the `name:` line into `name: {}`.
        o.truncate(o.len() - 1);
        o.push_str(" {}\n");
    }
}

fn network(o: &mut String, n: &Network, ind: usize) {
    let p = pad(ind);
    let mut body = String::new();
    if !n.ports.is_empty() || n.written.ports.is_some() {
        if n.ports.is_empty() {
            let _ = writeln!(body, "{p}  ports: []");
        } else {
            let _ = writeln!(body, "{p}  ports:");
        }
        for port in &n.ports {
            let _ = write!(body, "{p}    - port: {}", port.port.value);
            if let Some(b) = &port.is_public {
                let _ = write!(body, "\n{p}      isPublic: {}", b.value);
            }
            body.push('\n');
        }
    }
    if !n.paths.is_empty() || n.written.paths.is_some() {
        if n.paths.is_empty() {
            let _ = writeln!(body, "{p}  paths: []");
        } else {
            let _ = writeln!(body, "{p}  paths:");
        }
        for path in &n.paths {
            let _ = writeln!(body, "{p}    - path: {}", scalar(&path.path));
            if let Some(port) = &path.port {
                let _ = writeln!(body, "{p}      port: {}", port.value);
            }
            if let Some(s) = &path.strip_path {
                let _ = writeln!(body, "{p}      stripPath: {}", s.value);
            }
            if let Some(t) = &path.target {
                let _ = writeln!(body, "{p}      target: {}", tpl(t));
            }
        }
    }
    if let Some(lp) = &n.legacy_path {
        let _ = writeln!(body, "{p}  path: {}", scalar(lp));
    }
    if let Some(s) = &n.legacy_strip_path {
        let _ = writeln!(body, "{p}  stripPath: {}", s.value);
    }
    if body.is_empty() {
        let _ = writeln!(o, "{p}network: {{}}");
    } else {
        let _ = writeln!(o, "{p}network:");
        o.push_str(&body);
    }
}
