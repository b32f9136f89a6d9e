//! A fast path for the block-style YAML that ci.yml files are written in.
//!
//! It reads block mappings and sequences, plain / single- / double-quoted scalars (also over
//! several lines), literal and folded block scalars, flow collections and comments, straight into
//! the spanned tree, borrowing single-line scalars from the input. On anything else (anchors,
//! aliases, tags, directives, document markers, complex keys, tabs in indentation, a limit, or
//! anything that looks like an error) it gives up and the caller re-reads the text with
//! `saphyr-parser`, which then also produces the error message. So the fast path never decides
//! what is an error; a differential test checks that both readers build the same tree.
//!
//! Recursion is bounded by [`Limits::max_depth`].

use crate::decode::{StreamCheck, StreamedRun};
use crate::diag::Diagnostic;
use crate::model::SchemaVersion;
use crate::plans::PlanCatalogue;
use crate::span::{Pos, Span};
use crate::yaml::{insert_entry, KeyIndex, Limits, Node, NodeKind, Resolved, Style, TextFacts};
use std::borrow::Cow;

/// Gives up: the caller falls back to the full parser.
struct Bail;

type R<T> = Result<T, Bail>;

struct P<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Byte offset of the start of the current line.
    line_start: usize,
    /// 1-based line number of `pos`.
    line: u32,
    limits: Limits,
    depth: usize,
    /// Lines inside a flow collection must be indented more than this.
    flow_min: usize,
    diags: Vec<Diagnostic>,
    /// Services decoded while their subtree is still in cache (see [`parse_streaming`]);
    /// `None` when not streaming.
    stream: Option<StreamedRun<'a>>,
    /// Set while reading the value of the top-level `run` key, when streaming.
    stream_next: bool,
    /// When streaming with checks: the plan catalogue to check services against.
    check: Option<Option<&'a PlanCatalogue>>,
}

/// Reads `text` with the fast path. `None` means "not handled here": use the full parser.
pub(crate) fn parse<'a>(
    text: &'a str,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Node<'a>> {
    read(text, TextFacts::of(text), limits, diags, None, None).map(|(n, _)| n)
}

/// [`parse`], decoding each service of a block-style top-level `run` mapping as soon as its
/// subtree is read, while it is still in cache; the subtree is then dropped and its memory
/// reused for the next service, so large files do not build the whole tree first. In the
/// returned tree such a service's value is an empty mapping with the original span; the
/// decoded services come back in file order, with their key's position. Only accepted
/// entries (not duplicates) with a mapping value are streamed. With `check` (the plan
/// catalogue, if any), each streamed service also gets its semantic checks
/// (`validate::service`) when a known schemaVersion precedes `run`.
pub(crate) fn parse_streaming<'a>(
    text: &'a str,
    facts: TextFacts,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
    check: Option<Option<&'a PlanCatalogue>>,
) -> Option<(Node<'a>, StreamedRun<'a>)> {
    read(
        text,
        facts,
        limits,
        diags,
        Some(StreamedRun::default()),
        check,
    )
    .map(|(n, s)| (n, s.unwrap_or_default()))
}

fn read<'a>(
    text: &'a str,
    facts: TextFacts,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
    stream: Option<StreamedRun<'a>>,
    check: Option<Option<&'a PlanCatalogue>>,
) -> Option<(Node<'a>, Option<StreamedRun<'a>>)> {
    let mut p = P {
        src: text,
        b: text.as_bytes(),
        pos: 0,
        line_start: 0,
        line: 1,
        limits: *limits,
        depth: 0,
        flow_min: 0,
        diags: Vec::new(),
        stream,
        stream_next: false,
        check,
    };
    if facts.cr && text.replace("\r\n", "").contains('\r') {
        return None; // lone carriage returns: full parser
    }
    // Both tab checks only matter when the file has a tab at all.
    if facts.tab && (text.contains(":\t") || tab_in_indentation(text)) {
        return None; // tabs where YAML is picky: the full reader decides
    }
    let root = p.document().ok()?;
    diags.append(&mut p.diags);
    Some((root, p.stream))
}

/// Whether any line's leading whitespace contains a tab.
fn tab_in_indentation(text: &str) -> bool {
    let mut at_start = true;
    for &c in text.as_bytes() {
        match c {
            b'\n' => at_start = true,
            b'\t' if at_start => return true,
            b' ' => {}
            _ => at_start = false,
        }
    }
    false
}

