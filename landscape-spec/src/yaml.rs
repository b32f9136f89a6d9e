//! The YAML layer: a spanned document tree built from `saphyr-parser` events, with
//! duplicate-key detection, anchors/aliases/merge keys under a budget, and hard limits on
//! size, nesting depth and scalar length. Building is iterative (an explicit stack), so no
//! input can overflow the call stack.

use crate::diag::{codes, Diagnostic};
use crate::span::{Pos, Span};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::borrow::Cow;
use std::collections::HashMap;

/// Limits applied while reading a file. The defaults are safe for untrusted input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes (default 4 MiB).
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences (default 64).
    pub max_depth: usize,
    /// Most nodes that aliases may add by expansion, in total (default 100,000).
    pub max_alias_nodes: usize,
    /// Longest scalar, in bytes (default 1 MiB).
    pub max_scalar_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 << 20,
            max_depth: 64,
            max_alias_nodes: 100_000,
            max_scalar_bytes: 1 << 20,
        }
    }
}

/// The style a scalar was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: subject to type resolution (`true`, `42`, `null`).
    Plain,
    /// Quoted or block scalar: always a string.
    Quoted,
}

/// A node of the document tree.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    /// What the node holds.
    pub kind: NodeKind<'a>,
    /// Where it was written (for an alias: where the alias was written).
    pub span: Span,
}

/// The content of a node.
#[derive(Clone, Debug)]
pub enum NodeKind<'a> {
    /// A scalar, with its text and style.
    Scalar(Cow<'a, str>, Style),
    /// A sequence.
    Seq(Vec<Node<'a>>),
    /// A mapping: keys are scalars, in file order, without duplicates.
    Map(Vec<(Node<'a>, Node<'a>)>),
}

/// A resolved plain scalar (YAML 1.2 core schema).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved<'s> {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// Anything else.
    Str(&'s str),
}

impl<'a> Node<'a> {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// Resolves a scalar's type: quoted scalars are always strings.
    pub fn resolve(&self) -> Option<Resolved<'_>> {
        match &self.kind {
            NodeKind::Scalar(s, Style::Quoted) => Some(Resolved::Str(s)),
            NodeKind::Scalar(s, Style::Plain) => Some(resolve_plain(s)),
            _ => None,
        }
    }

    /// A short description of the node's type for messages ("a mapping", "the string \"x\"").
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Map(_) => "a mapping".into(),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Scalar(..) => match self.resolve() {
                Some(Resolved::Null) => "null (an empty value)".into(),
                Some(Resolved::Bool(b)) => format!("the boolean {b}"),
                Some(Resolved::Int(i)) => format!("the number {i}"),
                Some(Resolved::Float(f)) => format!("the number {f}"),
                Some(Resolved::Str(s)) => {
                    let short: String = s.chars().take(40).collect();
                    let ell = if s.chars().count() > 40 { "…" } else { "" };
                    format!("the string \"{short}{ell}\"")
                }
                None => "a value".into(),
            },
        }
    }

    /// Compares two trees: structure, scalar text and style, and every node's start position
    /// (and a plain scalar's end). Returns the first difference.
    #[doc(hidden)]
    pub fn diff(&self, other: &Node<'_>) -> Option<String> {
        let mut stack = vec![(self, other)];
        while let Some((a, b)) = stack.pop() {
            if a.span.start != b.span.start {
                return Some(format!(
                    "start {} vs {} ({:?} / {:?})",
                    a.span.start,
                    b.span.start,
                    a.kind_name(),
                    b.kind_name()
                ));
            }
            match (&a.kind, &b.kind) {
                (NodeKind::Scalar(x, sx), NodeKind::Scalar(y, sy)) => {
                    if x != y || sx != sy {
                        return Some(format!(
                            "scalar at {}: {x:?} ({sx:?}) vs {y:?} ({sy:?})",
                            a.span.start
                        ));
                    }
                    if *sx == Style::Plain && !x.is_empty() && a.span.end != b.span.end {
                        return Some(format!("end of {x:?}: {} vs {}", a.span.end, b.span.end));
                    }
                }
                (NodeKind::Seq(x), NodeKind::Seq(y)) => {
                    if x.len() != y.len() {
                        return Some(format!(
                            "list at {}: {} vs {} items",
                            a.span.start,
                            x.len(),
                            y.len()
                        ));
                    }
                    stack.extend(x.iter().zip(y.iter()));
                }
                (NodeKind::Map(x), NodeKind::Map(y)) => {
                    if x.len() != y.len() {
                        return Some(format!(
                            "mapping at {}: {} vs {} entries",
                            a.span.start,
                            x.len(),
                            y.len()
                        ));
                    }
                    for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
                        stack.push((ka, kb));
                        stack.push((va, vb));
                    }
                }
                _ => {
                    return Some(format!(
                        "kind at {}: {} vs {}",
                        a.span.start,
                        a.kind_name(),
                        b.kind_name()
                    ))
                }
            }
        }
        None
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Scalar(..) => "scalar",
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "mapping",
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar(..) => 1,
            NodeKind::Seq(v) => 1 + v.iter().map(Node::count).sum::<usize>(),
            NodeKind::Map(v) => 1 + v.iter().map(|(k, v)| k.count() + v.count()).sum::<usize>(),
        }
    }

    /// Converts to JSON (for the JSON Schema check and for `config` values).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Scalar(..) => match self.resolve() {
                Some(Resolved::Null) | None => Value::Null,
                Some(Resolved::Bool(b)) => Value::Bool(b),
                Some(Resolved::Int(i)) => i64::try_from(i)
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(i as f64)),
                Some(Resolved::Float(f)) => serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                Some(Resolved::Str(s)) => Value::String(s.to_string()),
            },
            NodeKind::Seq(v) => Value::Array(v.iter().map(Node::to_json).collect()),
            NodeKind::Map(v) => Value::Object(
                v.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub fn resolve_plain(s: &str) -> Resolved<'_> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        _ => {}
    }
    let b = s.as_bytes();
    let first = b[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Resolved::Str(s);
    }
    if let Some(h) = s.strip_prefix("0x") {
        if let Ok(i) = i128::from_str_radix(h, 16) {
            return Resolved::Int(i);
        }
    }
    if let Some(o) = s.strip_prefix("0o") {
        if let Ok(i) = i128::from_str_radix(o, 8) {
            return Resolved::Int(i);
        }
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i128>() {
            return Resolved::Int(i);
        }
    }
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let float_like = digits
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|c| c.is_ascii_digit());
    if float_like {
        if let Ok(f) = s.parse::<f64>() {
            return Resolved::Float(f);
        }
    }
    Resolved::Str(s)
}

