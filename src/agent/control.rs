//! Who may drive the agent through its HTTP API: bearer tokens read from
//! `--control-token-file`, and the middleware that asks for one on the write endpoints (and
//! on the status reads under `--status-requires-token`).
//!
//! The chart binds the API to every address, so a write endpoint is never open: without a
//! token file the writes are off (403 saying how to turn them on), with one a request
//! without a valid token gets 401 and `WWW-Authenticate: Bearer`. The probes and `/metrics`
//! stay open: a kubelet and Prometheus hold no token, and they change nothing.
//!
//! A token never leaves this module: it is kept only as its SHA-256 digest (compared in
//! constant time, so neither its bytes nor its length can be timed out of the server),
//! and the caller is named everywhere by the token's name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The environment variable `psql-fleet rollout` reads a token from when no file is given.
pub const TOKEN_ENV: &str = "PSQL_FLEET_CONTROL_TOKEN";
/// The name of a token given alone, without `name:`.
pub const DEFAULT_NAME: &str = "default";
/// Shorter tokens are refused: a guessable secret on an API bound to every address is no
/// secret. 16 characters is 64 bits as hex, 96 as base64; `openssl rand -hex 32` makes 64.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the control token file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control token file {}: no token in it", path.display())]
    Empty { path: PathBuf },
    /// Says which line and what is wrong with it, never what the line holds.
    #[error("control token file {}: line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
    #[error("control token file {}: the name {name:?} is given twice", path.display())]
    Duplicate { path: PathBuf, name: String },
    /// Which of several lines would be `default` is a guess.
    #[error("control token file {}: a token without a name must be the only one (else write name:token lines)", path.display())]
    Unnamed { path: PathBuf },
    #[error("{}: a client sends one token: give a file with one line", path.display())]
    Several { path: PathBuf },
}

