//! DNS wire format for the landscape network's name server.
//!
//! Each landscape's private network namespace runs a tiny authoritative responder on its
//! bridge address; services resolve each other by name (`api`, `api.<landscape>`, `api-0`)
//! the way Docker's embedded DNS does it: every A record of the service's healthy replicas,
//! TTL 0, the order rotated per query (round robin).
//!
//! This module is the pure part: a [`Table`] of names and [`answer`], which turns one query
//! datagram into one response datagram (RFC 1035 §4). No sockets, no threads, one
//! allocation per response.
// Crate-private items, used by the network holder (which arrives separately).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Length of a DNS message header.
const HEADER_LEN: usize = 12;
/// Longest name on the wire: length octets, label octets and the terminating zero.
const MAX_NAME_WIRE: usize = 255;
/// Largest UDP response a client without EDNS accepts (RFC 1035 §4.2.1).
const MAX_UDP: usize = 512;
/// Size of one answer record: pointer, type, class, TTL, RDLENGTH, IPv4 address.
const A_RR_LEN: usize = 16;

/// QTYPE A.
const TYPE_A: u16 = 1;
/// QTYPE `*` (ANY).
const TYPE_ANY: u16 = 255;
/// QCLASS IN.
const CLASS_IN: u16 = 1;
/// QCLASS `*` (ANY).
const CLASS_ANY: u16 = 255;

/// RCODE: no error.
const NOERROR: u8 = 0;
/// RCODE: the query could not be interpreted.
const FORMERR: u8 = 1;
/// RCODE: the name does not exist.
const NXDOMAIN: u8 = 3;
/// RCODE: the kind of query is not supported.
const NOTIMP: u8 = 4;
/// RCODE: the server refuses to answer (a class other than IN).
const REFUSED: u8 = 5;

/// The names a landscape's DNS answers: lower-case name -> IPv4 addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    /// Lower-case names without a trailing dot, each with at least one address.
    names: HashMap<String, Vec<Ipv4Addr>>,
    /// Lower-case domain without a trailing dot: `api.<domain>` also matches `api`.
    domain: Option<String>,
}

impl Table {
    /// An empty table. With `domain` (e.g. `"shop"`), `api.shop` and `api.shop.` also match
    /// the name `api`; an empty domain is the same as none.
    pub(crate) fn new(domain: Option<&str>) -> Table {
        let domain = domain.map(normalize).filter(|d| !d.is_empty());
        Table {
            names: HashMap::new(),
            domain,
        }
    }

    /// Sets the addresses of `name` (case and a trailing dot do not matter), in the order
    /// answers start from; an empty `addrs` removes the name.
    pub(crate) fn set(&mut self, name: &str, addrs: Vec<Ipv4Addr>) {
        let name = normalize(name);
        if addrs.is_empty() {
            self.names.remove(&name);
        } else {
            self.names.insert(name, addrs);
        }
    }

    /// The addresses of `qname`: compared ASCII-case-insensitively, a trailing dot ignored,
    /// the table's domain suffix stripped when the full name is not known.
    pub(crate) fn lookup(&self, qname: &str) -> Option<&[Ipv4Addr]> {
        let bytes = qname.as_bytes();
        let bytes = bytes.strip_suffix(b".").unwrap_or(bytes);
        let mut buf = [0u8; MAX_NAME_WIRE];
        let dst = buf.get_mut(..bytes.len())?;
        dst.copy_from_slice(bytes);
        dst.make_ascii_lowercase();
        self.lookup_lower(dst)
    }

    /// Lookup of a name that is already lower case and has no trailing dot.
    fn lookup_lower(&self, name: &[u8]) -> Option<&[Ipv4Addr]> {
        let name = std::str::from_utf8(name).ok()?;
        if let Some(addrs) = self.names.get(name) {
            return Some(addrs);
        }
        let domain = self.domain.as_deref()?;
        let short = name.strip_suffix(domain)?.strip_suffix('.')?;
        self.names.get(short).map(Vec::as_slice)
    }
}

