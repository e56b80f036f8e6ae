//! `psql-fleet status`: asks a running agent for `/api/v1/status` and prints it. Also the
//! client of the agent's HTTP API that `rollout`, the demo, the tests and the benches share:
//! async ([`get`], [`send`], [`report`]) and blocking ([`fetch`], [`request`]).
//!
//! What an agent reports holds text from outside: clusters' error messages, file names
//! from commits, operators' reasons. The agent refuses control characters where it takes
//! text in, but not every source can be refused (a cluster says what it says), so the
//! tables printed here escape every control character in it: a report never moves the
//! cursor, clears the screen or adds a line of its own.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use serde_json::Value;

use fleet_core::text::escape;

use crate::status::{StatusReport, Summary};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Show what a running agent reports, per cluster and per claim.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The agent's `--listen` address.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub server: String,
    /// File holding a control token, for an agent run with `--status-requires-token`
    /// (else $PSQL_FLEET_CONTROL_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// Only the counts (`/api/v1/status/summary`): clusters reachable, claims ready with
    /// their Usage, drifted, and so on. Cheap to ask of a large fleet, e.g. in a loop that
    /// waits for it to converge.
    #[arg(long)]
    pub summary: bool,
}

/// How long one request to the agent may take, connecting included: it answers from
/// memory, and its own request timeout is as long.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent serves plain HTTP (on loopback by default, on every address in the Helm
    /// chart); TLS in front of it is not this client's business.
    #[error("{server}: only http:// servers are supported")]
    Scheme { server: String },
    #[error("{method:?} is not an HTTP method")]
    Method {
        method: String,
        #[source]
        source: http::method::InvalidMethod,
    },
    #[error("cannot set up an HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("cannot start a thread for a request")]
    Thread(#[source] std::io::Error),
    #[error("cannot start a runtime for a request")]
    Runtime(#[source] std::io::Error),
    #[error("{server}: not a status report")]
    NotStatusReport {
        server: String,
        #[source]
        source: serde_json::Error,
    },
}

/// `error` and its causes, `: `-separated, the way the command line shows an error.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        // The agent is reached directly, as `curl --noproxy` would: an HTTP(S)_PROXY meant
        // for the internet must not capture `http://127.0.0.1:9464`.
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .map_err(Error::Client)
}

/// One request to the agent at `server` with an optional JSON body and bearer token; the
/// status code, the status line (`HTTP/1.1 409 Conflict`) and the body.
pub async fn send(
    server: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, String, String), Error> {
    let answer = exchange(server, method, path, json, token).await?;
    let status_line = format!("{:?} {}", answer.version, answer.status);
    Ok((answer.status.as_u16(), status_line, answer.body))
}

/// The body of `GET path` from the agent at `server`, which must answer 200.
pub async fn get(server: &str, path: &str) -> Result<String, Error> {
    get_with(server, path, None).await
}

/// [`get`] with a bearer token (an agent run with `--status-requires-token`).
pub async fn get_with(server: &str, path: &str, token: Option<&str>) -> Result<String, Error> {
    let answer = exchange(server, "GET", path, None, token).await?;
    if answer.status != reqwest::StatusCode::OK {
        return Err(Error::Status {
            url: answer.url,
            status: answer.status,
        });
    }
    Ok(answer.body)
}

struct Answer {
    url: String,
    version: reqwest::Version,
    status: reqwest::StatusCode,
    body: String,
}

async fn exchange(
    server: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> Result<Answer, Error> {
    if !server.starts_with("http://") {
        return Err(Error::Scheme {
            server: server.to_string(),
        });
    }
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|source| Error::Method {
            method: method.to_string(),
            source,
        })?;
    let mut request = client()?.request(method, &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = json {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let unreachable = |source: reqwest::Error| Error::Unreachable {
        url: url.clone(),
        source: source.without_url(),
    };
    let response = request.send().await.map_err(unreachable)?;
    let (version, status) = (response.version(), response.status());
    let body = response.text().await.map_err(unreachable)?;
    Ok(Answer {
        url,
        version,
        status,
        body,
    })
}

/// The status report of the agent at `server`; `None` while it does not serve one.
pub async fn report(server: &str) -> Option<StatusReport> {
    let body = get(server, "/api/v1/status").await.ok()?;
    serde_json::from_str(&body).ok()
}

/// [`get`], blocking.
pub fn fetch(server: &str, path: &str) -> Result<String, Error> {
    fetch_with(server, path, None)
}

/// [`get_with`], blocking.
pub fn fetch_with(server: &str, path: &str, token: Option<&str>) -> Result<String, Error> {
    block_on(get_with(server, path, token))
}

/// [`send`], blocking.
pub fn request(
    server: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, String, String), Error> {
    block_on(send(server, method, path, json, token))
}

/// Runs `request` on a thread and a runtime of its own, so that the blocking calls work
/// from anywhere: the command line, a test's plain thread, `spawn_blocking`, even a task
/// of a runtime (which it blocks, as any blocking call does), where `Runtime::block_on`
/// and reqwest's blocking client would panic.
fn block_on<T: Send>(request: impl Future<Output = Result<T, Error>> + Send) -> Result<T, Error> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("agent-request".into())
            .spawn_scoped(scope, || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::Runtime)?
                    .block_on(request)
            })
            .map_err(Error::Thread)?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

