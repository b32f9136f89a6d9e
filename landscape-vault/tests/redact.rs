//! Redaction of every listed encoding, across arbitrary chunk boundaries (proptest).

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use landscape_vault::{Redactor, SecretValue};
use proptest::prelude::*;

/// Filler that no encoding of any value produces and that does not start a mask.
const NOISE: &[u8] = b" \n\t|,;:!?()[]{}<>#";

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(NOISE), 0..40)
}

/// Values whose raw and JSON forms contain no NOISE bytes either.
fn text_secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9@$%^&_=+~./'\"\\\\\u{1}\u{7f}é€😀-]{6,24}"
}

fn byte_secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 6..32)
}

/// Independent encoders (not the library's).
fn percent(v: &[u8], upper: bool) -> Vec<u8> {
    v.iter()
        .flat_map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                vec![b]
            } else if upper {
                format!("%{b:02X}").into_bytes()
            } else {
                format!("%{b:02x}").into_bytes()
            }
        })
        .collect()
}

fn json_ascii(s: &str) -> Vec<u8> {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            ' '..='~' => o.push(c),
            _ => {
                let mut b = [0u16; 2];
                for u in c.encode_utf16(&mut b) {
                    o.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    o.into_bytes()
}

fn run_chunked(r: &Redactor, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut s = r.stream();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts {
        s.feed(&input[prev..c], &mut out);
        prev = c;
    }
    s.feed(&input[prev..], &mut out);
    s.finish(&mut out);
    out
}

/// `out` must be `a`, at most `left` leftover bytes, `***`, at most `right` bytes, then `b`.
fn assert_masked(
    out: &[u8],
    a: &[u8],
    b: &[u8],
    left: usize,
    right: usize,
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(
        out.starts_with(a) && out.ends_with(b),
        "{what}: noise changed: {:?}",
        String::from_utf8_lossy(out)
    );
    prop_assert!(out.len() >= a.len() + b.len(), "{what}: overlap");
    let mid = &out[a.len()..out.len() - b.len()];
    let pos = mid.windows(3).position(|w| w == b"***");
    prop_assert!(
        pos.is_some(),
        "{what}: not masked: {:?}",
        String::from_utf8_lossy(mid)
    );
    let pos = pos.unwrap_or(0);
    prop_assert!(
        pos <= left && mid.len() - pos - 3 <= right,
        "{what}: too much left: {:?}",
        String::from_utf8_lossy(mid)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn text_forms_are_masked_exactly_across_chunks(
        v in text_secret(), a in noise(), b in noise(), form in 0usize..6,
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let secret = SecretValue::from(v.as_str());
        let r = Redactor::new([&secret]);
        let (enc, what) = match form {
            0 => (v.as_bytes().to_vec(), "raw"),
            1 => { let j = serde_json::to_string(&v).unwrap(); (j.as_bytes()[1..j.len() - 1].to_vec(), "json") }
            2 => (json_ascii(&v), "json-ascii"),
            3 => (percent(v.as_bytes(), true), "percent"),
            4 => (percent(v.as_bytes(), false), "percent-lower"),
            _ => (hex::encode(&v).into_bytes(), "hex"),
        };
        let input = [a.as_slice(), &enc, b.as_slice()].concat();
        let one = r.redact(&input);
        prop_assert_eq!(&run_chunked(&r, &input, &cuts), &one);
        prop_assert_eq!(one, [a.as_slice(), b"***", b.as_slice()].concat(), "{}", what);
    }

    #[test]
    fn base64_at_every_alignment_is_masked_across_chunks(
        v in byte_secret(), pre in prop::collection::vec(any::<u8>(), 0..3),
        post in prop::collection::vec(any::<u8>(), 0..3), a in noise(), b in noise(), url in any::<bool>(),
        upper_hex in any::<bool>(), cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let secret = SecretValue::new(v.clone());
        let r = Redactor::new([&secret]);
        let engine = if url { &URL_SAFE } else { &STANDARD };
        // The value inside a larger blob, at byte offset 0, 1 or 2 modulo 3.
        let enc = engine.encode([pre.as_slice(), &v, &post].concat()).into_bytes();
        let input = [a.as_slice(), &enc, b.as_slice()].concat();
        let one = r.redact(&input);
        prop_assert_eq!(&run_chunked(&r, &input, &cuts), &one);
        // What is left are the characters of the neighbour bytes plus at most one character on
        // each side that mixes neighbour and value bits: <= 2 neighbour bytes on the left give
        // <= 3 characters, on the right <= 4 characters and 2 of padding.
        assert_masked(&one, &a, &b, 3, 6, "base64")?;
        if pre.is_empty() && post.is_empty() {
            prop_assert_eq!(&one, &[a.as_slice(), b"***", b.as_slice()].concat());
        }
        let h = if upper_hex { hex::encode_upper(&v) } else { hex::encode(&v) };
        let input = [a.as_slice(), h.as_bytes(), b.as_slice()].concat();
        prop_assert_eq!(run_chunked(&r, &input, &cuts), [a.as_slice(), b"***", b.as_slice()].concat());
    }

    #[test]
    fn several_secrets_interleaved_stream_like_one_shot(
        vs in prop::collection::vec(text_secret(), 1..4), order in prop::collection::vec(0usize..4, 1..10),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let secrets: Vec<SecretValue> = vs.iter().map(|s| SecretValue::from(s.as_str())).collect();
        let r = Redactor::new(secrets.iter());
        let mut input = Vec::new();
        for &i in &order {
            input.extend_from_slice(b" | ");
            input.extend_from_slice(vs[i % vs.len()].as_bytes());
        }
        input.extend_from_slice(b" |");
        let one = r.redact(&input);
        prop_assert_eq!(&run_chunked(&r, &input, &cuts), &one);
        let text = String::from_utf8_lossy(&one);
        prop_assert_eq!(text.matches("***").count(), order.len(), "{}", text);
    }
}

#[test]
fn a_large_log_through_the_writer_is_masked() {
    use std::io::Write;
    let s = SecretValue::from("Sup3r-S3cret-Token");
    let r = Redactor::new([&s]);
    let mut w = r.writer(Vec::new());
    let line =
        "INFO connecting with token Sup3r-S3cret-Token and b64 U3VwM3ItUzNjcmV0LVRva2Vu ok\n";
    for chunk in line.repeat(1000).as_bytes().chunks(7) {
        w.write_all(chunk).unwrap();
    }
    let out = String::from_utf8(w.finish().unwrap()).unwrap();
    assert_eq!(out.matches("***").count(), 2000);
    assert!(!out.contains("Sup3r") && !out.contains("U3VwM3ItUzNjcmV0"));
}
