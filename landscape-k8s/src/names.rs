//! Kubernetes name rules.

/// A DNS-1123 label: 1-63 characters of `[a-z0-9-]`, starting and ending alphanumeric
/// (namespaces, most object names).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// An environment variable name that every supported Kubernetes version accepts
/// (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || "-._".contains(f))
        && c.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// A Secret data key: 1-253 characters of `[-._a-zA-Z0-9]`.
pub fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(is_dns1035_label("api-2"));
        assert!(is_dns1123_label("2api") && !is_dns1035_label("2api"));
        assert!(!is_dns1123_label("Api") && !is_dns1123_label("a_b") && !is_dns1123_label("a-"));
        assert!(!is_dns1123_label(&"a".repeat(64)) && is_dns1123_label(&"a".repeat(63)));
        assert!(is_env_name("DB_PASSWORD") && is_env_name("a.b-c") && !is_env_name("1X"));
        assert!(!is_env_name("A B") && !is_env_name(""));
        assert!(is_secret_key("db-pass.v1") && !is_secret_key("db pass"));
    }
}