pub fn run(args: &StatusArgs) -> ExitCode {
    let token = match crate::agent::control::client_token(args.token_file.as_deref()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = token.as_deref();
    if args.summary {
        let read = read_report::<Summary>(&args.server, "/api/v1/status/summary", token);
        return show(read, args.output, Summary::to_table);
    }
    let read = read_report::<StatusReport>(&args.server, "/api/v1/status", token);
    show(read, args.output, StatusReport::to_table)
}

/// `path` read from the agent at `server` and decoded as a report of type `T`.
fn read_report<T: DeserializeOwned>(
    server: &str,
    path: &str,
    token: Option<&str>,
) -> Result<T, Error> {
    let body = fetch_with(server, path, token)?;
    serde_json::from_str(&body).map_err(|source| Error::NotStatusReport {
        server: server.to_string(),
        source,
    })
}

/// What a command got from the agent, printed as `--output` says (JSON, or the table
/// `table` makes of it), or its error with every cause.
pub(crate) fn show<T: serde::Serialize + DeserializeOwned, E: std::error::Error>(
    read: Result<T, E>,
    output: Output,
    table: impl FnOnce(&T) -> String,
) -> ExitCode {
    let value = match read {
        Ok(value) => value,
        Err(e) => {
            // The agent's refusals are in the chain, in its words.
            eprintln!("error: {}", escape(&chain(&e)));
            return ExitCode::FAILURE;
        }
    };
    match output {
        // JSON strings escape their control characters themselves.
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        Output::Table => print!("{}", escaped_table(&value, table)),
    }
    ExitCode::SUCCESS
}

/// `table` of `value` with every string in `value` escaped first, so that the table's own
/// line breaks are the only ones.
pub(crate) fn escaped_table<T: serde::Serialize + DeserializeOwned>(
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> String {
    let escaped = serde_json::to_value(value).ok().and_then(|mut json| {
        escape_strings(&mut json);
        serde_json::from_value::<T>(json).ok()
    });
    match escaped {
        Some(escaped) => table(&escaped),
        // Not expected (the value came from JSON); still, nothing is printed raw.
        None => table(value)
            .lines()
            .map(|line| format!("{}\n", escape(line)))
            .collect(),
    }
}

/// Escapes every string in `json`, object keys (cluster names) included.
fn escape_strings(json: &mut Value) {
    match json {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(escaped) = escape(s) {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_strings),
        Value::Object(fields) => {
            for (key, mut value) in std::mem::take(fields) {
                escape_strings(&mut value);
                fields.insert(escape(&key).into_owned(), value);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_escapes_whatever_the_agent_reports_and_keeps_one_line_per_row() {
        use crate::status::{ClaimStatus, ClusterStatus, RolloutStatus};
        use fleet_core::rollout::Halt;

        let clear = "\u{1b}[2J\u{1b}[H";
        let forged = "\n2026-01-01T00:00:00Z  INFO all clusters ready";
        let mut report = StatusReport::default();
        report.source.source = format!("fleet{clear}");
        report.source.rejected = Some(format!("revision abc does not validate{forged}"));
        report.source.diagnostics = vec![format!("claims/x{clear}.yaml: bad{forged}")];
        report.source.last_error = Some(format!("cannot open{forged}"));
        report.clusters.insert(
            format!("evil{clear}"),
            ClusterStatus {
                reachable: true,
                last_error: Some(format!("admission webhook said: {clear}denied{forged}")),
                claims: vec![ClaimStatus {
                    claim: "default/app".into(),
                    reason: Some(format!("Release: \u{9b}31mred\u{202e}{forged}")),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .into(),
        );
        report.rollout = Some(RolloutStatus {
            revision: "0123456789abcdef".into(),
            phase: "halted".into(),
            halted: Some(Halt {
                wave: "dev".into(),
                reason: format!("halted by an operator: {clear}{forged}"),
                by_operator: true,
                at_ms: 0,
            }),
            ..Default::default()
        });
        let plain = escaped_table(&report, StatusReport::to_table);
        let steering = |c: &char| *c != '\n' && fleet_core::text::is_unsafe(*c);
        assert!(!plain.chars().any(|c| steering(&c)), "{plain}");
        assert!(
            !plain.contains("\nINFO") && !plain.contains("\n2026"),
            "{plain}"
        );
        for shown in [
            r"source fleet\u{1b}[2J\u{1b}[H",
            r"does not validate\n2026-01-01T00:00:00Z  INFO all clusters ready",
            r"source error: cannot open\n2026",
            r"halted by an operator: \u{1b}[2J\u{1b}[H\n2026",
            r"Release: \u{9b}31mred\u{202e}\n2026",
            r"error: admission webhook said: \u{1b}[2J\u{1b}[Hdenied\n2026",
        ] {
            assert!(plain.contains(shown), "{shown} not in:\n{plain}");
        }
        assert!(
            plain
                .lines()
                .any(|l| l.starts_with(r"evil\u{1b}[2J\u{1b}[H") && l.contains("default/app")),
            "{plain}"
        );
        // Printed raw, the report would have added lines of its own.
        let raw = report.to_table();
        assert!(plain.lines().count() < raw.lines().count(), "{raw}");
    }

    #[test]
    fn only_http_servers_are_asked() {
        let error = fetch("ftp://127.0.0.1:1", "/api/v1/status").unwrap_err();
        assert!(matches!(error, Error::Scheme { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "ftp://127.0.0.1:1: only http:// servers are supported"
        );
    }

    #[tokio::test]
    async fn an_agent_that_is_not_there_is_named_with_the_cause() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let server = format!("http://127.0.0.1:{port}");
        // Blocking, from a runtime's task: it must not panic.
        let error = fetch(&server, "/api/v1/status").unwrap_err();
        assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
        let text = chain(&error);
        assert!(
            text.starts_with(&format!("cannot reach {server}/api/v1/status: ")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(report(&server).await.is_none());
    }
}