fn pos(m: &saphyr_parser::Marker) -> Pos {
    Pos::new(
        u32::try_from(m.line()).unwrap_or(u32::MAX),
        u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    )
}

fn span(s: &saphyr_parser::Span) -> Span {
    Span::new(pos(&s.start), pos(&s.end))
}

enum Frame<'a> {
    Seq {
        start: Pos,
        anchor: usize,
        items: Vec<Node<'a>>,
    },
    Map {
        start: Pos,
        anchor: usize,
        entries: Vec<(Node<'a>, Node<'a>)>,
        key: Option<Node<'a>>,
        merges: Vec<Node<'a>>,
        index: Option<KeyIndex>,
    },
}

/// Why reading stopped early (the diagnostics say where).
pub struct Fatal;

/// Checks the raw bytes: UTF-8, no NUL or other disallowed control characters, a size limit.
/// Returns the text without a leading byte-order mark.
pub fn check_bytes<'b>(
    bytes: &'b [u8],
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Result<&'b str, Fatal> {
    check_bytes_scanned(bytes, limits, diags).map(|(text, _)| text)
}

/// [`check_bytes`], also returning what the scan of the text found.
pub(crate) fn check_bytes_scanned<'b>(
    bytes: &'b [u8],
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Result<(&'b str, TextFacts), Fatal> {
    within_size(bytes.len(), limits, diags)?;
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let p = pos_of_offset(std::str::from_utf8(good).unwrap_or_default(), good.len());
            diags.push(
                Diagnostic::error(
                    codes::YAML_SYNTAX,
                    Span::at(p),
                    format!(
                        "invalid UTF-8 (byte 0x{:02x} at offset {})",
                        bytes[e.valid_up_to()],
                        e.valid_up_to()
                    ),
                )
                .with_help("save the file as UTF-8"),
            );
            return Err(Fatal);
        }
    };
    check_text(text, limits, diags)
}

/// The checks of [`check_bytes`] on text that is already UTF-8 (no second UTF-8 pass), in
/// one scan that also notes the facts the fast reader needs.
pub(crate) fn check_text<'b>(
    text: &'b str,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Result<(&'b str, TextFacts), Fatal> {
    within_size(text.len(), limits, diags)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let scan = Scan::of(text.as_bytes());
    if scan.control {
        let i = first_control(text.as_bytes()).unwrap_or_default();
        let c = text.as_bytes()[i];
        let what = if c == 0 {
            "a NUL byte".to_string()
        } else {
            format!("the control character 0x{c:02x}")
        };
        diags.push(
            Diagnostic::error(codes::YAML_SYNTAX, Span::at(pos_of_offset(text, i)), format!("{what} is not allowed in YAML"))
                .with_help("remove it; write control characters as escapes in a double-quoted string (\"\\x01\")"),
        );
        return Err(Fatal);
    }
    Ok((text, scan.facts))
}

