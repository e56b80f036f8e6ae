//! The agent's HTTP endpoints: `GET /livez`, `/readyz`, `/metrics` and `/api/v1/status`,
//! and the rollout's: `GET /api/v1/rollout`, `POST /api/v1/rollout/halt` (optional JSON
//! body `{"reason": "..."}`), `POST /api/v1/rollout/resume` and `POST
//! /api/v1/rollout/approve` (`{"wave": "..."}`) and `POST /api/v1/rollout/undo` (optional
//! `{"wave": "..."}`). The GETs take no body; the POSTs take a small JSON body only (`Content-Type: application/json`, so a web page
//! cannot send one without a CORS preflight this server never grants).
//!
//! A halt reason is data that reaches the status, the logs and GitHub commit statuses:
//! at most [`MAX_REASON_CHARS`] characters of plain text on one line. Anything else is
//! refused with 400 and says why (never cut or cleaned silently: what is recorded is what
//! the operator sent).
//!
//! The rollout controls (and anything else under `/api/` that is not a status read) need a
//! bearer token, the status reads one under `--status-requires-token`, and the probes and
//! `/metrics` none: see [`super::control`]. Every control action is logged with the name
//! of the token that asked and the reason given.
//!
//! Served by [`crate::http_server`] with this server's bounds.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower::{BoxError, ServiceBuilder};

use super::control::{self, Caller, Control, Guard};
use super::driver::RolloutDriver;
use crate::http_server::{serve_router, Connections};
use crate::metrics::Metrics;
use crate::status::{RolloutStatus, StatusReport};
use fleet_core::rollout::MAX_REASON_CHARS;

pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub status: Arc<RwLock<StatusReport>>,
    pub rollouts: Arc<RolloutDriver>,
    pub control: Arc<Control>,
}

/// Largest body a rollout POST may carry: `{"reason": "..."}` with a sentence or two of
/// reason fits many times over, and a larger one is no operator's.
pub const MAX_BODY: usize = 4096;
/// How long a client may take to send its request line and headers, and how long a
/// kept-alive connection may stay idle: a probe, a scrape or the CLI sends its few header
/// lines at once, so 5 s only ever cuts off a client that trickles them (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Buffer for a request's head; more is refused. A request line and a few headers, plus
/// room for a proxy's forwarding headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections served at once; more wait in the listen backlog. The kubelet's probes, one
/// or two Prometheus servers and a few operators' CLIs need a handful; the bound keeps a
/// flood of clients from taking file descriptors and tasks the cluster workers need.
pub const MAX_CONNECTIONS: usize = 64;
/// Time for one request once its headers are in, body included. Every answer comes from
/// memory in far less; Prometheus gives up a scrape after 10 s by default anyway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const HALT: &str = "/api/v1/rollout/halt";
const RESUME: &str = "/api/v1/rollout/resume";
const APPROVE: &str = "/api/v1/rollout/approve";
const UNDO: &str = "/api/v1/rollout/undo";
const STATUS: &str = "/api/v1/status";
const SUMMARY: &str = "/api/v1/status/summary";
const ROLLOUT: &str = "/api/v1/rollout";