/// The tokens the control API accepts, each under the name it is logged as. Its `Debug`
/// shows the names only.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The `(name, token)` pairs of a token file's text: `name:token` lines, or one line that
/// is a token alone (named [`DEFAULT_NAME`]). Blank lines and `#` comments are skipped.
fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, Error> {
    let line_error = |line, problem| Error::Line {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut entries: Vec<(String, String)> = Vec::new();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let mut unnamed = 0;
    for (number, line) in lines {
        let (name, token) = match line.split_once(':') {
            Some((name, token)) => (name.trim(), token.trim()),
            None => {
                unnamed += 1;
                (DEFAULT_NAME, line)
            }
        };
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !name_ok {
            return Err(line_error(
                number,
                "a name is 1 to 63 letters, digits, '-', '_', '.' or '@'",
            ));
        }
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(line_error(
                number,
                "the token is shorter than 16 characters",
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(line_error(
                number,
                "the token holds a space or a control character",
            ));
        }
        if entries.iter().any(|(n, _)| n == name) {
            return Err(Error::Duplicate {
                path: path.to_path_buf(),
                name: name.to_string(),
            });
        }
        entries.push((name.to_string(), token.to_string()));
    }
    if unnamed > 0 && entries.len() > 1 {
        return Err(Error::Unnamed {
            path: path.to_path_buf(),
        });
    }
    if entries.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(entries)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Tokens {
    /// The tokens in the file at `path` (`--control-token-file`).
    pub fn from_file(path: &Path) -> Result<Tokens, Error> {
        Tokens::parse(path, &read(path)?)
    }

    fn parse(path: &Path, text: &str) -> Result<Tokens, Error> {
        let entries = parse(path, text)?
            .into_iter()
            .map(|(name, token)| (name, digest(token.as_bytes())))
            .collect();
        Ok(Tokens { entries })
    }

    /// The name of the token `presented`, if it is one of these. Every token is compared,
    /// matching or not, so the time taken says nothing about which came close.
    pub fn name_of(&self, presented: &str) -> Option<&str> {
        let presented = digest(presented.as_bytes());
        let mut found = None;
        for (name, expected) in &self.entries {
            if bool::from(expected.ct_eq(&presented)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// The token a client sends: from `file` (a token alone, or one `name:token` line), else
/// from [`TOKEN_ENV`]; `None` when neither is set.
pub fn client_token(file: Option<&Path>) -> Result<Option<String>, Error> {
    let (path, text) = match file {
        Some(path) => (path.to_path_buf(), read(path)?),
        None => match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => {
                (PathBuf::from(format!("${TOKEN_ENV}")), token)
            }
            _ => return Ok(None),
        },
    };
    let mut entries = parse(&path, &text)?;
    if entries.len() > 1 {
        return Err(Error::Several { path });
    }
    Ok(entries.pop().map(|(_, token)| token))
}

/// How the API is guarded, as `run` was told.
#[derive(Clone, Debug, Default)]
pub struct Control {
    /// `None`: the write endpoints are off.
    pub tokens: Option<Tokens>,
    /// `--status-requires-token`: the status reads want a token too.
    pub status_requires_token: bool,
}

/// Which requests need a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Probes and metrics: never.
    Open,
    /// The status reads: under `--status-requires-token`.
    Read,
    /// Anything that changes what the agent does.
    Write,
}

/// Who made a request that passed the guard: the token's name, for the log.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<str>);

/// Why a request was not let through.
#[derive(Debug, PartialEq, Eq)]
enum Denied {
    Off,
    NoToken,
    BadToken,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (code, message, challenge) = match self {
            Denied::Off => (
                StatusCode::FORBIDDEN,
                "the control API is off: start the agent with --control-token-file PATH to turn it on",
                None,
            ),
            Denied::NoToken => (
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (psql-fleet rollout --token-file PATH, or $PSQL_FLEET_CONTROL_TOKEN)",
                Some(r#"Bearer realm="psql-fleet""#),
            ),
            Denied::BadToken => (
                StatusCode::UNAUTHORIZED,
                "the bearer token is not valid",
                Some(r#"Bearer realm="psql-fleet", error="invalid_token""#),
            ),
        };
        let body = serde_json::json!({ "error": message }).to_string();
        let mut response = (
            code,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl Control {
    fn check(
        &self,
        guard: Guard,
        authorization: Option<&HeaderValue>,
    ) -> Result<Option<Caller>, Denied> {
        let required = match guard {
            Guard::Open => false,
            Guard::Read => self.status_requires_token,
            Guard::Write => true,
        };
        if !required {
            return Ok(None);
        }
        let Some(tokens) = &self.tokens else {
            return Err(Denied::Off);
        };
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::NoToken)?;
        let name = tokens.name_of(presented).ok_or(Denied::BadToken)?;
        Ok(Some(Caller(name.into())))
    }
}

/// What [`authorize`] is given: how the API is guarded, and which guard a path gets.
pub type GuardState = (Arc<Control>, fn(&str) -> Guard);

/// Middleware: lets a request through when `guard_of` its path allows it, with its
/// [`Caller`] in the request's extensions; answers 401 or 403 otherwise.
pub async fn authorize(
    State((control, guard_of)): State<GuardState>,
    mut req: Request,
    next: Next,
) -> Response {
    let guard = guard_of(req.uri().path());
    match control.check(guard, req.headers().get(header::AUTHORIZATION)) {
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            next.run(req).await
        }
        Err(denied) => {
            // The path only: what was presented is a secret or a guess at one.
            tracing::warn!(path = %req.uri().path(), method = %req.method(), refusal = ?denied, "API request refused");
            denied.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

    fn tokens(text: &str) -> Result<Tokens, Error> {
        Tokens::parse(Path::new("tokens"), text)
    }

    #[test]
    fn a_token_alone_is_named_default_and_named_lines_keep_their_names() {
        let alone = tokens(&format!("{A}\n")).unwrap();
        assert_eq!(alone.name_of(A), Some(DEFAULT_NAME));
        assert_eq!(alone.name_of(B), None);
        let named = tokens(&format!("# operators\nalice:{A}\n\nci-bot: {B}\n")).unwrap();
        assert_eq!(named.name_of(A), Some("alice"));
        assert_eq!(named.name_of(B), Some("ci-bot"));
        assert_eq!(named.name_of(&A[1..]), None);
        assert_eq!(named.name_of(""), None);
    }

    #[test]
    fn bad_token_files_are_refused_without_showing_a_token() {
        let cases = [
            ("", "no token in it"),
            ("short\n", "line 1: the token is shorter than 16 characters"),
            (&*format!("a b:{A}"), "line 1: a name is"),
            (&*format!("x:{A}\nx:{B}"), "the name \"x\" is given twice"),
            (
                &*format!("{A}\nx:{B}"),
                "a token without a name must be the only one",
            ),
        ];
        for (text, expected) in cases {
            let message = tokens(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(!message.contains(A) && !message.contains(B), "{message}");
        }
        let debug = format!("{:?}", tokens(&format!("alice:{A}")).unwrap());
        assert!(debug.contains("alice") && !debug.contains(A), "{debug}");
    }

    #[test]
    fn the_guard_asks_for_a_token_where_it_must() {
        let bearer = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        let off = Control::default();
        assert!(off.check(Guard::Open, None).is_ok());
        assert!(off.check(Guard::Read, None).is_ok());
        assert_eq!(
            off.check(Guard::Write, Some(&bearer(A))).unwrap_err(),
            Denied::Off
        );
        let on = Control {
            tokens: Some(tokens(&format!("alice:{A}")).unwrap()),
            status_requires_token: false,
        };
        assert!(on.check(Guard::Read, None).unwrap().is_none());
        assert_eq!(on.check(Guard::Write, None).unwrap_err(), Denied::NoToken);
        let basic = HeaderValue::from_static("Basic YWxpY2U6eA==");
        assert_eq!(
            on.check(Guard::Write, Some(&basic)).unwrap_err(),
            Denied::NoToken
        );
        assert_eq!(
            on.check(Guard::Write, Some(&bearer(B))).unwrap_err(),
            Denied::BadToken
        );
        let caller = on.check(Guard::Write, Some(&bearer(A))).unwrap().unwrap();
        assert_eq!(&*caller.0, "alice");
        let strict = Control {
            status_requires_token: true,
            ..on
        };
        assert_eq!(
            strict.check(Guard::Read, None).unwrap_err(),
            Denied::NoToken
        );
        assert!(strict.check(Guard::Open, None).unwrap().is_none());
    }
}
