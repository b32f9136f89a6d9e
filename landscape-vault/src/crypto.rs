//! Small wrappers over the primitives: XChaCha20-Poly1305, HMAC-SHA256, Argon2id, OS randomness.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Argon2id cost parameters, stored in the store header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        KdfParams {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

/// Fills a fresh array from the OS random number generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| Error::Crypto(format!("OS random number generator: {e}")))?;
    Ok(b)
}

/// Seals `plaintext` under `key` with a fresh random 192-bit nonce. Returns (nonce, ciphertext).
pub(crate) fn seal(key: &[u8; 32], ad: &[u8], plaintext: &[u8]) -> Result<([u8; 24], Vec<u8>)> {
    let nonce = random::<24>()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .map_err(|_| Error::Crypto("encryption failed".into()))?;
    Ok((nonce, ct))
}

/// Opens a sealed value; `None` when authentication fails (wrong key, wrong AD, altered bytes).
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8],
    ad: &[u8],
    ct: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != 24 {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .ok()
        .map(Zeroizing::new)
}

/// HMAC-SHA256 over the concatenation of `parts`, each prefixed with its length.
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time check of an HMAC-SHA256 tag.
pub(crate) fn mac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.verify_slice(tag).is_ok()
}

/// Derives a 32-byte key from a passphrase with Argon2id.
pub(crate) fn argon2id(pass: &[u8], salt: &[u8], p: &KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| Error::Crypto(format!("invalid Argon2id parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass, salt, out.as_mut())
        .map_err(|e| Error::Crypto(format!("Argon2id: {e}")))?;
    Ok(out)
}

/// Length-prefixed associated data, so that ("ab","c") and ("a","bc") differ.
pub(crate) fn ad(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_ad_binding() {
        let key = [7u8; 32];
        let (n, ct) = seal(&key, b"ad-1", b"value").unwrap();
        assert_eq!(open(&key, &n, b"ad-1", &ct).unwrap().as_slice(), b"value");
        assert!(open(&key, &n, b"ad-2", &ct).is_none());
        assert!(open(&[8u8; 32], &n, b"ad-1", &ct).is_none());
        let (n2, _) = seal(&key, b"ad-1", b"value").unwrap();
        assert_ne!(n, n2, "nonces must be fresh");
    }

    #[test]
    fn mac_is_length_prefixed() {
        assert_ne!(mac(b"k", &[b"ab", b"c"]), mac(b"k", &[b"a", b"bc"]));
        let t = mac(b"k", &[b"x"]);
        assert!(mac_verify(b"k", &[b"x"], &t));
        assert!(!mac_verify(b"k", &[b"y"], &t));
    }
}
