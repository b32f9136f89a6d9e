//! Templates in string values: `${{ vault.NAME }}`, `${{ workspace.id }}` and friends.
//!
//! A template is a list of literal parts and references. Grammar of a reference:
//!
//! ```text
//! ${{ vault.NAME }}              ${{ vault['name-with-dashes'] }}
//! ${{ workspace.id }}            ${{ workspace.devDomain }}
//! ${{ workspace.env['KEY'] }}    ${{ workspace.env.KEY }}
//! ${{ team.id }}
//! ```
//!
//! Whitespace inside `${{ }}` is optional; bracket keys may use `'` or `"` quotes.
//!
//! **Escape:** a string literal inside the braces renders as itself, so a literal `${{` is
//! written `${{ '${{' }}` (the same escape GitHub Actions uses; `''` inside stands for one `'`).
//! Everything outside `${{ }}` is taken as written: shell variables such as `$WORKSPACE_ID`,
//! `${HOME}` or `$$` are never templates.
//!
//! ```
//! use landscape_spec::{Reference, Template};
//! let t = Template::parse("postgres://app:${{ vault['db-pass'] }}@db-${{ workspace.id }}:5432").unwrap();
//! let out: Result<String, ()> = t.render(|r| Ok(match r {
//!     Reference::Vault(name) => format!("<{name}>"),
//!     Reference::WorkspaceId => "42".into(),
//!     _ => String::new(),
//! }));
//! assert_eq!(out.unwrap(), "postgres://app:<db-pass>@db-42:5432");
//! assert_eq!(Template::parse("cost: ${{ '${{' }} x }}").unwrap().as_literal().unwrap(), "cost: ${{ x }}");
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// What a template reference points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// `${{ vault.NAME }}` / `${{ vault['NAME'] }}`: a secret of the landscape's vault scope.
    Vault(String),
    /// `${{ workspace.id }}`.
    WorkspaceId,
    /// `${{ workspace.devDomain }}`.
    WorkspaceDevDomain,
    /// `${{ team.id }}`.
    TeamId,
    /// `${{ workspace.env['KEY'] }}`: a workspace environment variable.
    WorkspaceEnv(String),
}

impl Reference {
    /// The canonical source form, e.g. `${{ vault.DB }}` or `${{ vault['db-pass'] }}`.
    pub fn to_source(&self) -> String {
        match self {
            Reference::Vault(n) => format!("${{{{ vault{} }}}}", member(n)),
            Reference::WorkspaceId => "${{ workspace.id }}".to_string(),
            Reference::WorkspaceDevDomain => "${{ workspace.devDomain }}".to_string(),
            Reference::TeamId => "${{ team.id }}".to_string(),
            Reference::WorkspaceEnv(k) => format!("${{{{ workspace.env{} }}}}", member(k)),
        }
    }

    /// Whether this is a vault (secret) reference.
    pub fn is_secret(&self) -> bool {
        matches!(self, Reference::Vault(_))
    }
}

fn member(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{name}")
    } else {
        format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_source())
    }
}

/// One part of a template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// Text taken as written (escapes already applied).
    Literal(String),
    /// A reference, to be replaced at render time.
    Ref(Reference),
}

/// A string with embedded references. Serialises as its source text.
///
/// Equality and hashing compare the parts ([`Template::parts`]).
#[derive(Clone, Debug, Default)]
pub struct Template {
    parts: Parts,
}

/// The parts of a template. Most templates are one literal (or one reference): that part is
/// kept inline, so a parsed value costs one allocation, not two.
#[derive(Clone, Debug, Default)]
enum Parts {
    #[default]
    Empty,
    One(Part),
    Many(Vec<Part>),
}

impl Parts {
    fn as_slice(&self) -> &[Part] {
        match self {
            Parts::Empty => &[],
            Parts::One(p) => std::slice::from_ref(p),
            Parts::Many(v) => v,
        }
    }