/// What a path needs to be let through. Under `/api/`, everything but the status reads
/// is a write, so an endpoint added later is guarded before anyone thinks of it.
fn guard_of(path: &str) -> Guard {
    match path {
        STATUS | SUMMARY | ROLLOUT => Guard::Read,
        p if p.starts_with("/api/") => Guard::Write,
        _ => Guard::Open,
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HaltRequest {
    #[serde(default)]
    reason: String,
}

/// No wave: the last wave that gave its clusters the revision.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UndoRequest {
    #[serde(default)]
    wave: Option<String>,
    #[serde(default)]
    reason: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    wave: String,
    #[serde(default)]
    reason: String,
}

/// Why a request gets no answer of its endpoint. The rollout API's refusals are JSON
/// `{"error": "<message>"}`; the others plain text. The messages are the API's (clients and
/// the CLI show them), so they keep their wording.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("only GET")]
    OnlyGet,
    #[error("requests take no body")]
    BodyOnGet,
    #[error("not found")]
    NotFound,
    #[error("request not completed in time")]
    TimedOut,
    #[error("use POST")]
    UsePost,
    #[error("Content-Type must be application/json")]
    NotJson,
    #[error("body too large or unreadable")]
    Body(#[source] BytesRejection),
    #[error("bad body: {0}")]
    BadBody(#[source] serde_json::Error),
    #[error("reason refused: {0}")]
    BadReason(#[source] fleet_core::text::TextError),
    #[error("no rollout: no revision served yet")]
    NoRollout,
    /// The rollout driver's refusal (already halted, nothing to resume), in its words.
    #[error(transparent)]
    Conflict(#[from] super::driver::ControlError),
    /// Under leader election only the leader decides; a standby's rollout is not the fleet's.
    #[error("this replica does not lead; ask the leader ({0})")]
    NotLeader(String),
    /// Decided, but the management cluster did not take the state in time: a restart of
    /// every replica now would lose the decision.
    #[error(
        "decided, but not yet saved on the management cluster; check the status and try again"
    )]
    NotKept,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::OnlyGet | Refusal::UsePost => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BodyOnGet | Refusal::Body(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::NotFound | Refusal::NoRollout => StatusCode::NOT_FOUND,
            Refusal::TimedOut => StatusCode::REQUEST_TIMEOUT,
            Refusal::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::BadBody(_) | Refusal::BadReason(_) => StatusCode::BAD_REQUEST,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::NotLeader(_) | Refusal::NotKept => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn is_rollout_api(&self) -> bool {
        matches!(
            self,
            Refusal::UsePost
                | Refusal::NotJson
                | Refusal::Body(_)
                | Refusal::BadBody(_)
                | Refusal::BadReason(_)
                | Refusal::NoRollout
                | Refusal::Conflict(_)
                | Refusal::NotLeader(_)
                | Refusal::NotKept
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.is_rollout_api() {
            let body = serde_json::json!({ "error": self.to_string() }).to_string();
            reply(self.status(), "application/json", body)
        } else {
            reply(self.status(), "text/plain", format!("{self}\n"))
        }
    }
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn json(value: &impl serde::Serialize, layout: Layout) -> Response {
    let body = match layout {
        Layout::Indented => serde_json::to_string_pretty(value),
        Layout::Compact => serde_json::to_string(value),
    };
    reply(StatusCode::OK, "application/json", body.unwrap_or_default())
}

/// How a JSON answer is laid out, decided as kube-apiserver decides (`isPrettyPrint`): a
/// `pretty` parameter with a value says (`?pretty=true`); without one, the clients people
/// read answers in (curl, Wget, browsers) get indented JSON and programs compact JSON. The
/// status of ten thousand clusters is built for every read: indenting it made it half as
/// large again and its read a third dearer, for clients that only parse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Indented,
    Compact,
}

impl<S: Send + Sync> FromRequestParts<S> for Layout {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Layout, Self::Rejection> {
        Ok(Layout::of(parts))
    }
}

impl Layout {
    fn of(Parts { uri, headers, .. }: &Parts) -> Layout {
        let asked = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("pretty="))
            .filter(|value| !value.is_empty());
        let indented = match asked {
            // Go's strconv.ParseBool; a value it does not read is false there too.
            Some(value) => matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True"),
            None => headers
                .get(header::USER_AGENT)
                .and_then(|agent| agent.to_str().ok())
                .is_some_and(|agent| {
                    ["curl", "Wget", "Mozilla/5.0"]
                        .iter()
                        .any(|people| agent.starts_with(people))
                }),
        };
        if indented {
            Layout::Indented
        } else {
            Layout::Compact
        }
    }
}

type Shared = State<Arc<Endpoints>>;

impl Endpoints {
    /// The report as read now, readiness included.
    fn snapshot(&self) -> StatusReport {
        let mut status = self.status.read().map(|s| s.clone()).unwrap_or_default();
        status.ready = status.is_ready();
        status
    }

    /// Serves until the future is dropped, which closes the listener.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let limits = Connections {
            max: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_head: Some(MAX_HEADER_BYTES),
            keep_alive: true,
            lifetime: None,
        };
        serve_router(listener, router(self), limits).await;
    }
}

fn router(endpoints: Arc<Endpoints>) -> Router {
    let guard = (endpoints.control.clone(), guard_of as fn(&str) -> Guard);
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(STATUS, get(status))
        .route(SUMMARY, get(summary))
        .route(ROLLOUT, get(rollout))
        .route(HALT, post(halt).fallback(use_post))
        .route(RESUME, post(resume).fallback(use_post))
        .route(APPROVE, post(approve).fallback(use_post))
        .route(UNDO, post(undo).fallback(use_post))
        .fallback(not_found)
        .layer(middleware::from_fn(reads_only))
        // Outside `reads_only`: who asks is settled before anything else is said.
        .layer(middleware::from_fn_with_state(guard, control::authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out))
                .timeout(REQUEST_TIMEOUT),
        )
        .with_state(endpoints)
}

