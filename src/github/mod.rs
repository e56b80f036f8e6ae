//! GitHub feedback through its REST API: one pull-request comment that psql-fleet keeps
//! up to date (found again by a hidden marker), and commit statuses.
//!
//! The public surface is small on purpose:
//! - [`Token::from_env_or_file`] reads the token ([`TOKEN_ENV`] or a file); its `Debug`
//!   and every error keep it out of logs.
//! - [`Client::new`] takes the API base URL (`https://api.github.com`, or
//!   `https://HOST/api/v3` for GitHub Enterprise), `OWNER/NAME` and the token.
//! - [`Client::upsert_comment`] creates or edits the one comment carrying a marker.
//! - [`Client::set_commit_status`] sets a status (`pending|success|failure|error`) under a
//!   context; GitHub keeps one status per context, so one context per wave
//!   ([`wave_context`]: `psql-fleet/<wave>`) never overwrites another.
//!
//! 5xx answers, transport errors and rate limits (403/429 with `x-ratelimit-remaining: 0`
//! or `retry-after`) are retried with exponential backoff per [`RetryPolicy`].

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// The public GitHub API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Environment variable read for the token when no token file is given.
pub const TOKEN_ENV: &str = "GITHUB_TOKEN";
/// GitHub cuts a status description at 140 characters; we cut it ourselves, on a
/// character boundary, rather than have the request refused.
pub const MAX_DESCRIPTION: usize = 140;
const API_VERSION: &str = "2022-11-28";
const PER_PAGE: u32 = 100;
/// A pull request with more comments than this is not searched further for the marker.
const MAX_PAGES: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GitHub token: set {TOKEN_ENV} or pass a token file")]
    NoToken,
    #[error("cannot read GitHub token file {}: {source}", path.display())]
    TokenFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("repository must be OWNER/NAME, got {0:?}")]
    Repo(String),
    #[error("bad GitHub API URL {url:?}: {message}")]
    BaseUrl { url: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("GitHub {method} {path}: {message}")]
    Transport {
        method: Method,
        path: String,
        message: String,
    },
    #[error("GitHub {method} {path}: HTTP {status}: {message}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
    },
    #[error("GitHub {method} {path}: unexpected answer: {message}")]
    Decode {
        method: Method,
        path: String,
        message: String,
    },
}

/// A GitHub token. Never shown: `Debug` prints `<redacted>` and there is no `Display`.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into().trim().to_string())
    }

    /// The token in `file` if given, else in [`TOKEN_ENV`].
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Self, Error> {
        let token = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
                path: path.to_path_buf(),
                source,
            })?,
            None => std::env::var(TOKEN_ENV).unwrap_or_default(),
        };
        let token = Token::new(token);
        if token.0.is_empty() {
            return Err(Error::NoToken);
        }
        Ok(token)
    }
}

/// How failed requests are retried: exponential backoff from `base_delay`, each wait at
/// most `max_delay` (a rate limit's reset time included), `attempts` tries in all.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// The status context of a rollout wave: `psql-fleet/<wave>`.
pub fn wave_context(wave: &str) -> String {
    format!("psql-fleet/{wave}")
}

/// The state of a commit status, as GitHub names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// An issue or pull-request comment, as far as psql-fleet needs it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// A pull request as far as wave approvals need it: its number and labels.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Pull {
    pub number: u64,
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Label {
    pub name: String,
}

/// A pull-request review: who, how (`APPROVED`, `COMMENTED`, ...), their standing in the
/// repository (`OWNER`, `MEMBER`, `COLLABORATOR`, `CONTRIBUTOR`, `NONE`, ...), and what
/// they wrote.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Review {
    #[serde(default)]
    pub user: Option<User>,
    pub state: String,
    #[serde(default)]
    pub author_association: String,
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
}

/// What [`Client::upsert_comment`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Created(u64),
    Updated(u64),
}

/// A GitHub REST client for one repository.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    owner: String,
    repo: String,
    token: Token,
    retry: RetryPolicy,
}

#[derive(Serialize)]
struct CommentBody<'a> {
    body: &'a str,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    state: StatusState,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_url: Option<&'a str>,
    description: String,
    context: &'a str,
}