    fn from_vec(mut v: Vec<Part>) -> Parts {
        match v.len() {
            0 => Parts::Empty,
            1 => Parts::One(v.pop().expect("one part")),
            _ => Parts::Many(v),
        }
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for Template {}

impl std::hash::Hash for Template {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

/// Why a template could not be parsed. `offset` is the byte offset of the problem in the string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Byte offset of the offending `${{` (or of the bad token) in the input.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

impl Template {
    /// A template with no references.
    pub fn literal(s: impl Into<String>) -> Template {
        let s = s.into();
        if s.is_empty() {
            Template::default()
        } else {
            Template {
                parts: Parts::One(Part::Literal(s)),
            }
        }
    }

    /// A template from its parts, in order. Adjacent literals are merged and empty ones
    /// dropped, as [`Template::parse`] does, so equal texts give equal templates.
    pub fn from_parts(parts: impl IntoIterator<Item = Part>) -> Template {
        let mut out: Vec<Part> = Vec::new();
        for p in parts {
            match (out.last_mut(), p) {
                (_, Part::Literal(l)) if l.is_empty() => {}
                (Some(Part::Literal(prev)), Part::Literal(l)) => prev.push_str(&l),
                (_, p) => out.push(p),
            }
        }
        Template {
            parts: Parts::from_vec(out),
        }
    }

    /// The literal parts and references, in order (adjacent literals merged; empty for an
    /// empty string).
    pub fn parts(&self) -> &[Part] {
        self.parts.as_slice()
    }

    /// Parses a string; returns the first malformed reference as an error.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        if !s.contains("${{") {
            // The common case: plain text, one exactly sized part.
            return Ok(Template::literal(s));
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while let Some(rel) = s[i..].find("${{") {
            let at = i + rel;
            lit.push_str(&s[i..at]);
            let inner_start = at + 3;
            let rest = &s[inner_start..];
            let trimmed = rest.trim_start_matches([' ', '\t']);
            let lead = rest.len() - trimmed.len();
            if let Some(body) = trimmed.strip_prefix('\'') {
                // `${{ 'text' }}`: a literal (`''` inside stands for one `'`).
                let (text, used) = quoted_literal(body).ok_or_else(|| TemplateError {
                    offset: at,
                    message: "unterminated string literal in template".into(),
                    help: "close it with `'`; write `''` for a quote inside".into(),
                })?;
                let after = &body[used..];
                let after_trim = after.trim_start_matches([' ', '\t']);
                if !after_trim.starts_with("}}") {
                    return Err(TemplateError {
                        offset: inner_start + lead + 1 + used,
                        message: "expected `}}` after the string literal".into(),
                        help: "a literal is written `${{ '...' }}`".into(),
                    });
                }
                lit.push_str(&text);
                i = s.len() - after_trim.len() + 2;
                continue;
            }
            let Some(close_rel) = rest.find("}}") else {
                return Err(TemplateError {
                    offset: at,
                    message: "unterminated template: `${{` without a closing `}}`".into(),
                    help: "close it with `}}`; for a literal `${{` write `${{ '${{' }}`".into(),
                });
            };
            let r = parse_reference(&rest[..close_rel], inner_start)?;
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(Part::Ref(r));
            i = inner_start + close_rel + 2;
        }
        lit.push_str(&s[i..]);
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Template {
            parts: Parts::from_vec(parts),
        })
    }

    /// Whether the template has no references.
    pub fn is_literal(&self) -> bool {
        self.parts().iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The literal text if the template has no references.
    pub fn as_literal(&self) -> Option<String> {
        if self.is_literal() {
            Some(self.to_string())
        } else {
            None
        }
    }

    /// The references, in order of appearance.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.parts().iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Literal(_) => None,
        })
    }

    /// Renders the template, asking `resolve` for the value of every reference.
    pub fn render<E>(
        &self,
        mut resolve: impl FnMut(&Reference) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for p in self.parts() {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Ref(r) => out.push_str(&resolve(r)?),
            }
        }
        Ok(out)
    }

    /// The source form: literals re-escaped (`${{` as `$${{`), references canonical.
    pub fn to_source(&self) -> String {
        let mut out = String::new();
        for p in self.parts() {
            match p {
                Part::Literal(l) => out.push_str(&escape_literal(l)),
                Part::Ref(r) => out.push_str(&r.to_source()),
            }
        }
        out
    }
}