/// Width of a text in characters (columns), fast for ASCII.
fn width(s: &str) -> u32 {
    (if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }) as u32
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn at(&self, off: usize) -> Option<u8> {
        self.b.get(self.pos + off).copied()
    }

    fn col_of(&self, pos: usize) -> u32 {
        let seg = &self.b[self.line_start..pos];
        let n = if seg.is_ascii() {
            seg.len()
        } else {
            self.src[self.line_start..pos].chars().count()
        };
        n as u32 + 1
    }

    fn here(&self) -> Pos {
        Pos::new(self.line, self.col_of(self.pos))
    }

    fn newline(&mut self) {
        // at a '\n' (or "\r\n")
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        self.pos += 1;
        self.line += 1;
        self.line_start = self.pos;
    }

    /// A position to return to after looking ahead.
    fn mark(&self) -> (usize, u32, usize) {
        (self.pos, self.line, self.line_start)
    }

    fn reset(&mut self, m: (usize, u32, usize)) {
        (self.pos, self.line, self.line_start) = m;
    }

    /// Whether a block sequence entry (`-` followed by a space or the line end) starts here.
    fn at_seq_entry(&self) -> bool {
        self.peek() == Some(b'-')
            && matches!(self.at(1), None | Some(b' ') | Some(b'\n') | Some(b'\r'))
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
            || (self.peek() == Some(b'\r') && self.at(1) == Some(b'\n'))
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// After a value on a line: spaces, an optional comment, then the end of the line.
    fn end_of_line(&mut self) -> R<()> {
        self.skip_spaces();
        if self.peek() == Some(b'#') {
            if self.pos > self.line_start && !is_ws(self.b[self.pos - 1]) {
                return Err(Bail); // `"x"#c`: a comment must follow whitespace
            }
            while !self.at_eol() {
                self.pos += 1;
            }
        }
        if !self.at_eol() {
            return Err(Bail);
        }
        Ok(())
    }

    /// Moves to the first content character of the next line that has content (skipping blank
    /// and comment-only lines); returns its indentation, or `None` at the end of the text.
    /// Assumes `pos` is at a line end or a line start.
    fn next_content_line(&mut self) -> R<Option<usize>> {
        loop {
            if self.pos >= self.b.len() {
                return Ok(None);
            }
            if self.pos != self.line_start {
                if !self.at_eol() {
                    return Err(Bail);
                }
                self.newline();
                continue;
            }
            let mut i = self.pos;
            while self.b.get(i) == Some(&b' ') {
                i += 1;
            }
            match self.b.get(i) {
                None => {
                    self.pos = i;
                    return Ok(None);
                }
                Some(b'\t') => {
                    // A tab after the indentation is fine only on blank or comment lines.
                    let mut j = i;
                    while self.b.get(j).is_some_and(|c| is_ws(*c)) {
                        j += 1;
                    }
                    match self.b.get(j) {
                        None | Some(b'\n') | Some(b'\r') | Some(b'#') => {
                            self.pos = j;
                            self.end_of_line()?;
                            continue;
                        }
                        _ => return Err(Bail),
                    }
                }
                Some(b'\n') | Some(b'\r') => {
                    self.pos = i;
                    if !self.at_eol() {
                        return Err(Bail);
                    }
                    self.newline();
                    continue;
                }
                Some(b'#') => {
                    self.pos = i;
                    self.end_of_line()?;
                    if self.pos < self.b.len() {
                        self.newline();
                    }
                    continue;
                }
                Some(_) => {
                    let indent = i - self.pos;
                    if indent == 0 {
                        let rest = &self.b[i..];
                        if rest.starts_with(b"---") || rest.starts_with(b"...") || rest[0] == b'%' {
                            return Err(Bail);
                        }
                    }
                    self.pos = i;
                    return Ok(Some(indent));
                }
            }
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Bail);
        }
        Ok(())
    }

    fn document(&mut self) -> R<Node<'a>> {
        match self.next_content_line()? {
            None => Err(Bail), // empty documents: let the full parser decide
            Some(0) => {
                if !self.looks_like_key()? {
                    return Err(Bail); // only mappings are read here
                }
                let n = self.block_map(0)?;
                if self.next_content_line()?.is_some() {
                    return Err(Bail);
                }
                Ok(n)
            }
            Some(_) => Err(Bail),
        }
    }

    /// A block node starting at `pos` (a content character at column `indent`).
    /// `in_seq_item`: the node directly follows `- ` (compact forms allowed).
    /// Scalars continue on lines indented more than `parent`.
    fn block_node(&mut self, indent: usize, in_seq_item: bool, parent: usize) -> R<Node<'a>> {
        self.peek().ok_or(Bail)?;
        if self.at_seq_entry() {
            if in_seq_item {
                return Err(Bail); // `- - x`
            }
            return self.block_seq(indent, false);
        }
        if self.looks_like_key()? {
            return self.block_map(indent);
        }
        // A scalar or a flow collection standing alone.
        self.inline_value(parent)
    }

    /// Whether a mapping key (`key:` + space/end) starts at `pos` on this line.
    fn looks_like_key(&self) -> R<bool> {
        let rest = &self.b[self.pos..];
        match rest.first() {
            Some(b'"') | Some(b'\'') => {
                let q = rest[0];
                let mut i = 1;
                while i < rest.len() && rest[i] != b'\n' {
                    if rest[i] == b'\\' && q == b'"' {
                        i += 2;
                        continue;
                    }
                    if rest[i] == q {
                        if q == b'\'' && rest.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        let mut j = i + 1;
                        while rest.get(j).is_some_and(|c| is_ws(*c)) {
                            j += 1;
                        }
                        return Ok(rest.get(j) == Some(&b':'));
                    }
                    i += 1;
                }
                Ok(false)
            }
            Some(b'[') | Some(b'{') | Some(b'|') | Some(b'>') | Some(b'#') => Ok(false),
            Some(b'&') | Some(b'*') | Some(b'!') | Some(b'%') | Some(b'@') | Some(b'`')
            | Some(b'?') => Err(Bail),
            _ => {
                let mut i = 0;
                while i < rest.len() && rest[i] != b'\n' {
                    match rest[i] {
                        b':' if matches!(
                            rest.get(i + 1),
                            None | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r')
                        ) =>
                        {
                            return Ok(true);
                        }
                        b'#' if i > 0 && is_ws(rest[i - 1]) => return Ok(false),
                        _ => {}
                    }
                    i += 1;
                }
                Ok(false)
            }
        }
    }

    fn block_map(&mut self, indent: usize) -> R<Node<'a>> {
        self.enter()?;
        // The direct value of the top-level `run` key (depth 2) streams its services.
        let streaming = std::mem::take(&mut self.stream_next) && self.depth == 2;
        let start = self.here();
        let mut entries: Vec<(Node<'a>, Node<'a>)> = Vec::new();
        let mut index: Option<KeyIndex> = None;
        let mut end;
        loop {
            // at a key at column `indent`
            let entry_start = self.pos;
            let key = self.key()?;
            if key.as_str() == Some("<<") && matches!(key.kind, NodeKind::Scalar(_, Style::Plain)) {
                return Err(Bail); // merge keys: full parser
            }
            // after `:`
            let colon = Pos::new(self.line, self.col_of(self.pos) - 1);
            self.skip_spaces();
            self.stream_next =
                self.stream.is_some() && self.depth == 1 && key.as_str() == Some("run");
            if self.stream_next {
                self.start_checks(&entries);
            }
            let value = if self.at_eol() || self.peek() == Some(b'#') {
                self.end_of_line()?;
                let save = self.mark();
                match self.next_content_line()? {
                    Some(i) if i > indent => self.block_node(i, false, indent)?,
                    Some(i) if i == indent && self.at_seq_entry() => {
                        // an "indentless" sequence: the full reader places it at its first item
                        self.block_seq(indent, true)?
                    }
                    _ => {
                        self.reset(save);
                        Node {
                            kind: NodeKind::Scalar(Cow::Borrowed(""), Style::Plain),
                            span: Span::at(colon),
                        }
                    }
                }
            } else {
                self.inline_value(indent)?
            };
            self.stream_next = false;
            end = value.span.end;
            let added = insert_entry(&mut entries, &mut index, key, value, &mut self.diags);
            if streaming && added {
                self.stream_last(&mut entries, self.pos - entry_start);
            }
            // next key?
            self.end_of_line_or_positioned()?;
            let save = self.mark();
            match self.next_content_line()? {
                Some(i) if i == indent => {
                    if self.at_seq_entry() {
                        return Err(Bail);
                    }
                    if !self.looks_like_key()? {
                        return Err(Bail);
                    }
                }
                Some(i) if i > indent => return Err(Bail),
                _ => {
                    self.reset(save);
                    break;
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            kind: NodeKind::Map(entries),
            span: Span::new(start, end),
        })
    }

    /// Before the top-level `run`: when checks were asked for and a known schemaVersion with
    /// services came before, the streamed services are checked against it as they are read.
    fn start_checks(&mut self, root: &[(Node<'a>, Node<'a>)]) {
        let (Some(plans), Some(stream)) = (self.check, self.stream.as_mut()) else {
            return;
        };
        stream.runs += 1;
        if stream.runs > 1 {
            // A second top-level `run` (dropped later as a duplicate key): its services
            // are streamed too, so the checks would not match the services used. Check
            // the model afterwards instead.
            stream.check = None;
            return;
        }
        let version = root
            .iter()
            .find(|(k, _)| k.as_str() == Some("schemaVersion"))
            .and_then(|(_, v)| match v.resolve() {
                Some(Resolved::Str(s)) => SchemaVersion::parse(s),
                _ => None,
            });
        if let Some(v) = version.filter(|v| v.has_services()) {
            stream.check = Some(StreamCheck::new(v, plans));
        }
    }

    /// Decodes the value of the entry just added to `run` when it is a mapping, leaving an
    /// empty mapping with the same span in its place.
    /// `bytes`: the length of the entry's text, to estimate how many services follow.
    fn stream_last(&mut self, entries: &mut [(Node<'a>, Node<'a>)], bytes: usize) {
        let (Some(out), Some((k, v))) = (self.stream.as_mut(), entries.last_mut()) else {
            return;
        };
        if out.is_empty() {
            // Size the services for the rest of the text as if the others were like the first
            // (bounded), so that they are not moved again and again while the map grows.
            let rest = self.b.len() - self.pos;
            out.reserve((rest / bytes.max(1)).min(4096));
        }
        if !matches!(v.kind, NodeKind::Map(_)) {
            return;
        }
        let placeholder = Node {
            kind: NodeKind::Map(Vec::new()),
            span: v.span,
        };
        let v = std::mem::replace(v, placeholder);
        crate::decode::stream_service(out, k, v);
    }

    /// After a nested block node the position is already at a line start (or the end); after an
    /// inline value it is at the end of the value's line.
    fn end_of_line_or_positioned(&mut self) -> R<()> {
        if self.pos == self.line_start || self.pos >= self.b.len() {
            return Ok(());
        }
        self.end_of_line()
    }

    fn block_seq(&mut self, indent: usize, indentless: bool) -> R<Node<'a>> {
        self.enter()?;
        let mut start = self.here();
        let mut items = Vec::new();
        let mut end;
        loop {
            // at '-'
            self.pos += 1;
            self.skip_spaces();
            // where the full reader places an empty item
            let empty_at = self.here();
            let item = if self.at_eol() || self.peek() == Some(b'#') {
                if self.peek() == Some(b'#') {
                    return Err(Bail);
                }
                self.end_of_line()?;
                let save = self.mark();
                match self.next_content_line()? {
                    Some(i) if i > indent => self.block_node(i, false, indent)?,
                    _ => {
                        self.reset(save);
                        Node {
                            kind: NodeKind::Scalar(Cow::Borrowed(""), Style::Plain),
                            span: Span::at(empty_at),
                        }
                    }
                }
            } else {
                let col = self.pos - self.line_start;
                if self.b[self.line_start..self.pos].contains(&b'\t') {
                    return Err(Bail);
                }
                self.block_node(col, true, indent)?
            };
            end = item.span.end;
            if indentless && items.is_empty() {
                // where the first item's content would start on the dash's line
                start = empty_at;
            }
            items.push(item);
            self.end_of_line_or_positioned()?;
            let save = self.mark();
            match self.next_content_line()? {
                Some(i) if i == indent && self.at_seq_entry() => {}
                Some(i) if i > indent => return Err(Bail),
                _ => {
                    self.reset(save);
                    break;
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            kind: NodeKind::Seq(items),
            span: Span::new(start, end),
        })
    }

    /// A mapping key and its `:`.
    fn key(&mut self) -> R<Node<'a>> {
        let k = match self.peek() {
            Some(b'"') | Some(b'\'') => {
                let line = self.line;
                let k = self.quoted(usize::MAX)?;
                if self.line != line {
                    return Err(Bail);
                }
                self.skip_spaces();
                k
            }
            _ => {
                let start = self.pos;
                let sp = self.here();
                loop {
                    match self.peek() {
                        Some(b':')
                            if matches!(
                                self.at(1),
                                None | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r')
                            ) =>
                        {
                            break
                        }
                        None | Some(b'\n') | Some(b'\r') => return Err(Bail),
                        _ => self.pos += 1,
                    }
                }
                let mut end = self.pos;
                while end > start && is_ws(self.b[end - 1]) {
                    end -= 1;
                }
                let text = &self.src[start..end];
                if text.is_empty()
                    || text.starts_with([
                        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '%',
                        '@', '`',
                    ])
                {
                    return Err(Bail);
                }
                let e = Pos::new(self.line, sp.col + width(&self.src[start..end]));
                Node {
                    kind: NodeKind::Scalar(Cow::Borrowed(text), Style::Plain),
                    span: Span::new(sp, e),
                }
            }
        };
        if self.peek() != Some(b':') {
            return Err(Bail);
        }
        if self.col_of(self.pos) - k.span.start.col > 1000 {
            return Err(Bail); // YAML limits implicit keys to 1024 characters
        }
        self.pos += 1;
        if !matches!(self.peek(), None | Some(b' ') | Some(b'\n') | Some(b'\r')) {
            return Err(Bail); // `"key":value` is for flow context only
        }
        Ok(k)
    }

    /// A value written on the current line (it may continue on following lines).
    fn inline_value(&mut self, indent: usize) -> R<Node<'a>> {
        match self.peek().ok_or(Bail)? {
            b'"' | b'\'' => self.quoted(indent),
            b'[' | b'{' => {
                self.flow_min = indent;
                self.flow()
            }
            b'|' | b'>' => self.block_scalar(indent),
            b'&' | b'*' | b'!' | b'%' | b'@' | b'`' | b'?' => Err(Bail),
            b'-' | b':'
                if matches!(
                    self.at(1),
                    None | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r')
                ) =>
            {
                Err(Bail)
            }
            b',' | b']' | b'}' | b'#' => Err(Bail),
            _ => self.plain(indent),
        }
    }

    /// A plain scalar in block context, possibly continued on more-indented lines.
    fn plain(&mut self, indent: usize) -> R<Node<'a>> {
        if matches!(self.peek(), Some(b'-' | b'?' | b':'))
            && matches!(self.at(1), Some(b',' | b'[' | b']' | b'{' | b'}'))
        {
            return Err(Bail); // not a valid plain-scalar start
        }
        let sp = self.here();
        let first = self.plain_line()?;
        let mut end = Pos::new(self.line, sp.col + width(first));
        let mut owned: Option<String> = None;
        loop {
            // continuation lines?
            let save = self.mark();
            if !self.at_eol() {
                // stopped at a comment
                break;
            }
            let mut blank = 0usize;
            let mut cont = None;
            loop {
                if self.pos >= self.b.len() {
                    break;
                }
                self.newline();
                let mut i = self.pos;
                while self.b.get(i).is_some_and(|c| is_ws(*c)) {
                    i += 1;
                }
                match self.b.get(i) {
                    None => break,
                    Some(b'\n') | Some(b'\r') => {
                        self.pos = i;
                        if !self.at_eol() {
                            return Err(Bail);
                        }
                        blank += 1;
                    }
                    Some(b'#') => break,
                    Some(_) => {
                        let ind = i - self.line_start;
                        if self.b[self.line_start..i].contains(&b'\t') {
                            return Err(Bail);
                        }
                        if ind > indent {
                            self.pos = i;
                            cont = Some(i);
                        }
                        break;
                    }
                }
            }
            let Some(_) = cont else {
                self.reset(save);
                break;
            };
            let start_col = self.here();
            let text = self.plain_line()?;
            let s = owned.get_or_insert_with(|| first.to_string());
            if blank == 0 {
                s.push(' ');
            } else {
                for _ in 0..blank {
                    s.push('\n');
                }
            }
            s.push_str(text);
            end = Pos::new(self.line, start_col.col + width(text));
        }
        let kind = match owned {
            Some(s) => NodeKind::Scalar(Cow::Owned(s), Style::Plain),
            None => NodeKind::Scalar(Cow::Borrowed(first), Style::Plain),
        };
        self.check_len(&kind)?;
        Ok(Node {
            kind,
            span: Span::new(sp, end),
        })
    }

    /// The rest of a plain scalar on this line (trailing spaces trimmed); stops before a comment.
    /// A `: ` inside means a nested mapping on one line, which is an error: bail.
    fn plain_line(&mut self) -> R<&'a str> {
        let start = self.pos;
        let mut end = start;
        loop {
            match self.peek() {
                None | Some(b'\n') => break,
                Some(b'\r') if self.at(1) == Some(b'\n') => break,
                Some(b':')
                    if matches!(
                        self.at(1),
                        None | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r')
                    ) =>
                {
                    return Err(Bail)
                }
                Some(b'#') if self.pos > start && is_ws(self.b[self.pos - 1]) => break,
                Some(c) => {
                    self.pos += 1;
                    if !is_ws(c) {
                        end = self.pos;
                    }
                }
            }
        }
        // leave `pos` at the comment or line end; trailing spaces are not part of the scalar
        Ok(&self.src[start..end])
    }

    fn check_len(&self, k: &NodeKind<'_>) -> R<()> {
        match k {
            NodeKind::Scalar(s, _) if s.len() > self.limits.max_scalar_bytes => Err(Bail),
            _ => Ok(()),
        }
    }

    /// A single- or double-quoted scalar; continuation lines must be indented more than `indent`.
    fn quoted(&mut self, indent: usize) -> R<Node<'a>> {
        let q = self.peek().ok_or(Bail)?;
        let sp = self.here();
        self.pos += 1;
        let start = self.pos;
        // Fast case: one line, no escapes.
        let mut i = start;
        while i < self.b.len() {
            let c = self.b[i];
            if c == q || c == b'\n' || c == b'\r' || (q == b'"' && c == b'\\') {
                break;
            }
            i += 1;
        }
        if i < self.b.len() && self.b[i] == q && !(q == b'\'' && self.b.get(i + 1) == Some(&b'\''))
        {
            self.pos = i + 1;
            let text = &self.src[start..i];
            let e = Pos::new(self.line, self.col_of(self.pos));
            let kind = NodeKind::Scalar(Cow::Borrowed(text), Style::Quoted);
            self.check_len(&kind)?;
            return Ok(Node {
                kind,
                span: Span::new(sp, e),
            });
        }
        // General case.
        let mut out = String::new();
        // Escaped characters are content: line folding never trims them.
        let mut keep = 0;
        loop {
            let c = self.peek().ok_or(Bail)?;
            match c {
                b'\n' | b'\r' => {
                    // fold: trailing white space of the line is dropped
                    while out.len() > keep && out.ends_with([' ', '\t']) {
                        out.pop();
                    }
                    let mut breaks = 0;
                    loop {
                        if !self.at_eol() || self.pos >= self.b.len() {
                            return Err(Bail);
                        }
                        self.newline();
                        let mut i = self.pos;
                        while self.b.get(i).is_some_and(|c| is_ws(*c)) {
                            i += 1;
                        }
                        let ind = {
                            let mut k = self.pos;
                            while self.b.get(k) == Some(&b' ') {
                                k += 1;
                            }
                            k - self.pos
                        };
                        self.pos = i;
                        if self.at_eol() {
                            if self.pos >= self.b.len() {
                                return Err(Bail);
                            }
                            breaks += 1;
                            continue;
                        }
                        if indent != usize::MAX && ind <= indent {
                            return Err(Bail);
                        }
                        let rest = &self.b[self.line_start..];
                        if rest.starts_with(b"---") || rest.starts_with(b"...") {
                            return Err(Bail);
                        }
                        break;
                    }
                    if breaks == 0 {
                        out.push(' ');
                    } else {
                        for _ in 0..breaks {
                            out.push('\n');
                        }
                    }
                }
                c if c == q => {
                    if q == b'\'' && self.at(1) == Some(b'\'') {
                        out.push('\'');
                        self.pos += 2;
                        continue;
                    }
                    self.pos += 1;
                    break;
                }
                b'\\' if q == b'"' => {
                    self.pos += 1;
                    let e = self.peek().ok_or(Bail)?;
                    self.pos += 1;
                    match e {
                        b'0' => out.push('\0'),
                        b'a' => out.push('\u{7}'),
                        b'b' => out.push('\u{8}'),
                        b't' | b'\t' => out.push('\t'),
                        b'n' => out.push('\n'),
                        b'v' => out.push('\u{b}'),
                        b'f' => out.push('\u{c}'),
                        b'r' => out.push('\r'),
                        b'e' => out.push('\u{1b}'),
                        b' ' => out.push(' '),
                        b'"' => out.push('"'),
                        b'/' => out.push('/'),
                        b'\\' => out.push('\\'),
                        b'N' => out.push('\u{85}'),
                        b'_' => out.push('\u{a0}'),
                        b'L' => out.push('\u{2028}'),
                        b'P' => out.push('\u{2029}'),
                        b'x' | b'u' | b'U' => {
                            let n = match e {
                                b'x' => 2,
                                b'u' => 4,
                                _ => 8,
                            };
                            let hex = self.src.get(self.pos..self.pos + n).ok_or(Bail)?;
                            let v = u32::from_str_radix(hex, 16).map_err(|_| Bail)?;
                            out.push(char::from_u32(v).ok_or(Bail)?);
                            self.pos += n;
                        }
                        b'\n' | b'\r' => {
                            // escaped line break: join without a space, skip the next indentation
                            self.pos -= 1;
                            if !self.at_eol() {
                                return Err(Bail);
                            }
                            self.newline();
                            self.skip_spaces();
                            let ind = self.b[self.line_start..self.pos]
                                .iter()
                                .take_while(|c| **c == b' ')
                                .count();
                            if self.at_eol() || (indent != usize::MAX && ind <= indent) {
                                return Err(Bail);
                            }
                        }
                        _ => return Err(Bail),
                    }
                    keep = out.len();
                }
                _ => {
                    // copy a run of ordinary characters
                    let s = self.pos;
                    while let Some(c) = self.peek() {
                        if c == q || c == b'\n' || c == b'\r' || (q == b'"' && c == b'\\') {
                            break;
                        }
                        self.pos += 1;
                    }
                    out.push_str(&self.src[s..self.pos]);
                }
            }
        }
        let e = Pos::new(self.line, self.col_of(self.pos));
        let kind = NodeKind::Scalar(Cow::Owned(out), Style::Quoted);
        self.check_len(&kind)?;
        Ok(Node {
            kind,
            span: Span::new(sp, e),
        })
    }

    /// `|` or `>` with optional chomping and indentation indicators.
    fn block_scalar(&mut self, indent: usize) -> R<Node<'a>> {
        let literal = self.peek() == Some(b'|');
        self.pos += 1;
        let mut chomp = b' ';
        let mut explicit: Option<usize> = None;
        for _ in 0..2 {
            match self.peek() {
                Some(c @ (b'-' | b'+')) if chomp == b' ' => {
                    chomp = c;
                    self.pos += 1;
                }
                Some(c @ b'1'..=b'9') if explicit.is_none() => {
                    explicit = Some((c - b'0') as usize);
                    self.pos += 1;
                }
                _ => {}
            }
        }
        if !matches!(
            self.peek(),
            None | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r')
        ) {
            return Err(Bail);
        }
        self.end_of_line()?;
        if self.pos >= self.b.len() {
            return Err(Bail);
        }
        self.newline();
        // Collect lines.
        let content_indent = match explicit {
            Some(d) => indent + d,
            None => {
                // the first non-empty line decides; leading blank lines must not be longer
                let mut i = self.pos;
                let mut max_blank = 0;
                loop {
                    let ls = i;
                    while self.b.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    match self.b.get(i) {
                        Some(b'\n') => {
                            max_blank = max_blank.max(i - ls);
                            i += 1;
                        }
                        Some(b'\r') if self.b.get(i + 1) == Some(&b'\n') => {
                            max_blank = max_blank.max(i - ls);
                            i += 2;
                        }
                        None => return Err(Bail),
                        Some(b'\t') => return Err(Bail),
                        Some(_) => {
                            let ind = i - ls;
                            if ind <= indent || max_blank > ind {
                                return Err(Bail);
                            }
                            break ind;
                        }
                    }
                }
            }
        };
        let mut lines: Vec<&'a str> = Vec::new();
        let mut start: Option<Pos> = None;
        let mut end = Pos::new(self.line, 1);
        loop {
            if self.pos >= self.b.len() {
                break;
            }
            let ls = self.pos;
            let mut i = ls;
            while self.b.get(i) == Some(&b' ') && i - ls < content_indent {
                i += 1;
            }
            let mut le = i;
            while le < self.b.len() && self.b[le] != b'\n' {
                le += 1;
            }
            if le == self.b.len() && self.b[ls..le].iter().all(|c| is_ws(*c)) && le > ls {
                return Err(Bail); // a blank last line without a line break: full reader
            }
            let mut text_end = le;
            if text_end > i && self.b[text_end - 1] == b'\r' {
                text_end -= 1;
            }
            let body = &self.src[i..text_end];
            if i - ls < content_indent {
                // shorter indentation: blank line or the end of the scalar
                if !body.bytes().all(is_ws) {
                    break;
                }
                lines.push("");
            } else {
                if start.is_none() && !body.is_empty() {
                    start = Some(Pos::new(self.line, (content_indent + 1) as u32));
                }
                if !body.is_empty() {
                    end = Pos::new(
                        self.line,
                        (content_indent + 1 + body.chars().count()) as u32,
                    );
                }
                lines.push(body);
            }
            self.pos = le;
            if self.pos >= self.b.len() {
                break;
            }
            self.newline();
        }
        let start = start.ok_or(Bail)?;
        // Trailing blank lines are kept aside for chomping.
        let mut trailing = 0;
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
            trailing += 1;
        }
        let mut out = String::new();
        if literal {
            for (n, l) in lines.iter().enumerate() {
                if n > 0 {
                    out.push('\n');
                }
                out.push_str(l);
            }
        } else {
            let mut prev_spaced: Option<bool> = None;
            let mut empty = 0;
            for l in &lines {
                if l.is_empty() {
                    empty += 1;
                    continue;
                }
                let spaced = l.starts_with([' ', '\t']);
                match prev_spaced {
                    None => out.extend(std::iter::repeat_n('\n', empty)),
                    Some(ps) => {
                        if !ps && !spaced {
                            if empty == 0 {
                                out.push(' ');
                            } else {
                                out.extend(std::iter::repeat_n('\n', empty));
                            }
                        } else {
                            out.extend(std::iter::repeat_n('\n', empty + 1));
                        }
                    }
                }
                out.push_str(l);
                prev_spaced = Some(spaced);
                empty = 0;
            }
        }
        match chomp {
            b'-' => {}
            b'+' => {
                out.push('\n');
                out.extend(std::iter::repeat_n('\n', trailing));
            }
            _ => out.push('\n'),
        }
        // The position is now at the start of the first line after the scalar.
        let kind = NodeKind::Scalar(Cow::Owned(out), Style::Quoted);
        self.check_len(&kind)?;
        Ok(Node {
            kind,
            span: Span::new(start, end),
        })
    }

    // ---- flow collections ----

    fn flow_ws(&mut self) -> R<()> {
        loop {
            match self.peek() {
                Some(b' ') | Some(b'\t') => self.pos += 1,
                Some(b'\n') | Some(b'\r') => {
                    if !self.at_eol() {
                        return Err(Bail);
                    }
                    self.newline();
                    let rest = &self.b[self.pos..];
                    if rest.starts_with(b"---") || rest.starts_with(b"...") {
                        return Err(Bail);
                    }
                    let ind = rest.iter().take_while(|c| **c == b' ').count();
                    let next = rest.get(ind).copied();
                    if ind <= self.flow_min
                        && !matches!(next, None | Some(b'\n') | Some(b'\r') | Some(b'#'))
                    {
                        return Err(Bail);
                    }
                }
                Some(b'#') => {
                    if self.pos > self.line_start && !is_ws(self.b[self.pos - 1]) {
                        return Err(Bail);
                    }
                    while !self.at_eol() {
                        self.pos += 1;
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn flow(&mut self) -> R<Node<'a>> {
        self.enter()?;
        let open = self.peek().ok_or(Bail)?;
        let start = self.here();
        self.pos += 1;
        let close = if open == b'[' { b']' } else { b'}' };
        let mut items = Vec::new();
        let mut entries: Vec<(Node<'a>, Node<'a>)> = Vec::new();
        let mut index: Option<KeyIndex> = None;
        loop {
            self.flow_ws()?;
            if self.peek() == Some(close) {
                self.pos += 1;
                break;
            }
            if open == b'[' {
                let v = self.flow_value()?;
                self.flow_ws()?;
                if self.peek() == Some(b':') {
                    return Err(Bail); // single-pair mappings in sequences
                }
                items.push(v);
            } else {
                let k = match self.peek() {
                    Some(b'"') | Some(b'\'') => self.quoted(self.flow_min)?,
                    Some(b'[') | Some(b'{') | Some(b'?') | Some(b',') => return Err(Bail),
                    _ => self.flow_plain()?,
                };
                if k.as_str() == Some("<<") && matches!(k.kind, NodeKind::Scalar(_, Style::Plain)) {
                    return Err(Bail);
                }
                self.flow_ws()?;
                if self.peek() != Some(b':') {
                    return Err(Bail); // `{a, b}`: keys without values
                }
                self.pos += 1;
                if !matches!(
                    self.peek(),
                    Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r')
                ) {
                    return Err(Bail);
                }
                self.flow_ws()?;
                let v = match self.peek() {
                    Some(b',') | Some(b'}') => return Err(Bail), // empty values: full parser
                    _ => self.flow_value()?,
                };
                insert_entry(&mut entries, &mut index, k, v, &mut self.diags);
            }
            self.flow_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(Bail),
            }
        }
        let end = self.here();
        self.depth -= 1;
        let kind = if open == b'[' {
            NodeKind::Seq(items)
        } else {
            NodeKind::Map(entries)
        };
        Ok(Node {
            kind,
            span: Span::new(start, end),
        })
    }

    fn flow_value(&mut self) -> R<Node<'a>> {
        match self.peek().ok_or(Bail)? {
            b'"' | b'\'' => self.quoted(self.flow_min),
            b'[' | b'{' => self.flow(),
            b'&' | b'*' | b'!' | b'%' | b'@' | b'`' | b'?' | b'|' | b'>' | b',' | b']' | b'}'
            | b'#' => Err(Bail),
            b'-' | b':'
                if matches!(
                    self.at(1),
                    None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b'[' | b']' | b'{' | b'}')
                ) =>
            {
                Err(Bail)
            }
            _ => self.flow_plain(),
        }
    }

    /// A plain scalar inside a flow collection, on one line.
    fn flow_plain(&mut self) -> R<Node<'a>> {
        let sp = self.here();
        let start = self.pos;
        let mut end = start;
        loop {
            match self.peek() {
                None | Some(b'\n') | Some(b'\r') | Some(b',') | Some(b'[') | Some(b']')
                | Some(b'{') | Some(b'}') => break,
                Some(b':')
                    if matches!(
                        self.at(1),
                        None | Some(b' ')
                            | Some(b'\t')
                            | Some(b'\n')
                            | Some(b'\r')
                            | Some(b',')
                            | Some(b']')
                            | Some(b'}')
                    ) =>
                {
                    break
                }
                Some(b'#') if self.pos > start && is_ws(self.b[self.pos - 1]) => break,
                // an indicator after a space inside a flow scalar (`[a -]`, `[a ?]`): saphyr
                // reads it as the start of a new token; let it decide
                Some(b'-' | b'?' | b':')
                    if self.pos > start
                        && is_ws(self.b[self.pos - 1])
                        && matches!(
                            self.at(1),
                            None | Some(
                                b' ' | b'\t' | b'\n' | b'\r' | b',' | b'[' | b']' | b'{' | b'}'
                            )
                        ) =>
                {
                    return Err(Bail);
                }
                Some(c) => {
                    self.pos += 1;
                    if !is_ws(c) {
                        end = self.pos;
                    }
                }
            }
        }
        if end == start {
            return Err(Bail);
        }
        // a flow plain scalar continued on the next line: full parser
        if matches!(self.peek(), Some(b'\n') | Some(b'\r')) {
            let mut i = self.pos;
            while i < self.b.len() && matches!(self.b[i], b'\n' | b'\r' | b' ' | b'\t') {
                i += 1;
            }
            if !matches!(
                self.b.get(i),
                Some(b',') | Some(b']') | Some(b'}') | Some(b':') | Some(b'#')
            ) {
                return Err(Bail);
            }
        }
        let text = &self.src[start..end];
        let e = Pos::new(self.line, sp.col + width(text));
        Ok(Node {
            kind: NodeKind::Scalar(Cow::Borrowed(text), Style::Plain),
            span: Span::new(sp, e),
        })
    }
}
