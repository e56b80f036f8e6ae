//! Chart version syntax: what a pin may say.

use std::cmp::Ordering;

/// A chart version is Semantic Versioning 2.0 (Helm requires it), optionally with a
/// leading `v`.
pub fn check_version(value: &str) -> Result<(), NotAVersion> {
    parse(value)
        .map(|_| ())
        .ok_or_else(|| NotAVersion(value.into()))
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a chart version (expected MAJOR.MINOR.PATCH, e.g. 1.18.4)")]
pub struct NotAVersion(pub String);

/// Orders two versions by precedence (pre-releases before their release); `None` when
/// either is not a version.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(a.core.cmp(&b.core).then_with(|| match (a.pre, b.pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    }))
}

struct Parsed<'a> {
    core: [u64; 3],
    pre: Option<&'a str>,
}

fn parse(value: &str) -> Option<Parsed<'_>> {
    let body = value.strip_prefix('v').unwrap_or(value);
    let (body, build) = match body.split_once('+') {
        Some((body, build)) => (body, Some(build)),
        None => (body, None),
    };
    let (core, pre) = match body.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (body, None),
    };
    let mut numbers = [0u64; 3];
    let mut parts = core.split('.');
    for slot in &mut numbers {
        let part = parts.next()?;
        if part.is_empty()
            || !part.bytes().all(|b| b.is_ascii_digit())
            || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let identifiers_ok = |s: &str| {
        s.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    if !pre.is_none_or(identifiers_ok) || !build.is_none_or(identifiers_ok) {
        return None;
    }
    Some(Parsed { core: numbers, pre })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_semantic_versions() {
        for ok in [
            "1.18.4",
            "0.7.23",
            "v1.2.3",
            "1.0.0-rc.1",
            "1.0.0+build.5",
            "10.20.30",
        ] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_helm_would_not_resolve_as_a_pin() {
        for bad in [
            "", "1.18", "latest", "1.18.x", "01.2.3", "1.2.3.4", "1.2.3-", "~1.2.3", "1.2.3 ",
        ] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_by_precedence() {
        assert_eq!(compare("1.18.4", "1.19.0"), Some(Ordering::Less));
        assert_eq!(compare("1.10.0", "1.9.9"), Some(Ordering::Greater));
        assert_eq!(compare("1.0.0-rc.1", "1.0.0"), Some(Ordering::Less));
        assert_eq!(compare("v1.0.0", "1.0.0"), Some(Ordering::Equal));
        assert_eq!(compare("x", "1.0.0"), None);
    }
}