fn within_size(len: usize, limits: &Limits, diags: &mut Vec<Diagnostic>) -> Result<(), Fatal> {
    if len > limits.max_bytes {
        diags.push(
            Diagnostic::error(
                codes::LIMIT,
                Span::at(Pos::new(1, 1)),
                format!(
                    "file is {} bytes, more than the limit of {} bytes",
                    len, limits.max_bytes
                ),
            )
            .with_help("a ci.yml is normally a few kilobytes: check that this is the right file (a program embedding landscape-spec can raise `Limits::max_bytes`)"),
        );
        return Err(Fatal);
    }
    Ok(())
}

/// What the fast reader needs to know about the whole text before it starts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TextFacts {
    /// The text has a carriage return.
    pub(crate) cr: bool,
    /// The text has a tab.
    pub(crate) tab: bool,
}

impl TextFacts {
    /// Scans `text` (one vectorised pass).
    pub(crate) fn of(text: &str) -> TextFacts {
        Scan::of(text.as_bytes()).facts
    }
}

/// One pass over the text: everything the checks before parsing want to know.
struct Scan {
    facts: TextFacts,
    /// A disallowed control character is present ([`first_control`] says where).
    control: bool,
}

impl Scan {
    /// Blocks whose checks have no early exit, so that the compiler vectorises them: a large
    /// file is read once here (not once per question) before the parser reads it.
    fn of(bytes: &[u8]) -> Scan {
        const BLOCK: usize = 64;
        let (mut control, mut cr, mut tab) = (false, false, false);
        let mut blocks = bytes.chunks_exact(BLOCK);
        for block in &mut blocks {
            let (mut c, mut r, mut t) = (0u8, 0u8, 0u8);
            for &b in block {
                c |= is_control(b) as u8;
                r |= (b == b'\r') as u8;
                t |= (b == b'\t') as u8;
            }
            control |= c != 0;
            cr |= r != 0;
            tab |= t != 0;
        }
        for &b in blocks.remainder() {
            control |= is_control(b);
            cr |= b == b'\r';
            tab |= b == b'\t';
        }
        Scan {
            facts: TextFacts { cr, tab },
            control,
        }
    }
}

/// Whether YAML forbids this byte as written: a C0 control character other than tab,
/// line feed and carriage return.
#[inline(always)]
fn is_control(b: u8) -> bool {
    b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r'
}

/// The offset of the first disallowed control character.
fn first_control(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| is_control(b))
}

