//! `psql-fleet rollout status|halt|resume|approve|undo`: the operator's hand on a running agent's
//! rollout, through its HTTP API.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::status::{request, show, Output};
use crate::status::RolloutStatus;

/// Show, halt, resume, approve or undo the rollout of a running agent.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: Action,
    /// The agent's `--listen` address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9464")]
    pub server: String,
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// File holding the control token (a token alone, or one `name:token` line); else
    /// $PSQL_FLEET_CONTROL_TOKEN. The agent's controls need one.
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// The revision being rolled out, each wave's state, and why it is halted.
    Status,
    /// Start no further wave; clusters that already have the revision keep it.
    Halt {
        /// Recorded in the status and the logs.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Start the halted or failed wave over (fresh timeout, full bake).
    Resume {
        /// Recorded in the logs.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Let a wave that requires approval start, for the revision being rolled out.
    Approve {
        /// The wave's name.
        wave: String,
        /// Recorded in the logs.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give a wave's clusters back the revision they ran before, and halt the rollout
    /// (`resume` then gives that wave the revision again).
    Undo {
        /// The wave's name; by default the last wave that gave its clusters the revision.
        wave: Option<String>,
        /// Recorded in the status, the logs and the commit status.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] super::status::Error),
    #[error(transparent)]
    Token(#[from] crate::agent::control::Error),
    /// The agent's answer other than 200: its `{"error": ...}` message, else its status
    /// line.
    #[error("{0}")]
    Refused(String),
    #[error("{server}: not a rollout status")]
    NotRolloutStatus {
        server: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The rollout after `args.action`, as the agent reports it.
fn act(args: &RolloutArgs) -> Result<RolloutStatus, Error> {
    let token = crate::agent::control::client_token(args.token_file.as_deref())?;
    let token = token.as_deref();
    let (code, status_line, body) = match &args.action {
        Action::Status => request(&args.server, "GET", "/api/v1/rollout", None, token),
        Action::Halt { reason } => {
            let body = serde_json::json!({ "reason": reason }).to_string();
            request(
                &args.server,
                "POST",
                "/api/v1/rollout/halt",
                Some(&body),
                token,
            )
        }
        Action::Approve { wave, reason } => {
            let body = serde_json::json!({ "wave": wave, "reason": reason }).to_string();
            request(
                &args.server,
                "POST",
                "/api/v1/rollout/approve",
                Some(&body),
                token,
            )
        }
        Action::Undo { wave, reason } => {
            let body = serde_json::json!({ "wave": wave, "reason": reason }).to_string();
            request(
                &args.server,
                "POST",
                "/api/v1/rollout/undo",
                Some(&body),
                token,
            )
        }
        Action::Resume { reason } => {
            let body = serde_json::json!({ "reason": reason }).to_string();
            request(
                &args.server,
                "POST",
                "/api/v1/rollout/resume",
                Some(&body),
                token,
            )
        }
    }?;
    if code != 200 {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(status_line);
        return Err(Error::Refused(message));
    }
    serde_json::from_str(&body).map_err(|source| Error::NotRolloutStatus {
        server: args.server.clone(),
        source,
    })
}

pub fn run(args: &RolloutArgs) -> ExitCode {
    show(act(args), args.output, RolloutStatus::to_table)
}
