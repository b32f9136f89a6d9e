//! Secret values, names and scopes.

use crate::error::{Error, Result};
use std::fmt;
use zeroize::Zeroizing;

/// A secret value: zeroized on drop, printed as `[redacted]` by `Debug` and `Display`.
///
/// The bytes are only reachable through [`SecretValue::expose`] / [`SecretValue::expose_str`],
/// which makes every place that touches a value easy to find.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps bytes (taken by value so no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }
    /// Wraps a string (taken by value so no copy is left behind).
    pub fn from_string(s: String) -> Self {
        SecretValue(Zeroizing::new(s.into_bytes()))
    }
    /// The raw bytes. Handle with care.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// The value as UTF-8, if it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for SecretValue {
    fn from(s: &str) -> Self {
        SecretValue::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Metadata of a secret. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// The scope the secret belongs to.
    pub scope: String,
    /// The secret's name.
    pub name: String,
    /// The current version (1 for the first write).
    pub version: u64,
    /// The versions still kept, oldest first.
    pub versions: Vec<u64>,
    /// Seconds since the Unix epoch when the secret was first written.
    pub created_unix: u64,
    /// Seconds since the Unix epoch when the current version was written.
    pub updated_unix: u64,
}

/// A secret read from a backend: its value and metadata.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The value.
    pub value: SecretValue,
    /// The version read.
    pub version: u64,
}

const MAX_NAME: usize = 128;

fn check_name(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME {
        return bad("it is longer than 128 bytes");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("it must not start with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("use only letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// Validates a secret name: 1-128 bytes of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn validate_secret_name(name: &str) -> Result<()> {
    check_name("secret", name)
}

/// Validates a scope name (same rules as secret names; a scope is also a directory name).
pub fn validate_scope(scope: &str) -> Result<()> {
    check_name("scope", scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let v = SecretValue::from("hunter2-very-secret");
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(v.expose_str(), Some("hunter2-very-secret"));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_secret_name("dbPassword").is_ok());
        assert!(validate_secret_name("name-x.y_z").is_ok());
        assert!(validate_secret_name("").is_err());
        assert!(validate_secret_name("../etc").is_err());
        assert!(validate_secret_name("a/b").is_err());
        assert!(validate_scope(".hidden").is_err());
        assert!(validate_scope(&"a".repeat(129)).is_err());
    }
}