/// Line and column (1-based, in characters) of a byte offset.
pub fn pos_of_offset(text: &str, offset: usize) -> Pos {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos::new(
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// Parses one YAML document into a tree. Structural problems that do not stop reading
/// (duplicate keys, non-scalar keys) are pushed to `diags` and the tree is still returned.
/// `None` with an error in `diags` when the text is not YAML or a limit was hit; empty
/// documents come back as a null scalar.
///
/// Block-style files take a fast path; anything it does not handle is read by
/// [`parse_document_full`].
pub fn parse_document<'a>(
    text: &'a str,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Node<'a>> {
    if let Some(n) = crate::fast::parse(text, limits, diags) {
        return Some(n);
    }
    parse_document_full(text, limits, diags)
}

/// The fast path alone: `None` when it does not handle the text (for differential tests).
#[doc(hidden)]
pub fn parse_document_fast<'a>(
    text: &'a str,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Node<'a>> {
    crate::fast::parse(text, limits, diags)
}

/// [`parse_document`] with `saphyr-parser` only (no fast path); the reference for the
/// differential tests.
pub fn parse_document_full<'a>(
    text: &'a str,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Node<'a>> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame<'a>> = Vec::new();
    let mut anchors: HashMap<usize, (Node<'a>, usize)> = HashMap::new();
    let mut alias_budget = limits.max_alias_nodes;
    let mut root: Option<Node<'a>> = None;
    let mut docs = 0usize;
    loop {
        let (ev, sp) = match parser.next_event() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let at = Span::at(pos(e.marker()));
                diags.push(if e.info().contains("recursion limit") {
                    // The scanner's own bound on flow nesting, hit while it looks ahead.
                    Diagnostic::error(
                        codes::LIMIT,
                        at,
                        "nesting too deep (the YAML scanner's flow-nesting limit)",
                    )
                    .with_help("flatten the structure; a ci.yml needs fewer than 10 levels")
                } else {
                    Diagnostic::error(
                        codes::YAML_SYNTAX,
                        at,
                        format!("invalid YAML: {}", e.info()),
                    )
                });
                return None;
            }
        };
        let sp = span(&sp);
        let (node, anchor) = match ev {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    diags.push(
                        Diagnostic::error(codes::YAML_SYNTAX, sp, "more than one YAML document in the file")
                            .with_help("a ci.yml holds one document; remove the `---` separator and what follows, or split the file"),
                    );
                    return None;
                }
                continue;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    diags.push(
                        Diagnostic::error(
                            codes::LIMIT,
                            sp,
                            format!("nesting deeper than {} levels", limits.max_depth),
                        )
                        .with_help("flatten the structure; a ci.yml needs fewer than 10 levels"),
                    );
                    return None;
                }
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        start: sp.start,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        start: sp.start,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                        index: None,
                    }
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    start,
                    anchor,
                    items,
                }) => (
                    Node {
                        kind: NodeKind::Seq(items),
                        span: Span::new(start, sp.end),
                    },
                    anchor,
                ),
                _ => return None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    start,
                    anchor,
                    mut entries,
                    merges,
                    index,
                    ..
                }) => {
                    if !merges.is_empty() {
                        apply_merges(&mut entries, index, merges, diags);
                    }
                    (
                        Node {
                            kind: NodeKind::Map(entries),
                            span: Span::new(start, sp.end),
                        },
                        anchor,
                    )
                }
                _ => return None,
            },
            Event::Scalar(text, style, anchor, _tag) => {
                if text.len() > limits.max_scalar_bytes {
                    diags.push(Diagnostic::error(
                        codes::LIMIT,
                        sp,
                        format!(
                            "a scalar of {} bytes, more than the limit of {} bytes",
                            text.len(),
                            limits.max_scalar_bytes
                        ),
                    ));
                    return None;
                }
                let style = if style == ScalarStyle::Plain {
                    Style::Plain
                } else {
                    Style::Quoted
                };
                (
                    Node {
                        kind: NodeKind::Scalar(text, style),
                        span: sp,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some((n, count)) = anchors.get(&id) else {
                    diags.push(Diagnostic::error(
                        codes::YAML_SYNTAX,
                        sp,
                        "alias to an unknown anchor",
                    ));
                    return None;
                };
                if *count > alias_budget {
                    diags.push(
                        Diagnostic::error(
                            codes::LIMIT,
                            sp,
                            format!(
                                "aliases expand to more than {} nodes",
                                limits.max_alias_nodes
                            ),
                        )
                        .with_help("this looks like an alias bomb; use fewer or smaller aliases"),
                    );
                    return None;
                }
                alias_budget -= count;
                let mut n = n.clone();
                n.span = sp;
                (n, 0)
            }
        };
        if anchor != 0 {
            let c = node.count();
            anchors.insert(anchor, (node.clone(), c));
        }
        match stack.last_mut() {
            None => {
                root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                index,
                ..
            }) => match key.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar(..)) {
                        diags.push(
                            Diagnostic::error(
                                codes::WRONG_TYPE,
                                node.span,
                                format!(
                                    "a mapping key must be a plain string, found {}",
                                    node.describe()
                                ),
                            )
                            .with_help("complex keys (`? [a, b]`) are not used in ci.yml"),
                        );
                        // Keep reading; this key and its value are dropped.
                        *key = Some(Node {
                            kind: NodeKind::Scalar(Cow::Borrowed("\u{0}invalid"), Style::Quoted),
                            span: node.span,
                        });
                    } else {
                        *key = Some(node);
                    }
                }
                Some(k) => {
                    let (ktext, kplain) = match &k.kind {
                        NodeKind::Scalar(t, s) => (t.as_ref(), *s == Style::Plain),
                        _ => ("", false),
                    };
                    if ktext == "\u{0}invalid" {
                        continue;
                    }
                    if kplain && ktext == "<<" {
                        merges.push(node);
                        continue;
                    }
                    insert_entry(entries, index, k, node, diags);
                }
            },
        }
    }
    if root.is_none() && diags.iter().all(|d| !d.is_error()) {
        return Some(Node {
            kind: NodeKind::Scalar(Cow::Borrowed(""), Style::Plain),
            span: Span::at(Pos::new(1, 1)),
        });
    }
    root
}