/// `name` in lower case without a trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The question of a query, as far as [`answer`] needs it.
struct Question {
    /// Offset just past QCLASS: the question section is `query[HEADER_LEN..end]`.
    end: usize,
    /// Length of the lower-case dotted name in the caller's buffer, or `None` when a label
    /// holds a byte no landscape name has (then the name is unknown).
    name_len: Option<usize>,
    /// QTYPE.
    qtype: u16,
    /// QCLASS.
    qclass: u16,
}

/// Parses the question at offset 12, writing its lower-case dotted name into `buf`.
/// `None` when the question is truncated or malformed (compression pointers, reserved
/// label types, a name over 255 octets).
fn parse_question(query: &[u8], buf: &mut [u8; MAX_NAME_WIRE]) -> Option<Question> {
    let mut pos = HEADER_LEN;
    let mut wire_len = 0usize;
    let mut out = 0usize;
    let mut printable = true;
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        // 0b11 is a compression pointer (not expected in a question), 0b01/0b10 are
        // reserved; both leave a label over 63 octets unrepresentable.
        if len & 0xC0 != 0 {
            return None;
        }
        // This label's length octet and bytes, plus the terminating zero still to come.
        wire_len += 1 + len;
        if wire_len + 1 > MAX_NAME_WIRE {
            return None;
        }
        let label = query.get(pos..pos + len)?;
        pos += len;
        if out > 0 {
            *buf.get_mut(out)? = b'.';
            out += 1;
        }
        let dst = buf.get_mut(out..out + len)?;
        dst.copy_from_slice(label);
        dst.make_ascii_lowercase();
        out += len;
        printable &= label.iter().all(|&b| b.is_ascii_graphic() && b != b'.');
    }
    let fixed = query.get(pos..pos + 4)?;
    Some(Question {
        end: pos + 4,
        name_len: printable.then_some(out),
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
    })
}

/// A response header: the query's ID, opcode and RD; QR and AA set, RA clear.
fn header(query: &[u8], rcode: u8, qdcount: u16, ancount: u16) -> [u8; HEADER_LEN] {
    let opcode_rd = query[2] & 0x79;
    let [qd0, qd1] = qdcount.to_be_bytes();
    let [an0, an1] = ancount.to_be_bytes();
    [
        query[0],
        query[1],
        0x80 | opcode_rd | 0x04,
        rcode & 0x0F,
        qd0,
        qd1,
        an0,
        an1,
        0,
        0,
        0,
        0,
    ]
}