impl Client {
    /// A client for `repo` (`OWNER/NAME`) at `base_url` (no trailing path beyond the API
    /// root, e.g. `https://api.github.com` or `https://ghe.example/api/v3`).
    pub fn new(base_url: &str, repo: &str, token: Token) -> Result<Self, Error> {
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, n)| valid_repo_part(o) && valid_repo_part(n))
            .ok_or_else(|| Error::Repo(repo.to_string()))?;
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::BaseUrl {
                url: base_url.to_string(),
                message: "must start with https:// (or http://)".into(),
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("psql-fleet/", env!("CARGO_PKG_VERSION"))),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(Error::Build)?;
        Ok(Self {
            http,
            base,
            owner: owner.to_string(),
            repo: name.to_string(),
            token,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Every comment on issue or pull request `number`, following pagination.
    pub async fn list_comments(&self, number: u64) -> Result<Vec<Comment>, Error> {
        let path = format!(
            "/repos/{}/{}/issues/{number}/comments",
            self.owner, self.repo
        );
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let query = format!("per_page={PER_PAGE}&page={page}");
            let (comments, has_next): (Vec<Comment>, bool) = self
                .send(Method::GET, &path, Some(&query), None::<&()>)
                .await?;
            all.extend(comments);
            if !has_next {
                break;
            }
        }
        Ok(all)
    }

    /// The pull requests that carry commit `sha` (GitHub's "list pull requests associated
    /// with a commit": for a merged commit, the pull request that merged it).
    pub async fn pulls_of_commit(&self, sha: &str) -> Result<Vec<Pull>, Error> {
        let path = format!("/repos/{}/{}/commits/{sha}/pulls", self.owner, self.repo);
        let query = format!("per_page={PER_PAGE}");
        let (pulls, _): (Vec<Pull>, bool) = self
            .send(Method::GET, &path, Some(&query), None::<&()>)
            .await?;
        Ok(pulls)
    }

    /// Every review of pull request `number`, following pagination.
    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, Error> {
        let path = format!("/repos/{}/{}/pulls/{number}/reviews", self.owner, self.repo);
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let query = format!("per_page={PER_PAGE}&page={page}");
            let (reviews, has_next): (Vec<Review>, bool) = self
                .send(Method::GET, &path, Some(&query), None::<&()>)
                .await?;
            all.extend(reviews);
            if !has_next {
                break;
            }
        }
        Ok(all)
    }

    /// Posts `body` on pull request `number`, or edits the comment already there whose body
    /// contains `marker` (an HTML comment such as `<!-- psql-fleet:plan -->`, invisible
    /// when rendered). The marker is added to `body` when missing.
    pub async fn upsert_comment(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<Upsert, Error> {
        let body = if body.contains(marker) {
            body.to_string()
        } else {
            format!("{marker}\n{body}")
        };
        let existing = self
            .list_comments(number)
            .await?
            .into_iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)));
        let request = CommentBody { body: &body };
        match existing {
            Some(comment) => {
                let path = format!(
                    "/repos/{}/{}/issues/comments/{}",
                    self.owner, self.repo, comment.id
                );
                let (c, _): (Comment, bool) = self
                    .send(Method::PATCH, &path, None, Some(&request))
                    .await?;
                Ok(Upsert::Updated(c.id))
            }
            None => {
                let path = format!(
                    "/repos/{}/{}/issues/{number}/comments",
                    self.owner, self.repo
                );
                let (c, _): (Comment, bool) =
                    self.send(Method::POST, &path, None, Some(&request)).await?;
                Ok(Upsert::Created(c.id))
            }
        }
    }

    /// Sets the status `context` of commit `sha`. `description` has its control characters
    /// escaped (it may carry a cluster's error text, and GitHub shows it in pages, mails and
    /// other tools' terminals) and is cut to [`MAX_DESCRIPTION`] characters.
    pub async fn set_commit_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), Error> {
        let path = format!("/repos/{}/{}/statuses/{sha}", self.owner, self.repo);
        let request = StatusBody {
            state,
            target_url,
            description: truncate(&fleet_core::text::escape(description), MAX_DESCRIPTION),
            context,
        };
        let _: (serde_json::Value, bool) =
            self.send(Method::POST, &path, None, Some(&request)).await?;
        Ok(())
    }

    /// One request with retries; returns the decoded body and whether a next page exists.
    async fn send<B: Serialize, T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&B>,
    ) -> Result<(T, bool), Error> {
        let url = match query {
            Some(q) => format!("{}{path}?{q}", self.base),
            None => format!("{}{path}", self.base),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, format!("Bearer {}", self.token.0));
            if let Some(b) = body {
                request = request.json(b);
            }
            let last = attempt >= self.retry.attempts;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    // reqwest's message names the URL, which carries no secret.
                    if last {
                        return Err(Error::Transport {
                            method,
                            path: path.to_string(),
                            message: e.without_url().to_string(),
                        });
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                let has_next = has_next_page(response.headers());
                let bytes = response.bytes().await.map_err(|e| Error::Transport {
                    method: method.clone(),
                    path: path.to_string(),
                    message: e.without_url().to_string(),
                })?;
                let value = serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
                    method: method.clone(),
                    path: path.to_string(),
                    message: e.to_string(),
                })?;
                return Ok((value, has_next));
            }
            let wait = retry_wait(status, response.headers())
                .map(|w| w.min(self.retry.max_delay).max(self.backoff(attempt)));
            match wait {
                Some(wait) if !last => {
                    tracing::warn!(%method, path, %status, wait_ms = wait.as_millis() as u64, "GitHub request will be retried");
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let text = response.text().await.unwrap_or_default();
                    return Err(Error::Status {
                        method,
                        path: path.to_string(),
                        status,
                        message: error_message(&text),
                    });
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.retry
            .base_delay
            .saturating_mul(factor)
            .min(self.retry.max_delay)
    }
}

fn valid_repo_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// How long to wait before retrying an answer, or `None` when it is not worth retrying.
/// 5xx: retry. 403/429: retry only when it is a rate limit (`retry-after`, or
/// `x-ratelimit-remaining: 0` with the reset time); any other 403 is a permission error.
fn retry_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status.is_server_error() {
        return Some(Duration::ZERO);
    }
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining").map(str::trim) == Some("0") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(now);
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(Duration::ZERO);
    }
    None
}

/// Whether the `Link` header names a `rel="next"` page.
fn has_next_page(headers: &HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|link| {
            link.split(';')
                .skip(1)
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
        })
}

/// GitHub's `message` from an error body, else the body's start.
fn error_message(text: &str) -> String {
    #[derive(Deserialize)]
    struct E {
        message: String,
    }
    match serde_json::from_str::<E>(text) {
        Ok(e) => e.message,
        Err(_) => truncate(text, 200),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod tests;
