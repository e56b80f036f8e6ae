//! A count or a percentage of some clusters, as Kubernetes writes `maxUnavailable`
//! (`3` or `"25%"`): how many clusters of a wave a rollout may have in progress, or may
//! leave behind unreachable.

use serde::{Deserialize, Serialize};

/// As written in `fleet.yaml`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum ShareSpec {
    Count(u64),
    Text(String),
}

/// Parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Share {
    Count(u64),
    /// 0 to 100.
    Percent(u64),
}

impl Share {
    /// `"25%"`, `"3"` or `3`; a percentage above 100 is an error.
    pub fn parse(spec: &ShareSpec) -> Result<Share, String> {
        let text = match spec {
            ShareSpec::Count(n) => return Ok(Share::Count(*n)),
            ShareSpec::Text(t) => t.trim(),
        };
        let bad = || format!("{text:?} is neither a count (3) nor a percentage (\"25%\")");
        match text.strip_suffix('%') {
            Some(p) => {
                let p: u64 = p.trim().parse().map_err(|_| bad())?;
                if p > 100 {
                    return Err(format!("{text:?} is more than 100%"));
                }
                Ok(Share::Percent(p))
            }
            None => text.parse().map(Share::Count).map_err(|_| bad()),
        }
    }

    /// Of `total` clusters, rounded down as Kubernetes rounds `maxUnavailable`.
    pub fn of(self, total: usize) -> usize {
        match self {
            Share::Count(n) => usize::try_from(n).unwrap_or(usize::MAX).min(total),
            Share::Percent(p) => {
                let p = usize::try_from(p).unwrap_or(100);
                total.saturating_mul(p) / 100
            }
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Share::Count(n) => write!(f, "{n}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages_are_read_as_kubernetes_writes_them_and_round_down() {
        let parse = |s: &str| Share::parse(&ShareSpec::Text(s.into()));
        assert_eq!(parse("25%"), Ok(Share::Percent(25)));
        assert_eq!(parse(" 3 "), Ok(Share::Count(3)));
        assert_eq!(Share::parse(&ShareSpec::Count(4)), Ok(Share::Count(4)));
        assert!(parse("101%").unwrap_err().contains("more than 100%"));
        assert!(parse("a quarter").unwrap_err().contains("neither a count"));
        assert_eq!(Share::Percent(25).of(40), 10);
        assert_eq!(Share::Percent(10).of(19), 1);
        assert_eq!(Share::Percent(10).of(5), 0);
        assert_eq!(Share::Count(3).of(2), 2);
    }
}