/// Whether `s` contains `${{` (a cheap check before [`Template::parse`]).
pub fn has_template(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'$') {
        let at = i + p;
        if b.get(at + 1) == Some(&b'{') && b.get(at + 2) == Some(&b'{') {
            return true;
        }
        i = at + 1;
    }
    false
}

/// Escapes `${{` in a literal (as `${{ '${{' }}`) so that it parses back as the same literal.
pub fn escape_literal(l: &str) -> String {
    l.replace("${{", "${{ '${{' }}")
}

/// Reads a `'...'` literal body (after the opening quote); returns the text and the bytes used
/// including the closing quote.
fn quoted_literal(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == '\'' {
            if let Some((_, '\'')) = it.peek() {
                it.next();
                out.push('\'');
                continue;
            }
            return Some((out, i + 1));
        }
        out.push(c);
    }
    None
}

/// The literal text with references shown in source form (for messages).
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.parts() {
            match p {
                Part::Literal(l) => f.write_str(l)?,
                Part::Ref(r) => f.write_str(&r.to_source())?,
            }
        }
        Ok(())
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_source())
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }
    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        for (i, c) in self.s[self.pos..].char_indices() {
            if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                self.pos = start + i;
                return &self.s[start..self.pos];
            }
        }
        self.pos = self.s.len();
        &self.s[start..]
    }
    fn err(&self, message: impl Into<String>, help: impl Into<String>) -> TemplateError {
        self.err_at(self.pos, message, help)
    }
    fn err_at(
        &self,
        pos: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> TemplateError {
        TemplateError {
            offset: self.base + pos,
            message: message.into(),
            help: help.into(),
        }
    }
    /// `.name` or `['name']`; `None` at the end.
    fn member(&mut self) -> Result<Option<String>, TemplateError> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        if rest.starts_with('.') {
            self.pos += 1;
            let id = self.ident();
            if id.is_empty() {
                return Err(self.err(
                    "expected a name after `.`",
                    "write `.NAME`, or `['NAME']` for names with other characters",
                ));
            }
            return Ok(Some(id.to_string()));
        }
        if rest.starts_with('[') {
            self.pos += 1;
            self.skip_ws();
            let q = self.s[self.pos..].chars().next();
            let Some(q @ ('\'' | '"')) = q else {
                return Err(self.err("expected a quoted key after `[`", "write `['NAME']`"));
            };
            self.pos += 1;
            let mut name = String::new();
            let mut chars = self.s[self.pos..].char_indices();
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            self.err("unterminated quoted key", "close it with a quote and `]`")
                        )
                    }
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => name.push(c),
                        None => {
                            return Err(self
                                .err("unterminated quoted key", "close it with a quote and `]`"))
                        }
                    },
                    Some((i, c)) if c == q => {
                        self.pos += i + 1;
                        break;
                    }
                    Some((_, c)) => name.push(c),
                }
            }
            self.skip_ws();
            if !self.s[self.pos..].starts_with(']') {
                return Err(self.err("expected `]` after the quoted key", "write `['NAME']`"));
            }
            self.pos += 1;
            if name.is_empty() {
                return Err(self.err("empty key in `['']`", "name the entry"));
            }
            return Ok(Some(name));
        }
        Err(self.err(
            format!(
                "unexpected `{}` in template",
                rest.chars().next().unwrap_or(' ')
            ),
            "a reference looks like `vault.NAME`, `workspace.id` or `workspace.env['KEY']`",
        ))
    }
}

