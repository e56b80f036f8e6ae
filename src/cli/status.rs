//! `psql-fleet status`: asks a running agent for `/api/v1/status` and prints it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::status::StatusReport;

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
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// A plain HTTP/1.0 GET: the agent serves loopback HTTP only, so no client library is
/// needed.
pub fn fetch(server: &str, path: &str) -> Result<String, String> {
    let (code, head, body) = request(server, "GET", path, None)?;
    if code != 200 {
        return Err(format!("{server}{path}: {head}"));
    }
    Ok(body)
}

/// The status report of the agent at `server`, fetched off the async runtime (the client
/// above blocks); `None` while the agent does not serve one.
pub async fn report(server: &str) -> Option<StatusReport> {
    let s = server.to_string();
    let body = tokio::task::spawn_blocking(move || fetch(&s, "/api/v1/status"))
        .await
        .ok()?
        .ok()?;
    serde_json::from_str(&body).ok()
}

/// One HTTP/1.0 request with an optional JSON body; the status code, the status line and
/// the body.
pub fn request(
    server: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String, String), String> {
    let authority = server
        .strip_prefix("http://")
        .ok_or_else(|| format!("{server}: only http:// servers are supported"))?;
    let authority = authority.trim_end_matches('/');
    let mut stream =
        TcpStream::connect(authority).map_err(|e| format!("cannot reach {server}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let sent = match json {
        Some(body) => write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => write!(stream, "{method} {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n"),
    };
    sent.map_err(|e| format!("{server}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("{server}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{server}: malformed response"))?;
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{server}: malformed status line {status_line:?}"))?;
    Ok((code, status_line, body.to_string()))
}

pub fn run(args: &StatusArgs) -> ExitCode {
    let body = match fetch(&args.server, "/api/v1/status") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report: StatusReport = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: not a status report: {e}", args.server);
            return ExitCode::FAILURE;
        }
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Output::Table => print!("{}", report.to_table()),
    }
    ExitCode::SUCCESS
}