/// Every endpoint but the rollout controls is a GET that takes no body: anything else is
/// answered at once, without reading what the client sends, and the connection is closed.
async fn reads_only(req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), HALT | RESUME | APPROVE | UNDO) {
        return next.run(req).await;
    }
    let refusal = if !matches!(*req.method(), Method::GET | Method::HEAD) {
        Refusal::OnlyGet
    } else if req.body().size_hint().lower() > 0 || !req.body().is_end_stream() {
        Refusal::BodyOnGet
    } else {
        return next.run(req).await;
    };
    let mut response = refusal.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn timed_out(_: BoxError) -> Refusal {
    Refusal::TimedOut
}

async fn not_found() -> Refusal {
    Refusal::NotFound
}

async fn use_post() -> Refusal {
    Refusal::UsePost
}

async fn livez() -> Response {
    reply(StatusCode::OK, "text/plain", "ok\n".into())
}

/// Under leader election a standby is ready: it serves what a standby serves (probes,
/// metrics, a status naming the leader), and a Deployment's rolling update must not wait
/// for it to lead. A replica that lost the lease is not ready until it is a standby again
/// or leads.
async fn readyz(State(endpoints): Shared) -> Response {
    // Read under the lock, not from a snapshot: a probe every few seconds would otherwise
    // copy the report of every cluster (a few MiB at ten thousand) to answer one line.
    let (code, body) = match endpoints.status.read() {
        Ok(status) => readiness(&status),
        Err(_) => readiness(&StatusReport::default()),
    };
    reply(code, "text/plain", body)
}

/// What `/readyz` answers for `status`.
fn readiness(status: &StatusReport) -> (StatusCode, String) {
    match status.leader.as_ref().map(|l| l.role.as_str()) {
        Some("standby") => {
            // Under --shards a replica that does not lead still writes to its shards.
            let held = status
                .shards
                .as_ref()
                .map(|s| &s.held)
                .filter(|h| !h.is_empty());
            let body = match held {
                Some(held) => format!(
                    "ready (serving shards {}; another replica leads the rollout)\n",
                    held.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "ready (standby: another replica leads)\n".into(),
            };
            return (StatusCode::OK, body);
        }
        Some("lost") => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: lost the leader lease; not writing to fleet clusters\n".into(),
            )
        }
        _ => {}
    }
    if status.is_ready() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
    }
}

async fn metrics(State(endpoints): Shared) -> Response {
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        endpoints.metrics.encode(),
    )
}

async fn status(State(endpoints): Shared, layout: Layout) -> Response {
    json(&endpoints.snapshot().whole_fleet(), layout)
}

async fn summary(State(endpoints): Shared, layout: Layout) -> Response {
    let summary = endpoints.status.read().map(|s| s.summary());
    json(&summary.unwrap_or_default(), layout)
}

async fn rollout(State(endpoints): Shared, layout: Layout) -> Result<Response, Refusal> {
    let status = endpoints.rollouts.status().ok_or(Refusal::NoRollout)?;
    Ok(json(&status, layout))
}

/// The name of the token that let `req` through: the guard puts it there for every write.
fn caller(req: &Request) -> Arc<str> {
    req.extensions()
        .get::<Caller>()
        .map_or_else(|| Arc::from("unknown"), |c| c.0.clone())
}

/// The reason of a control request, checked; `action` names it in the log.
async fn control_reason(req: Request, action: &'static str) -> Result<String, Refusal> {
    let request: HaltRequest = control_body(req).await?;
    checked_reason(&request.reason, action)
}