fn parse_reference(inner: &str, base: usize) -> Result<Reference, TemplateError> {
    let mut c = Cursor {
        s: inner,
        pos: 0,
        base,
    };
    c.skip_ws();
    let root_at = c.pos;
    let root = c.ident();
    let expected_roots = "expected one of vault, workspace, team";
    let r = match root {
        "" => {
            return Err(TemplateError {
                offset: base + root_at,
                message: "empty template `${{ }}`".into(),
                help: format!("{expected_roots}, e.g. `${{{{ vault.NAME }}}}`"),
            })
        }
        "vault" => match c.member()? {
            Some(n) => Reference::Vault(n),
            None => {
                return Err(c.err(
                    "`vault` needs a secret name",
                    "write `vault.NAME` or `vault['name']`",
                ))
            }
        },
        "team" => match (c.pos, c.member()?.as_deref()) {
            (_, Some("id")) => Reference::TeamId,
            (at, Some(other)) => {
                return Err(c.err_at(
                    at + 1,
                    format!("unknown member `team.{other}`"),
                    "expected one of: id",
                ))
            }
            (_, None) => return Err(c.err("`team` needs a member", "expected one of: id")),
        },
        "workspace" => match (c.pos, c.member()?.as_deref()) {
            (_, Some("id")) => Reference::WorkspaceId,
            (_, Some("devDomain")) => Reference::WorkspaceDevDomain,
            (_, Some("env")) => match c.member()? {
                Some(k) => Reference::WorkspaceEnv(k),
                None => {
                    return Err(c.err(
                        "`workspace.env` needs a key",
                        "write `workspace.env['KEY']`",
                    ))
                }
            },
            (at, Some(other)) => {
                return Err(c.err_at(
                    at + 1,
                    format!("unknown member `workspace.{other}`"),
                    "expected one of: id, devDomain, env",
                ))
            }
            (_, None) => {
                return Err(c.err(
                    "`workspace` needs a member",
                    "expected one of: id, devDomain, env",
                ))
            }
        },
        other => {
            return Err(TemplateError {
                offset: base + root_at,
                message: format!("unknown template root `{other}`"),
                help: expected_roots.to_string(),
            })
        }
    };
    c.skip_ws();
    if c.pos < inner.len() {
        return Err(c.err(
            format!(
                "unexpected `{}` after the reference",
                &inner[c.pos..].trim_end()
            ),
            "one reference per `${{ }}`",
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_reference_forms() {
        let t = Template::parse(
            "${{ vault.A }}${{vault['b-c']}} ${{ workspace.id }}/${{ workspace.devDomain }}/${{ team.id }}/${{ workspace.env['K'] }}/${{ workspace.env.L }}",
        )
        .unwrap();
        let refs: Vec<_> = t.references().cloned().collect();
        assert_eq!(
            refs,
            vec![
                Reference::Vault("A".into()),
                Reference::Vault("b-c".into()),
                Reference::WorkspaceId,
                Reference::WorkspaceDevDomain,
                Reference::TeamId,
                Reference::WorkspaceEnv("K".into()),
                Reference::WorkspaceEnv("L".into()),
            ]
        );
    }

    #[test]
    fn shell_variables_are_literals() {
        let t = Template::parse("echo $WORKSPACE_ID ${HOME} $$ ${ {").unwrap();
        assert!(t.is_literal());
        assert_eq!(t.to_string(), "echo $WORKSPACE_ID ${HOME} $$ ${ {");
    }

    #[test]
    fn escape_round_trips() {
        let t = Template::parse("a ${{ '${{' }} b }} c ${{ 'it''s' }}").unwrap();
        assert_eq!(t.as_literal().unwrap(), "a ${{ b }} c it's");
        assert_eq!(Template::parse(&t.to_source()).unwrap(), t);
        // a `$` right before a reference stays a `$`
        let t = Template::parse("$${{ vault.X }}").unwrap();
        assert_eq!(t.parts()[0], Part::Literal("$".into()));
        assert_eq!(Template::parse(&t.to_source()).unwrap(), t);
    }

    #[test]
    fn errors_name_the_problem_and_offset() {
        let e = Template::parse("x ${{ vault.A").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("unterminated"));
        let e = Template::parse("ab${{ secrets.A }}").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.help.contains("expected one of vault, workspace, team"));
        let e = Template::parse("${{ workspace.name }}").unwrap_err();
        assert!(e.message.contains("workspace.name"), "{e:?}");
        assert!(Template::parse("${{ vault.A vault.B }}").is_err());
        assert!(Template::parse("${{ }}").is_err());
        assert!(Template::parse("${{ vault['x }}").is_err());
    }

    #[test]
    fn render_uses_resolver() {
        let t = Template::parse("u=${{ vault.U }}").unwrap();
        let r: Result<String, String> = t.render(|r| Err(format!("missing {r}")));
        assert_eq!(r.unwrap_err(), "missing ${{ vault.U }}");
    }
}
