//! Where `run` keeps its Git clones and (unless `--state-dir`) its rollout state when
//! `--cache-dir` is not given: the user's cache directory as the XDG base directory
//! specification places it, `$XDG_CACHE_HOME/psql-fleet`, else `$HOME/.cache/psql-fleet`.
//! Never the working directory: that is often a checkout of the user's fleet repository,
//! which a cache inside would dirty.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The directory's name under the user's cache directory.
const APP: &str = "psql-fleet";

/// The cache directory and what chose it, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDir {
    pub path: PathBuf,
    pub from: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "no cache directory: neither $XDG_CACHE_HOME nor $HOME is an absolute path; pass --cache-dir"
)]
pub struct NoCacheDir;

/// `flag` when given, else the XDG cache directory from `env` (the process environment in
/// `run`). The specification ignores a relative path in its variables, and so does this:
/// a relative one would again land in the working directory.
pub fn resolve(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<CacheDir, NoCacheDir> {
    let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(path) = flag {
        return Ok(CacheDir {
            path: path.to_path_buf(),
            from: "--cache-dir",
        });
    }
    if let Some(base) = absolute("XDG_CACHE_HOME") {
        return Ok(CacheDir {
            path: base.join(APP),
            from: "$XDG_CACHE_HOME",
        });
    }
    let home = absolute("HOME").ok_or(NoCacheDir)?;
    Ok(CacheDir {
        path: home.join(".cache").join(APP),
        from: "$HOME/.cache",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    fn resolved(flag: Option<&str>, vars: &[(&str, &str)]) -> Option<(String, &'static str)> {
        resolve(flag.map(Path::new), env(vars))
            .ok()
            .map(|d| (d.path.display().to_string(), d.from))
    }

    /// The flag, the environment, and the directory with what chose it.
    type Case<'a> = (
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        Option<(&'a str, &'a str)>,
    );

    #[test]
    fn the_cache_directory_is_the_flag_else_xdg_cache_home_else_home_never_the_working_directory() {
        let both = [("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")];
        let cases: [Case; 8] = [
            (Some("cache"), &both, Some(("cache", "--cache-dir"))),
            (None, &both, Some(("/xdg/psql-fleet", "$XDG_CACHE_HOME"))),
            (
                None,
                &[("HOME", "/home/u")],
                Some(("/home/u/.cache/psql-fleet", "$HOME/.cache")),
            ),
            // Empty or relative: as if unset (the specification's rule).
            (
                None,
                &[("XDG_CACHE_HOME", ""), ("HOME", "/home/u")],
                Some(("/home/u/.cache/psql-fleet", "$HOME/.cache")),
            ),
            (
                None,
                &[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")],
                Some(("/home/u/.cache/psql-fleet", "$HOME/.cache")),
            ),
            (None, &[("HOME", "relative")], None),
            (None, &[("HOME", "")], None),
            (None, &[], None),
        ];
        for (flag, vars, expected) in cases {
            let expected = expected.map(|(p, f)| (p.to_string(), f));
            assert_eq!(resolved(flag, vars), expected, "{flag:?} {vars:?}");
        }
        assert!(NoCacheDir.to_string().contains("--cache-dir"));
    }
}
