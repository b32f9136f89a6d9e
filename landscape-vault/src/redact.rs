//! Streaming redaction of secret values in output (logs of stages and services).
//!
//! Each value is masked as `***` in these forms: raw; base64 (standard and URL-safe, padded
//! standalone form and the value's stable core at each of the three byte alignments, so a value
//! embedded in a larger base64 blob is masked too); percent-encoded (upper- and lower-case hex,
//! `+` for space); JSON-escaped (as serde_json and as ASCII-only encoders write it); hex (lower
//! and upper case). Matches split across chunk boundaries are masked: a stream holds back at most
//! `longest pattern - 1` bytes until it knows whether they start a match.

use crate::secret::SecretValue;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Values shorter than this many bytes are not masked (too many false positives, and a mask
/// would reveal little anyway). Overridable per [`Redactor`].
pub const DEFAULT_MIN_LEN: usize = 6;
/// Encoded fragments shorter than this are not used as patterns.
const MIN_PATTERN: usize = 4;
/// The mask.
pub const MASK: &[u8] = b"***";

struct Patterns {
    pats: Vec<Zeroizing<Vec<u8>>>,
    /// Pattern indices by their first two bytes (every pattern has at least [`MIN_PATTERN`]):
    /// the candidates for key `k` are `idx[starts[k]..starts[k + 1]]`.
    starts: Vec<u32>,
    idx: Vec<u32>,
    /// Whether any pattern starts with this byte.
    first: [bool; 256],
    max_len: usize,
    skipped: usize,
}

fn key2(a: u8, b: u8) -> usize {
    ((a as usize) << 8) | b as usize
}

/// A set of secret values to mask. Cheap to clone; make one [`RedactStream`] per output stream.
#[derive(Clone)]
pub struct Redactor {
    p: Arc<Patterns>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} patterns, [redacted])", self.p.pats.len())
    }
}

fn percent(v: &[u8], upper: bool, plus_space: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else if plus_space && b == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', digits[(b >> 4) as usize], digits[(b & 15) as usize]]);
        }
    }
    out
}

fn json_ascii(s: &str) -> Vec<u8> {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// Every encoded form of `value` that a redactor masks (see the module docs).
pub fn encoded_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![value.to_vec()];
    v.push(hex::encode(value).into_bytes());
    v.push(hex::encode_upper(value).into_bytes());
    for (padded, nopad) in [(&STANDARD, &STANDARD_NO_PAD), (&URL_SAFE, &URL_SAFE_NO_PAD)] {
        v.push(padded.encode(value).into_bytes());
        for k in 0..3usize {
            let mut input = vec![0u8; k];
            input.extend_from_slice(value);
            let enc = nopad.encode(&input).into_bytes();
            // Characters that depend only on the value's bits, not on its neighbours.
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + value.len())) / 6;
            if end > start {
                v.push(enc[start..end].to_vec());
            }
        }
    }
    v.push(percent(value, true, false));
    v.push(percent(value, false, false));
    v.push(percent(value, true, true));
    if let Ok(s) = std::str::from_utf8(value) {
        if let Ok(j) = serde_json::to_string(s) {
            let j = j.into_bytes();
            v.push(j[1..j.len() - 1].to_vec());
        }
        v.push(json_ascii(s));
        v.push(
            json_ascii(s)
                .iter()
                .flat_map(|&b| if b == b'/' { b"\\/".to_vec() } else { vec![b] })
                .collect(),
        );
    }
    v.retain(|p| p.len() >= MIN_PATTERN);
    v.sort();
    v.dedup();
    v
}

impl Redactor {
    /// A redactor for `values` (values shorter than [`DEFAULT_MIN_LEN`] are skipped).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a SecretValue>) -> Self {
        Self::with_min_len(values, DEFAULT_MIN_LEN)
    }

    /// A redactor for `values`; values shorter than `min_len` bytes are skipped (and counted in
    /// [`Redactor::skipped`]).
    pub fn with_min_len<'a>(
        values: impl IntoIterator<Item = &'a SecretValue>,
        min_len: usize,
    ) -> Self {
        let mut pats: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut skipped = 0;
        for value in values {
            if value.len() < min_len.max(1) {
                skipped += 1;
                continue;
            }
            pats.extend(
                encoded_forms(value.expose())
                    .into_iter()
                    .map(Zeroizing::new),
            );
        }
        pats.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
        pats.dedup_by(|a, b| a.as_slice() == b.as_slice());
        // Patterns are sorted, so those sharing a two-byte prefix are contiguous.
        let mut starts = vec![0u32; 65537];
        let mut first = [false; 256];
        for p in &pats {
            starts[key2(p[0], p[1]) + 1] += 1;
            first[p[0] as usize] = true;
        }
        for k in 0..65536 {
            starts[k + 1] += starts[k];
        }
        let idx: Vec<u32> = (0..pats.len() as u32).collect();
        let max_len = pats.iter().map(|p| p.len()).max().unwrap_or(0);
        Redactor {
            p: Arc::new(Patterns {
                pats,
                starts,
                idx,
                first,
                max_len,
                skipped,
            }),
        }
    }

    /// Number of patterns (all encodings of all values).
    pub fn pattern_count(&self) -> usize {
        self.p.pats.len()
    }

    /// Number of values skipped because they are too short.
    pub fn skipped(&self) -> usize {
        self.p.skipped
    }

    /// A new stream (per output: one for stdout, one for stderr, ...).
    pub fn stream(&self) -> RedactStream {
        RedactStream {
            p: self.p.clone(),
            carry: Zeroizing::new(Vec::new()),
        }
    }

    /// Redacts a complete buffer.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        let mut s = self.stream();
        let mut out = Vec::with_capacity(input.len());
        s.feed(input, &mut out);
        s.finish(&mut out);
        out
    }

    /// Wraps a writer: everything written through it is redacted. Call
    /// [`RedactWriter::finish`] (or drop it) at the end of the stream.
    pub fn writer<W: Write>(&self, inner: W) -> RedactWriter<W> {
        RedactWriter {
            stream: self.stream(),
            inner: Some(inner),
            buf: Vec::new(),
        }
    }
}