/// Answers one DNS query datagram. `rotate` is a counter the caller increments per query;
/// the A records are returned starting at index `rotate % len`. Returns `None` for
/// datagrams that must be dropped (shorter than a header, or responses (QR=1)); otherwise
/// a response datagram of at most 512 bytes:
///
/// - opcode other than QUERY: NOTIMP; QDCOUNT other than 1 or a malformed question:
///   FORMERR; both without a question section;
/// - a class other than IN (or ANY): REFUSED;
/// - an unknown name: NXDOMAIN;
/// - a known name: NOERROR with one A record per address (TTL 0) for QTYPE A or ANY, none
///   (NODATA) for any other type. Records past the 512-byte limit are left out, without
///   TC: rotation still spreads clients over every address.
///
/// The question is echoed byte for byte (0x20 case randomisation survives), additional
/// records in the query (EDNS OPT) are ignored, and AA is set on every response.
pub(crate) fn answer(query: &[u8], table: &Table, rotate: usize) -> Option<Vec<u8>> {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (query[2] >> 3) & 0x0F;
    if opcode != 0 {
        return Some(header(query, NOTIMP, 0, 0).to_vec());
    }
    if u16::from_be_bytes([query[4], query[5]]) != 1 {
        return Some(header(query, FORMERR, 0, 0).to_vec());
    }
    let mut buf = [0u8; MAX_NAME_WIRE];
    let Some(question) = parse_question(query, &mut buf) else {
        return Some(header(query, FORMERR, 0, 0).to_vec());
    };
    let echoed = &query[HEADER_LEN..question.end];

    let (rcode, addrs): (u8, &[Ipv4Addr]) =
        if question.qclass != CLASS_IN && question.qclass != CLASS_ANY {
            (REFUSED, &[])
        } else {
            let found = question
                .name_len
                .and_then(|len| table.lookup_lower(&buf[..len]));
            match found {
                None => (NXDOMAIN, &[]),
                Some(addrs) if matches!(question.qtype, TYPE_A | TYPE_ANY) => (NOERROR, addrs),
                Some(_) => (NOERROR, &[]),
            }
        };

    let room = (MAX_UDP - HEADER_LEN).saturating_sub(echoed.len()) / A_RR_LEN;
    let count = addrs.len().min(room).min(usize::from(u16::MAX));
    let mut response = Vec::with_capacity(HEADER_LEN + echoed.len() + count * A_RR_LEN);
    // `count` fits in a u16: it is capped above.
    response.extend_from_slice(&header(query, rcode, 1, count as u16));
    response.extend_from_slice(echoed);
    if count > 0 {
        let start = rotate % addrs.len();
        let rotated = addrs[start..].iter().chain(&addrs[..start]);
        for addr in rotated.take(count) {
            // NAME: pointer to the question's name at offset 12; TYPE A; CLASS IN; TTL 0.
            response.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
            response.extend_from_slice(&addr.octets());
        }
    }
    Some(response)
}

