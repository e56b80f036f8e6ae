//! Kubernetes name and label syntax, checked before anything reaches an API server so that
//! the error names the claim field instead of surfacing as a rejected apply.

/// Why a name or label is refused; the text is what the diagnostic says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} is longer than {1} characters")]
    TooLong(String, usize),
    #[error("{0:?} is not a valid name: lowercase letters, digits and '-', starting and ending with a letter or digit")]
    DnsLabel(String),
    #[error("{0:?} is not a valid object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit")]
    DnsSubdomain(String),
    #[error("label key {0:?} has an invalid prefix")]
    LabelKeyPrefix(String),
    #[error("{0:?} is not a valid label key: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, after an optional DNS prefix and '/'")]
    LabelKey(String),
    #[error("{0:?} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")]
    LabelValue(String),
}

/// A DNS-1123 label: namespaces, claim names (they become label values), cluster names.
pub fn check_dns_label(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > 63 {
        return Err(NameError::TooLong(value.into(), 63));
    }
    if !is_dns_label(value) {
        return Err(NameError::DnsLabel(value.into()));
    }
    Ok(())
}

/// A DNS-1123 subdomain: object names such as Release and Usage names.
pub fn check_dns_subdomain(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > 253 {
        return Err(NameError::TooLong(value.into(), 253));
    }
    if !value.split('.').all(is_dns_label) {
        return Err(NameError::DnsSubdomain(value.into()));
    }
    Ok(())
}

fn is_dns_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), NameError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix).map_err(|_| NameError::LabelKeyPrefix(key.into()))?;
    }
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        return Err(NameError::LabelKey(key.into()));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters shaped like a label name.
pub fn check_label_value(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 || !is_label_token(value) {
        return Err(NameError::LabelValue(value.into()));
    }
    Ok(())
}

fn is_label_token(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_follow_rfc_1123() {
        for ok in ["a", "prod-eu-1", "0abc", &"a".repeat(63)] {
            assert!(check_dns_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subdomains_allow_dots_between_labels() {
        assert!(check_dns_subdomain("stackgres-operator").is_ok());
        assert!(check_dns_subdomain("a.b-c.d").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
        assert!(check_dns_subdomain("Upper").is_err());
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes_rules() {
        for ok in ["team", "app.kubernetes.io/name", "a_b.c-d"] {
            assert!(check_label_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "a/", "-x", "x y", "UPPER_/x", "a/b/c"] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("Data_1.x").is_ok());
        assert!(check_label_value("has space").is_err());
        assert!(check_label_value(&"v".repeat(64)).is_err());
    }
}