/// An operator's text, checked before it reaches the status, the logs and commit statuses.
fn checked_reason(text: &str, action: &'static str) -> Result<String, Refusal> {
    fleet_core::text::check(text, MAX_REASON_CHARS)
        .map(str::to_string)
        .map_err(|e| {
            // The refusal says where the bad character is; the text itself is not logged.
            tracing::warn!(error = %e, action, "rollout {action} refused");
            Refusal::BadReason(e)
        })
}

/// Under leader election, the leader's identity unless this replica is the leader.
fn not_leader(endpoints: &Endpoints) -> Result<(), Refusal> {
    let Ok(status) = endpoints.status.read() else {
        return Ok(());
    };
    match &status.leader {
        Some(l) if l.role != "leader" => Err(Refusal::NotLeader(
            l.holder.clone().unwrap_or_else(|| "none yet".into()),
        )),
        _ => Ok(()),
    }
}

/// The answer to a control call once its decision is kept where a restart finds it.
async fn kept(
    endpoints: &Endpoints,
    status: RolloutStatus,
    layout: Layout,
) -> Result<Response, Refusal> {
    if endpoints.rollouts.settled().await {
        Ok(json(&status, layout))
    } else {
        Err(Refusal::NotKept)
    }
}

async fn halt(State(endpoints): Shared, layout: Layout, req: Request) -> Result<Response, Refusal> {
    let who = caller(&req);
    let reason = control_reason(req, "halt").await?;
    not_leader(&endpoints)?;
    let done = endpoints.rollouts.halt(&reason);
    log_control(&who, "halt", &reason, &done);
    kept(&endpoints, done.map_err(Refusal::Conflict)?, layout).await
}

async fn resume(
    State(endpoints): Shared,
    layout: Layout,
    req: Request,
) -> Result<Response, Refusal> {
    let who = caller(&req);
    let reason = control_reason(req, "resume").await?;
    not_leader(&endpoints)?;
    let done = endpoints.rollouts.resume();
    log_control(&who, "resume", &reason, &done);
    kept(&endpoints, done.map_err(Refusal::Conflict)?, layout).await
}

async fn approve(
    State(endpoints): Shared,
    layout: Layout,
    req: Request,
) -> Result<Response, Refusal> {
    let who = caller(&req);
    let request: ApproveRequest = control_body(req).await?;
    let reason = checked_reason(&request.reason, "approve")?;
    // A wave name is a DNS label; anything else names no wave, and is not echoed.
    let wave = checked_reason(&request.wave, "approve")?;
    not_leader(&endpoints)?;
    let done = endpoints.rollouts.approve(&wave, &who);
    log_control(&who, "approve", &reason, &done);
    kept(&endpoints, done.map_err(Refusal::Conflict)?, layout).await
}

async fn undo(State(endpoints): Shared, layout: Layout, req: Request) -> Result<Response, Refusal> {
    let who = caller(&req);
    let request: UndoRequest = control_body(req).await?;
    let reason = checked_reason(&request.reason, "undo")?;
    let wave = match &request.wave {
        Some(w) => Some(checked_reason(w, "undo")?),
        None => None,
    };
    not_leader(&endpoints)?;
    let done = endpoints.rollouts.undo(wave.as_deref(), &who, &reason);
    log_control(&who, "undo", &reason, &done);
    kept(&endpoints, done.map_err(Refusal::Conflict)?, layout).await
}

/// Every control action, taken or refused by the driver, with who asked and why. A field
/// each, so that the log format escapes them.
fn log_control<T>(
    who: &str,
    action: &'static str,
    reason: &str,
    done: &Result<T, super::driver::ControlError>,
) {
    match done {
        Ok(_) => tracing::warn!(who = %who, action, reason = %reason, "rollout control"),
        Err(e) => {
            tracing::warn!(who = %who, action, reason = %reason, error = %e, "rollout control refused")
        }
    }
}

/// The body of a rollout control: JSON (checked before anything is read), at most
/// [`MAX_BODY`] bytes, empty (the request's defaults) or its JSON.
async fn control_body<T: serde::de::DeserializeOwned + Default>(
    req: Request,
) -> Result<T, Refusal> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(Refusal::NotJson);
    }
    // Bounded by the router's `DefaultBodyLimit`.
    let body = Bytes::from_request(req, &()).await.map_err(Refusal::Body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(Refusal::BadBody)
}

#[cfg(test)]
mod tests;