/// The state of one redacted output stream.
pub struct RedactStream {
    p: Arc<Patterns>,
    carry: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for RedactStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RedactStream(holding {} bytes, [redacted])",
            self.carry.len()
        )
    }
}

impl RedactStream {
    /// Redacts `chunk`, appending what is safe to emit to `out`. Up to `longest pattern - 1`
    /// bytes may be held back until the next call or [`RedactStream::finish`].
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.p.pats.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        let mut buf = Zeroizing::new(std::mem::take(&mut *self.carry));
        buf.extend_from_slice(chunk);
        let used = self.scan(&buf, false, out);
        self.carry.extend_from_slice(&buf[used..]);
    }

    /// Flushes what is held back (the stream ends).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let buf = Zeroizing::new(std::mem::take(&mut *self.carry));
        let used = self.scan(&buf, true, out);
        debug_assert_eq!(used, buf.len());
    }

    /// Emits from `buf`; returns how many bytes were consumed (the rest may start a match).
    fn scan(&self, buf: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
        let p = &*self.p;
        let mut i = 0;
        let mut lit_start = 0;
        while i < buf.len() {
            if !p.first[buf[i] as usize] {
                i += 1;
                continue;
            }
            if i + 1 == buf.len() {
                if last {
                    i += 1;
                    continue;
                }
                break; // one byte that may start a match: wait for more
            }
            let k = key2(buf[i], buf[i + 1]);
            let cands = &p.idx[p.starts[k] as usize..p.starts[k + 1] as usize];
            if cands.is_empty() {
                i += 1;
                continue;
            }
            let rest = &buf[i..];
            let mut best = 0;
            let mut pending = false;
            for &c in cands {
                let pat = &p.pats[c as usize];
                if rest.len() >= pat.len() {
                    if pat.len() > best && rest[..pat.len()] == pat[..] {
                        best = pat.len();
                    }
                } else if !last && pat[..rest.len()] == *rest {
                    pending = true;
                }
            }
            if pending {
                break;
            }
            if best > 0 {
                out.extend_from_slice(&buf[lit_start..i]);
                out.extend_from_slice(MASK);
                i += best;
                lit_start = i;
            } else {
                i += 1;
            }
        }
        out.extend_from_slice(&buf[lit_start..i]);
        debug_assert!(buf.len() - i < p.max_len.max(1));
        i
    }
}

/// A [`Write`] adapter that redacts everything written through it.
pub struct RedactWriter<W: Write> {
    stream: RedactStream,
    inner: Option<W>,
    buf: Vec<u8>,
}

impl<W: Write> RedactWriter<W> {
    /// Flushes the held-back tail and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_tail()?;
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("redact writer already finished"))
    }

    fn flush_tail(&mut self) -> io::Result<()> {
        if let Some(w) = self.inner.as_mut() {
            self.buf.clear();
            self.stream.finish(&mut self.buf);
            w.write_all(&self.buf)?;
            w.flush()?;
        }
        Ok(())
    }
}

impl<W: Write> Write for RedactWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let w = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::other("redact writer already finished"))?;
        self.buf.clear();
        self.stream.feed(data, &mut self.buf);
        w.write_all(&self.buf)?;
        Ok(data.len())
    }

    /// Flushes the inner writer. Held-back bytes (a possible match prefix) stay held back.
    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl<W: Write> Drop for RedactWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush_tail();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_and_encodings_and_splits() {
        let s = SecretValue::from("p@ss w/rd\"42");
        let r = Redactor::new([&s]);
        let line = format!(
            "a={} b={} c={} d={} e={}",
            "p@ss w/rd\"42",
            STANDARD.encode("p@ss w/rd\"42"),
            hex::encode("p@ss w/rd\"42"),
            "p%40ss%20w%2Frd%2242",
            serde_json::to_string("p@ss w/rd\"42").unwrap()
        );
        let out = String::from_utf8(r.redact(line.as_bytes())).unwrap();
        assert_eq!(out, "a=*** b=*** c=*** d=*** e=\"***\"");
        for cut in 0..line.len() {
            let mut st = r.stream();
            let mut o = Vec::new();
            st.feed(&line.as_bytes()[..cut], &mut o);
            st.feed(&line.as_bytes()[cut..], &mut o);
            st.finish(&mut o);
            assert_eq!(String::from_utf8(o).unwrap(), out, "cut at {cut}");
        }
    }

    #[test]
    fn short_values_are_skipped() {
        let s = SecretValue::from("abc");
        let r = Redactor::new([&s]);
        assert_eq!(r.skipped(), 1);
        assert_eq!(r.redact(b"abc abc"), b"abc abc");
    }

    #[test]
    fn writer_flushes_tail_on_finish() {
        let s = SecretValue::from("supersecret");
        let r = Redactor::new([&s]);
        let mut w = r.writer(Vec::new());
        w.write_all(b"x supers").unwrap();
        w.write_all(b"ecret y super").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out, b"x *** y super");
    }
}