/// Adds a key/value pair to a mapping under construction; a duplicate key is reported (with
/// the first occurrence as related span) and dropped. Keys must be scalars. Returns whether
/// the pair was added.
pub(crate) fn insert_entry<'a>(
    entries: &mut Vec<(Node<'a>, Node<'a>)>,
    index: &mut Option<KeyIndex>,
    k: Node<'a>,
    v: Node<'a>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let ktext = k.as_str().unwrap_or_default();
    if let Some(first) = find_key(entries, index.as_ref(), ktext) {
        let first_span = entries[first].0.span;
        diags.push(
            Diagnostic::error(
                codes::DUPLICATE_KEY,
                k.span,
                format!("duplicate key \"{ktext}\""),
            )
            .with_related(first_span, "first defined here")
            .with_help(
                "keys must be unique in a mapping; remove or rename one (the first is kept)",
            ),
        );
        return false;
    }
    if let Some(ix) = index {
        ix.insert(ktext, entries.len());
    } else if entries.len() >= 16 {
        let mut ix = KeyIndex::default();
        for (i, (k, _)) in entries.iter().enumerate() {
            ix.insert(k.as_str().unwrap_or_default(), i);
        }
        ix.insert(ktext, entries.len());
        *index = Some(ix);
    }
    entries.push((k, v));
    true
}

/// A hash index over the keys of a large mapping: key hash -> first entry with that hash.
/// A hash hit is confirmed against the entry; on a mismatch (a collision) the entries are scanned.
#[derive(Default)]
pub(crate) struct KeyIndex {
    hasher: std::collections::hash_map::RandomState,
    map: HashMap<u64, usize>,
}

impl KeyIndex {
    fn hash(&self, k: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(k)
    }
    fn insert(&mut self, k: &str, i: usize) {
        let h = self.hash(k);
        self.map.entry(h).or_insert(i);
    }
}

fn find_key(entries: &[(Node<'_>, Node<'_>)], index: Option<&KeyIndex>, k: &str) -> Option<usize> {
    let scan = || entries.iter().position(|(e, _)| e.as_str() == Some(k));
    match index {
        Some(ix) => match ix.map.get(&ix.hash(k)) {
            None => None,
            Some(&i) if entries[i].0.as_str() == Some(k) => Some(i),
            Some(_) => scan(),
        },
        None => scan(),
    }
}

fn apply_merges<'a>(
    entries: &mut Vec<(Node<'a>, Node<'a>)>,
    mut index: Option<KeyIndex>,
    merges: Vec<Node<'a>>,
    diags: &mut Vec<Diagnostic>,
) {
    // Explicit keys win over merged ones; earlier merge sources win over later ones.
    let mut sources = Vec::new();
    for m in merges {
        match m.kind {
            NodeKind::Map(e) => sources.push(e),
            NodeKind::Seq(items) => {
                for it in items {
                    match it.kind {
                        NodeKind::Map(e) => sources.push(e),
                        _ => diags.push(Diagnostic::error(
                            codes::WRONG_TYPE,
                            it.span,
                            "a merge key `<<` list must hold mappings",
                        )),
                    }
                }
            }
            NodeKind::Scalar(..) => diags.push(Diagnostic::error(
                codes::WRONG_TYPE,
                m.span,
                "a merge key `<<` needs a mapping (usually an alias like `<<: *defaults`)",
            )),
        }
    }
    for src in sources {
        for (k, v) in src {
            let Some(t) = k.as_str() else { continue };
            if find_key(entries, index.as_ref(), t).is_none() {
                if let Some(ix) = &mut index {
                    ix.insert(t, entries.len());
                }
                entries.push((k, v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scan;

    #[test]
    fn the_scan_finds_each_byte_class_at_every_offset() {
        // Lengths around the block size, each byte class the scan looks for, every position.
        for len in [0usize, 1, 63, 64, 65, 127, 128, 200] {
            let clean: Vec<u8> = (0..len).map(|i| b"ab \n:-#x"[i % 8]).collect();
            let s = Scan::of(&clean);
            assert!(!s.control && !s.facts.cr && !s.facts.tab, "len {len}");
            for at in 0..len {
                for b in [0u8, 0x01, 0x08, 0x0b, 0x0c, 0x1f, b'\r', b'\t'] {
                    let mut v = clean.clone();
                    v[at] = b;
                    let s = Scan::of(&v);
                    let want = (b != b'\r' && b != b'\t', b == b'\r', b == b'\t');
                    assert_eq!(
                        (s.control, s.facts.cr, s.facts.tab),
                        want,
                        "len {len} at {at} byte {b:#x}"
                    );
                }
            }
        }
    }
}