/// Whether `query` should go to the upstream resolver (egress on): a well-formed QUERY for
/// class IN whose name is neither in `table` nor inside the table's own domain (the
/// landscape's names are answered here, NXDOMAIN included, and never leave the network).
pub(crate) fn forwardable(query: &[u8], table: &Table) -> bool {
    if query.len() < HEADER_LEN
        || query[2] & 0x80 != 0
        || (query[2] >> 3) & 0x0F != 0
        || u16::from_be_bytes([query[4], query[5]]) != 1
    {
        return false;
    }
    let mut buf = [0u8; MAX_NAME_WIRE];
    let Some(question) = parse_question(query, &mut buf) else {
        return false;
    };
    if question.qclass != CLASS_IN {
        return false;
    }
    let Some(len) = question.name_len else {
        return true;
    };
    let name = &buf[..len];
    if table.lookup_lower(name).is_some() {
        return false;
    }
    match table.domain.as_deref() {
        Some(d) => {
            let d = d.as_bytes();
            !(name == d
                || (name.len() > d.len()
                    && name.ends_with(d)
                    && name[name.len() - d.len() - 1] == b'.'))
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u16 = 1;
    const AAAA: u16 = 28;
    const IN: u16 = 1;

    /// A query with ID 0x1234, RD set, one question for `name` (dotted, case kept).
    fn query(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&qclass.to_be_bytes());
        q
    }

    /// A response decoded by hand, independently of the encoder.
    #[derive(Debug)]
    struct Decoded {
        id: u16,
        qr: bool,
        opcode: u8,
        aa: bool,
        tc: bool,
        rd: bool,
        ra: bool,
        rcode: u8,
        qdcount: u16,
        arcount: u16,
        nscount: u16,
        /// The question section's bytes.
        question: Vec<u8>,
        /// (TTL, address) of each answer record.
        answers: Vec<(u32, Ipv4Addr)>,
    }

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn decode(r: &[u8]) -> Decoded {
        assert!(r.len() >= 12, "short response {r:?}");
        let qdcount = be16(r, 4);
        let ancount = be16(r, 6);
        let mut pos = 12;
        for _ in 0..qdcount {
            loop {
                let len = r[pos] as usize;
                pos += 1;
                if len == 0 {
                    break;
                }
                assert!(len < 64, "label type in our question");
                pos += len;
            }
            pos += 4;
        }
        let question = r[12..pos].to_vec();
        let mut answers = Vec::new();
        for _ in 0..ancount {
            assert_eq!(
                &r[pos..pos + 2],
                &[0xC0, 0x0C],
                "name is a pointer to the question"
            );
            assert_eq!(be16(r, pos + 2), A, "type A");
            assert_eq!(be16(r, pos + 4), IN, "class IN");
            let ttl = u32::from_be_bytes([r[pos + 6], r[pos + 7], r[pos + 8], r[pos + 9]]);
            assert_eq!(be16(r, pos + 10), 4, "rdlength");
            let addr = Ipv4Addr::new(r[pos + 12], r[pos + 13], r[pos + 14], r[pos + 15]);
            answers.push((ttl, addr));
            pos += 16;
        }
        assert_eq!(pos, r.len(), "trailing bytes in response");
        Decoded {
            id: be16(r, 0),
            qr: r[2] & 0x80 != 0,
            opcode: (r[2] >> 3) & 0x0F,
            aa: r[2] & 0x04 != 0,
            tc: r[2] & 0x02 != 0,
            rd: r[2] & 0x01 != 0,
            ra: r[3] & 0x80 != 0,
            rcode: r[3] & 0x0F,
            qdcount,
            nscount: be16(r, 8),
            arcount: be16(r, 10),
            question,
            answers,
        }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, 0, last)
    }

    fn table() -> Table {
        let mut t = Table::new(Some("shop"));
        t.set("api", vec![ip(2), ip(3)]);
        t.set("api-0", vec![ip(2)]);
        t.set("web", vec![ip(9)]);
        t
    }

    fn addrs(d: &Decoded) -> Vec<Ipv4Addr> {
        d.answers.iter().map(|&(_, a)| a).collect()
    }

    #[test]
    fn a_query_answers_every_address_with_ttl_0() {
        let q = query("api", A, IN);
        let d = decode(&answer(&q, &table(), 0).unwrap());
        assert_eq!(d.id, 0x1234);
        assert!(d.qr && d.aa && d.rd && !d.ra && !d.tc);
        assert_eq!(d.opcode, 0);
        assert_eq!(d.rcode, NOERROR);
        assert_eq!(d.qdcount, 1);
        assert_eq!((d.nscount, d.arcount), (0, 0));
        assert_eq!(d.question, q[12..]);
        assert_eq!(d.answers, vec![(0, ip(2)), (0, ip(3))]);
    }

    #[test]
    fn rotation_starts_at_counter_modulo_len() {
        let q = query("api", A, IN);
        let t = table();
        let at = |n| addrs(&decode(&answer(&q, &t, n).unwrap()));
        assert_eq!(at(0), vec![ip(2), ip(3)]);
        assert_eq!(at(1), vec![ip(3), ip(2)]);
        assert_eq!(at(2), vec![ip(2), ip(3)]);
        assert_eq!(at(usize::MAX), vec![ip(3), ip(2)]);

        let mut t = Table::new(None);
        t.set("db", vec![ip(1), ip(2), ip(3)]);
        let q = query("db", A, IN);
        let d = decode(&answer(&q, &t, 5).unwrap());
        assert_eq!(addrs(&d), vec![ip(3), ip(1), ip(2)]);
    }

    #[test]
    fn any_query_answers_a_records() {
        let d = decode(&answer(&query("web", TYPE_ANY, IN), &table(), 0).unwrap());
        assert_eq!(d.rcode, NOERROR);
        assert_eq!(addrs(&d), vec![ip(9)]);
        let d = decode(&answer(&query("web", A, CLASS_ANY), &table(), 0).unwrap());
        assert_eq!(addrs(&d), vec![ip(9)]);
    }

    #[test]
    fn other_types_of_known_names_are_nodata() {
        for qtype in [AAAA, 5, 15, 16, 33, 65] {
            let d = decode(&answer(&query("api", qtype, IN), &table(), 0).unwrap());
            assert_eq!(d.rcode, NOERROR, "qtype {qtype}");
            assert!(d.aa);
            assert_eq!(d.qdcount, 1);
            assert!(d.answers.is_empty());
        }
    }

    #[test]
    fn only_foreign_names_are_forwarded() {
        let mut t = Table::new(Some("shop"));
        t.set("api", vec![Ipv4Addr::new(10, 88, 0, 4)]);
        assert!(forwardable(&query("example.com", A, IN), &t));
        assert!(forwardable(&query("deb.debian.org", AAAA, IN), &t));
        for own in ["api", "API.shop", "nope.shop", "shop", "x.y.shop"] {
            assert!(!forwardable(&query(own, A, IN), &t), "{own}");
        }
        assert!(!forwardable(&query("example.com", A, 3), &t));
        let mut response = query("example.com", A, IN);
        response[2] |= 0x80;
        assert!(!forwardable(&response, &t));
        assert!(!forwardable(&[0u8; 5], &t));
    }

    #[test]
    fn unknown_names_are_nxdomain() {
        for name in ["nope", "api.other", "shop", "", "api.shop.shop", "x.api"] {
            for qtype in [A, AAAA] {
                let q = query(name, qtype, IN);
                let d = decode(&answer(&q, &table(), 0).unwrap());
                assert_eq!(d.rcode, NXDOMAIN, "{name:?}");
                assert!(d.aa && d.qr);
                assert_eq!(d.id, 0x1234);
                assert_eq!(d.question, q[12..]);
                assert!(d.answers.is_empty());
            }
        }
    }

    #[test]
    fn domain_suffix_trailing_dot_and_case() {
        let t = table();
        for name in ["api", "API", "api.", "api.shop", "Api.SHOP.", "api.shop."] {
            assert_eq!(t.lookup(name), Some(&[ip(2), ip(3)][..]), "{name:?}");
            let q = query(name, A, IN);
            let d = decode(&answer(&q, &t, 0).unwrap());
            assert_eq!(addrs(&d), vec![ip(2), ip(3)], "{name:?}");
            // The question comes back in the client's case (0x20 randomisation).
            assert_eq!(d.question, q[12..]);
        }
        assert_eq!(t.lookup("api-0.shop"), Some(&[ip(2)][..]));
        assert_eq!(t.lookup("api.shopx"), None);
        assert_eq!(t.lookup("apishop"), None);
        assert_eq!(t.lookup("shop"), None);
        assert_eq!(t.lookup(""), None);
        assert_eq!(t.lookup(&"a".repeat(300)), None);

        let no_domain = {
            let mut t = Table::new(None);
            t.set("api", vec![ip(2)]);
            t
        };
        assert_eq!(no_domain.lookup("api.shop"), None);
        let d = decode(&answer(&query("api.shop", A, IN), &no_domain, 0).unwrap());
        assert_eq!(d.rcode, NXDOMAIN);
    }

    #[test]
    fn table_set_normalizes_and_empty_removes() {
        let mut t = Table::new(Some("Shop."));
        assert_eq!(t, {
            let mut u = Table::new(Some("shop"));
            u.set("x", vec![ip(1)]);
            u.set("x", Vec::new());
            u
        });
        t.set("Cart.", vec![ip(4)]);
        assert_eq!(t.lookup("cart.shop"), Some(&[ip(4)][..]));
        t.set("CART", vec![ip(5), ip(6)]);
        assert_eq!(t.lookup("cart"), Some(&[ip(5), ip(6)][..]));
        t.set("cart", Vec::new());
        assert_eq!(t.lookup("cart"), None);
        assert_eq!(t, Table::new(Some("shop")));
        assert_eq!(Table::new(Some("")), Table::new(None));
        assert_eq!(Table::default(), Table::new(None));
        // A full name wins over a stripped suffix.
        t.set("a.shop", vec![ip(7)]);
        t.set("a", vec![ip(8)]);
        assert_eq!(t.lookup("a.shop"), Some(&[ip(7)][..]));
    }

    #[test]
    fn non_printable_labels_are_unknown() {
        let mut t = Table::new(None);
        t.set("api", vec![ip(2)]);
        for label in [
            &b"ap\x00"[..],
            b"ap i",
            b"a\x7fi",
            b"ap\xc3\xa9",
            b"a.i",
            b"\n",
        ] {
            let mut q = vec![0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            q.push(label.len() as u8);
            q.extend_from_slice(label);
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            let d = decode(&answer(&q, &t, 0).unwrap());
            assert_eq!(d.rcode, NXDOMAIN, "{label:?}");
            assert_eq!(d.id, 0xABCD);
            assert!(!d.rd);
        }
        // Two labels `a` and `i` are not the label `a.i`.
        t.set("a.i", vec![ip(3)]);
        let d = decode(&answer(&query("a.i", A, IN), &t, 0).unwrap());
        assert_eq!(addrs(&d), vec![ip(3)]);
    }

    #[test]
    fn other_classes_are_refused() {
        for qclass in [3, 4, 254] {
            let d = decode(&answer(&query("api", A, qclass), &table(), 0).unwrap());
            assert_eq!(d.rcode, REFUSED);
            assert_eq!(d.qdcount, 1);
            assert!(d.answers.is_empty());
        }
    }

    fn assert_formerr(q: &[u8]) {
        let r = answer(q, &table(), 0).unwrap_or_else(|| panic!("dropped {q:?}"));
        let d = decode(&r);
        assert_eq!(d.rcode, FORMERR, "{q:?}");
        assert_eq!(d.id, be16(q, 0));
        assert!(d.qr && d.rd == (q[2] & 1 != 0));
        assert_eq!(d.qdcount, 0);
        assert!(d.answers.is_empty());
        assert_eq!(r.len(), 12);
    }

    #[test]
    fn truncated_questions_are_formerr() {
        let q = query("api.shop", A, IN);
        for len in 12..q.len() {
            assert_formerr(&q[..len]);
        }
    }

    #[test]
    fn malformed_questions_are_formerr() {
        let head = [0x55, 0x66, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let with = |name: &[u8]| {
            let mut q = head.to_vec();
            q.extend_from_slice(name);
            q.extend_from_slice(&[0, 1, 0, 1]);
            q
        };
        // A compression pointer in the question.
        assert_formerr(&with(&[3, b'a', b'p', b'i', 0xC0, 0x0C]));
        assert_formerr(&with(&[0xC0, 0x0C]));
        // Label lengths over 63 (reserved label types 0b01 and 0b10).
        let mut long = vec![64];
        long.extend_from_slice(&[b'a'; 64]);
        long.push(0);
        assert_formerr(&with(&long));
        assert_formerr(&with(&[0x80, b'a', 0]));
        // A name over 255 octets: 5 labels of 63.
        let mut huge = Vec::new();
        for _ in 0..5 {
            huge.push(63);
            huge.extend_from_slice(&[b'a'; 63]);
        }
        huge.push(0);
        assert_formerr(&with(&huge));
        // Exactly 255 octets is fine: 3 labels of 63, one of 61, the zero.
        let mut max = Vec::new();
        for len in [63, 63, 63, 61] {
            max.push(len);
            max.extend(vec![b'a'; len as usize]);
        }
        max.push(0);
        assert_eq!(max.len(), 255);
        let d = decode(&answer(&with(&max), &table(), 0).unwrap());
        assert_eq!(d.rcode, NXDOMAIN);
        max.insert(max.len() - 1, b'a');
        // The last label's length octet, 62 bytes and the zero from the end.
        *max.iter_mut().rev().nth(63).unwrap() = 62;
        assert_formerr(&with(&max));
        // QDCOUNT other than 1.
        for qdcount in [0u16, 2, 0xFFFF] {
            let mut q = query("api", A, IN);
            q[4..6].copy_from_slice(&qdcount.to_be_bytes());
            assert_formerr(&q);
        }
        // A bare header with QDCOUNT 1.
        assert_formerr(&head);
        // Garbage after a readable header.
        assert_formerr(&[0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn other_opcodes_are_notimp() {
        for opcode in [1u8, 2, 4, 5, 15] {
            let mut q = query("api", A, IN);
            q[2] = (opcode << 3) | 1;
            let d = decode(&answer(&q, &table(), 0).unwrap());
            assert_eq!(d.rcode, NOTIMP);
            assert_eq!(d.opcode, opcode);
            assert!(d.qr && d.rd);
            assert_eq!(d.qdcount, 0);
        }
    }

    #[test]
    fn responses_and_short_datagrams_are_dropped() {
        let mut q = query("api", A, IN);
        q[2] |= 0x80;
        assert_eq!(answer(&q, &table(), 0), None);
        let ok = answer(&query("api", A, IN), &table(), 0).unwrap();
        assert_eq!(answer(&ok, &table(), 0), None);
        for len in 0..12 {
            assert_eq!(answer(&query("api", A, IN)[..len], &table(), 0), None);
        }
    }

    #[test]
    fn edns_opt_is_ignored() {
        let mut q = query("api", A, IN);
        let plain_len = q.len();
        q[11] = 1; // ARCOUNT 1
                   // OPT: root name, type 41, UDP size 1232, extended rcode/version/flags 0 (DO bit set), no data.
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        let d = decode(&answer(&q, &table(), 1).unwrap());
        assert_eq!(d.rcode, NOERROR);
        assert_eq!(d.arcount, 0);
        assert_eq!(d.question, q[12..plain_len]);
        assert_eq!(addrs(&d), vec![ip(3), ip(2)]);
    }

    #[test]
    fn many_addresses_fit_in_512_bytes() {
        let mut t = Table::new(None);
        let many: Vec<_> = (1..=100).map(ip).collect();
        t.set("big", many.clone());
        let r = answer(&query("big", A, IN), &t, 40).unwrap();
        assert!(r.len() <= 512);
        let d = decode(&r);
        assert!(!d.tc);
        let got = addrs(&d);
        assert_eq!(got.len(), (512 - 12 - 9) / 16);
        assert_eq!(got, many[40..40 + got.len()]);
        // Wrapping around the end.
        let d = decode(&answer(&query("big", A, IN), &t, 99).unwrap());
        assert_eq!(addrs(&d)[..2], [ip(100), ip(1)]);
    }

    /// xorshift64: enough randomness to shake the parser, no dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Any response must be a well-formed header with the query's ID; FORMERR/NOTIMP ones
    /// carry nothing else.
    fn check_response(q: &[u8], r: Option<Vec<u8>>) {
        let Some(r) = r else {
            assert!(q.len() < 12 || q[2] & 0x80 != 0, "dropped {q:?}");
            return;
        };
        assert!(r.len() >= 12 && r.len() <= 512);
        assert_eq!(r[..2], q[..2]);
        assert!(r[2] & 0x80 != 0);
        if matches!(r[3] & 0x0F, FORMERR | NOTIMP) {
            assert_eq!(r.len(), 12);
        } else {
            let d = decode(&r);
            assert!(d.answers.iter().all(|&(ttl, _)| ttl == 0));
        }
    }

    #[test]
    fn random_and_mutated_datagrams_never_panic() {
        let t = table();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seeds = [
            query("api", A, IN),
            query("Api.Shop.", TYPE_ANY, IN),
            query("nope.example", AAAA, IN),
            query("api-0.shop", A, CLASS_ANY),
        ];
        for round in 0..20_000 {
            let q: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(80);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut q = seeds[rng.below(seeds.len())].clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(q.len());
                    q[at] = rng.next() as u8;
                }
                // Keep most mutants parseable as queries.
                if rng.below(4) != 0 {
                    q[2] &= 0x07;
                }
                let keep = q.len() - rng.below(q.len() / 2);
                q.truncate(keep);
                q
            };
            let r = answer(&q, &t, rng.next() as usize);
            check_response(&q, r);
        }
    }
}
