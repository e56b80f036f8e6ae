//! The endpoints answered in-process, through the router: bounds, refusals and the token
//! guard.

use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "0123456789abcdef0123";

fn endpoints_with(control: Control) -> Arc<Endpoints> {
    let metrics = Arc::new(Metrics::new().unwrap());
    let status = Arc::new(RwLock::new(StatusReport::default()));
    let rollouts = RolloutDriver::open(
        None,
        Default::default(),
        metrics.clone(),
        status.clone(),
        Vec::new(),
    );
    Arc::new(Endpoints {
        metrics,
        status,
        rollouts: Arc::new(rollouts),
        control: Arc::new(control),
    })
}

/// Endpoints whose control API takes [`TOKEN`], named `ops`.
fn endpoints() -> Arc<Endpoints> {
    let tokens = control::Tokens::from_file(&token_file(&format!("ops:{TOKEN}\n"))).unwrap();
    endpoints_with(Control {
        tokens: Some(tokens),
        status_requires_token: false,
    })
}

fn token_file(text: &str) -> std::path::PathBuf {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file.into_temp_path().keep().unwrap()
}

/// The status, content type, `Connection` header and body of the answer to a request,
/// which carries [`TOKEN`].
async fn ask(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> (u16, String, String, String) {
    ask_as(endpoints(), Some(TOKEN), method, path, content_type, body).await
}

async fn ask_as(
    endpoints: Arc<Endpoints>,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> (u16, String, String, String) {
    let mut request = axum::http::Request::builder().method(method).uri(path);
    if let Some(t) = content_type {
        request = request.header(header::CONTENT_TYPE, t);
    }
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request.body(Body::from(body)).unwrap();
    let response = router(endpoints).oneshot(request).await.unwrap();
    let header_of = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (code, content_type, connection) = (
        response.status().as_u16(),
        header_of(header::CONTENT_TYPE),
        header_of(header::CONNECTION),
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        code,
        content_type,
        connection,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_request_not_completed_within_its_timeout_gets_408() {
    // A rollout control whose body never finishes arriving.
    let trickle = futures::stream::pending::<Result<Bytes, std::io::Error>>();
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(HALT)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from_stream(trickle))
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = router(endpoints()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "request not completed in time\n");
}

#[tokio::test]
async fn the_read_endpoints_answer_as_documented() {
    let plain = |code: u16, text: &str| (code, "text/plain".into(), String::new(), text.into());
    assert_eq!(ask("GET", "/livez", None, "").await, plain(200, "ok\n"));
    assert_eq!(
        ask("GET", "/readyz", None, "").await,
        plain(503, "not ready\n")
    );
    assert_eq!(
        ask("GET", "/nowhere", None, "").await,
        plain(404, "not found\n")
    );
    let (code, content_type, _, _) = ask("GET", "/metrics", None, "").await;
    assert_eq!(
        (code, content_type.as_str()),
        (200, "text/plain; version=0.0.4")
    );
    let (code, content_type, _, body) = ask("GET", "/api/v1/status", None, "").await;
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let report: StatusReport = serde_json::from_str(&body).unwrap();
    assert!(!report.ready);
    let (code, content_type, _, body) = ask("GET", SUMMARY, None, "").await;
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let summary: crate::status::Summary = serde_json::from_str(&body).unwrap();
    assert_eq!(summary, crate::status::Summary::default());
    let (code, _, _, body) = ask("HEAD", "/livez", None, "").await;
    assert_eq!((code, body.as_str()), (200, ""));
}

#[tokio::test]
async fn writes_and_bodies_to_the_read_endpoints_are_refused_and_the_connection_closed() {
    let refused = |code: u16, text: &str| {
        (
            code,
            "text/plain".into(),
            "close".into(),
            String::from(text),
        )
    };
    for path in ["/metrics", SUMMARY, "/api/v1/rollout", "/nowhere"] {
        assert_eq!(
            ask("POST", path, None, "").await,
            refused(405, "only GET\n"),
            "{path}"
        );
    }
    assert_eq!(
        ask("DELETE", "/api/v1/status", None, "").await,
        refused(405, "only GET\n")
    );
    assert_eq!(
        ask("GET", "/api/v1/status", None, "x").await,
        refused(413, "requests take no body\n")
    );
}

#[tokio::test]
async fn the_rollout_controls_take_small_json_posts_and_answer_json_errors() {
    let error = |code: u16, message: &str| {
        (
            code,
            "application/json".into(),
            String::new(),
            serde_json::json!({ "error": message }).to_string(),
        )
    };
    let json = Some("application/json");
    assert_eq!(
        ask("GET", "/api/v1/rollout", None, "").await,
        error(404, "no rollout: no revision served yet")
    );
    for path in [HALT, RESUME, UNDO] {
        assert_eq!(ask("GET", path, None, "").await, error(405, "use POST"));
        assert_eq!(
            ask("POST", path, None, "{}").await,
            error(415, "Content-Type must be application/json")
        );
    }
    let big: &'static str = format!("{{\"reason\": \"{}\"}}", "x".repeat(MAX_BODY)).leak();
    assert_eq!(
        ask("POST", HALT, json, big).await,
        error(413, "body too large or unreadable")
    );
    let (code, _, _, body) = ask("POST", HALT, json, "{\"bogus\": 1}").await;
    assert_eq!(code, 400);
    assert!(body.contains("bad body: unknown field `bogus`"), "{body}");
    // A reason is plain text on one line, and short: else 400, before anything else.
    let forged: &'static str =
        r#"{"reason": "ok\u001b[2J\u001b[H\n2026-01-01T00:00:00Z  INFO rollout resumed"}"#;
    assert_eq!(
        ask("POST", HALT, json, forged).await,
        error(
            400,
            "reason refused: control character U+001B at character 3: plain text on one line only"
        )
    );
    let long: &'static str =
        format!("{{\"reason\": \"{}\"}}", "é".repeat(MAX_REASON_CHARS + 1)).leak();
    assert_eq!(
        ask("POST", HALT, json, long).await,
        error(400, "reason refused: 201 characters, at most 200")
    );
    // Nothing to halt yet: the driver's refusal, in its words.
    let (code, content_type, _, body) = ask("POST", HALT, json, " ").await;
    assert_eq!((code, content_type.as_str()), (409, "application/json"));
    assert!(body.contains("no revision served yet"), "{body}");
}

#[tokio::test]
async fn the_controls_want_a_valid_bearer_token_and_are_off_without_a_token_file() {
    let json = Some("application/json");
    for token in [None, Some("not-the-token-at-all")] {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(RESUME)
            .header(header::CONTENT_TYPE, "application/json");
        let request = match token {
            Some(t) => request.header(header::AUTHORIZATION, format!("Bearer {t}")),
            None => request,
        };
        let response = router(endpoints())
            .oneshot(request.body(Body::from("{}")).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
    }
    // Anything else under /api/ is a write too, and unknown: guarded before it is found.
    let (code, _, _, _) = ask_as(endpoints(), None, "POST", "/api/v2/later", json, "{}").await;
    assert_eq!(code, 401);
    // The probes, the metrics and (by default) the status reads stay open.
    for path in ["/livez", "/metrics", "/api/v1/status"] {
        let (code, _, _, _) = ask_as(endpoints(), None, "GET", path, None, "").await;
        assert_eq!(code, 200, "{path}");
    }
    // No token file: the writes are off, and the answer says how to turn them on.
    let off = || endpoints_with(Control::default());
    let (code, _, _, body) = ask_as(off(), Some(TOKEN), "POST", HALT, json, "{}").await;
    assert_eq!(code, 403);
    assert!(body.contains("--control-token-file"), "{body}");
    let (code, _, _, _) = ask_as(off(), None, "GET", "/api/v1/status", None, "").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn status_reads_want_the_token_under_status_requires_token() {
    let strict = || {
        let tokens = control::Tokens::from_file(&token_file(TOKEN)).unwrap();
        endpoints_with(Control {
            tokens: Some(tokens),
            status_requires_token: true,
        })
    };
    for path in [STATUS, SUMMARY, ROLLOUT] {
        let (code, _, _, _) = ask_as(strict(), None, "GET", path, None, "").await;
        assert_eq!(code, 401, "{path}");
    }
    for path in [STATUS, SUMMARY] {
        let (code, _, _, _) = ask_as(strict(), Some(TOKEN), "GET", path, None, "").await;
        assert_eq!(code, 200, "{path}");
    }
    let (code, _, _, _) = ask_as(strict(), None, "GET", "/readyz", None, "").await;
    assert_eq!(code, 503);
}

#[tokio::test]
async fn readyz_says_a_standby_is_ready_and_a_replica_that_lost_the_lease_is_not() {
    let endpoints = endpoints();
    let with_role = |role: &str| {
        endpoints.status.write().unwrap().leader = Some(crate::status::LeaderStatus {
            identity: "me".into(),
            lease: "default/psql-fleet".into(),
            role: role.into(),
            ..Default::default()
        });
    };
    with_role("standby");
    let (code, _, _, body) = ask_as(endpoints.clone(), None, "GET", "/readyz", None, "").await;
    assert_eq!(
        (code, body.as_str()),
        (200, "ready (standby: another replica leads)\n")
    );
    endpoints.status.write().unwrap().shards = Some(crate::status::ShardStatus {
        shards: 6,
        held: vec![1, 4],
        members: vec!["me".into(), "other".into()],
    });
    let (code, _, _, body) = ask_as(endpoints.clone(), None, "GET", "/readyz", None, "").await;
    assert_eq!(
        (code, body.as_str()),
        (
            200,
            "ready (serving shards 1, 4; another replica leads the rollout)\n"
        )
    );
    endpoints.status.write().unwrap().shards = None;
    with_role("lost");
    let (code, _, _, body) = ask_as(endpoints.clone(), None, "GET", "/readyz", None, "").await;
    assert_eq!(code, 503);
    assert!(body.contains("lost the leader lease"), "{body}");
    // A leader is ready as a single agent is: once its clusters are reconciled.
    with_role("leader");
    if let Ok(mut s) = endpoints.status.write() {
        s.source.revision = Some("0a1b2c".into());
        s.served_clusters = 1;
    }
    let (code, _, _, _) = ask_as(endpoints.clone(), None, "GET", "/readyz", None, "").await;
    assert_eq!(code, 503);
    let reconciled = crate::status::ClusterStatus {
        reconciled: true,
        ..Default::default()
    };
    endpoints
        .status
        .write()
        .unwrap()
        .clusters
        .insert("c1".into(), reconciled.into());
    let (code, _, _, _) = ask_as(endpoints.clone(), None, "GET", "/readyz", None, "").await;
    assert_eq!(code, 200);
    let (_, _, _, body) = ask_as(endpoints, None, "GET", STATUS, None, "").await;
    let report: StatusReport = serde_json::from_str(&body).unwrap();
    assert!(report.ready, "the status says so too: {body}");
}

#[tokio::test]
async fn a_standby_refuses_every_control_undo_included_naming_the_leader() {
    let endpoints = endpoints();
    endpoints.status.write().unwrap().leader = Some(crate::status::LeaderStatus {
        identity: "me".into(),
        lease: "default/psql-fleet".into(),
        role: "standby".into(),
        holder: Some("agent-b".into()),
        ..Default::default()
    });
    let json = Some("application/json");
    for (path, body) in [
        (HALT, "{}"),
        (RESUME, "{}"),
        (APPROVE, r#"{"wave": "prod"}"#),
        (UNDO, "{}"),
        (UNDO, r#"{"wave": "prod", "reason": "latency"}"#),
    ] {
        let (code, _, _, answer) =
            ask_as(endpoints.clone(), Some(TOKEN), "POST", path, json, body).await;
        assert_eq!(code, 503, "{path}: {answer}");
        assert!(
            answer.contains("ask the leader (agent-b)"),
            "{path}: {answer}"
        );
    }
    // The leader's own refusal, in the driver's words, once this replica leads.
    endpoints
        .status
        .write()
        .unwrap()
        .leader
        .as_mut()
        .unwrap()
        .role = "leader".into();
    let (code, _, _, answer) = ask_as(endpoints, Some(TOKEN), "POST", UNDO, json, "{}").await;
    assert_eq!(code, 409, "{answer}");
    assert!(answer.contains("no rollout to undo"), "{answer}");
}

#[test]
fn a_status_read_copies_no_clusters_status_and_a_later_change_leaves_it_as_read() {
    let endpoints = endpoints();
    let cluster = |reconciled| {
        std::sync::Arc::new(crate::status::ClusterStatus {
            reconciled,
            ..Default::default()
        })
    };
    if let Ok(mut s) = endpoints.status.write() {
        s.clusters.insert("c1".into(), cluster(false));
        s.clusters.insert("c2".into(), cluster(false));
    }
    let read = endpoints.snapshot();
    let live = |name: &str| endpoints.status.read().unwrap().clusters[name].clone();
    assert!(std::sync::Arc::ptr_eq(&read.clusters["c1"], &live("c1")));
    // A writer changes its own copy, as a worker's update does.
    if let Ok(mut s) = endpoints.status.write() {
        s.clusters.upsert("c1", |c1| c1.reconciled = true);
    }
    assert!(live("c1").reconciled);
    assert!(
        !read.clusters["c1"].reconciled,
        "the read is as it was read"
    );
    assert!(std::sync::Arc::ptr_eq(&read.clusters["c2"], &live("c2")));
}

/// The status read by `agent` (a User-Agent header, or none) at `path`.
async fn status_read_by(agent: Option<&str>, path: &str) -> String {
    let mut request = axum::http::Request::builder().uri(path);
    if let Some(agent) = agent {
        request = request.header(header::USER_AGENT, agent);
    }
    let response = router(endpoints())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn programs_read_compact_json_and_people_indented_unless_pretty_says() {
    let indented = |body: &str| body.contains("\n  \"");
    let compact = status_read_by(None, STATUS).await;
    assert!(!compact.contains('\n'), "{compact}");
    let report: StatusReport = serde_json::from_str(&compact).unwrap();
    assert!(!report.ready);
    assert!(!indented(
        &status_read_by(Some("psql-fleet/0.1"), STATUS).await
    ));
    for person in [
        "curl/8.5.0",
        "Wget/1.21.3",
        "Mozilla/5.0 (X11; Linux x86_64)",
    ] {
        let body = status_read_by(Some(person), STATUS).await;
        assert!(indented(&body), "{person}: {body}");
        assert_eq!(serde_json::from_str::<StatusReport>(&body).unwrap(), report);
    }
    // `pretty` decides when it has a value, as Go's strconv.ParseBool reads it.
    for (query, wanted) in [
        ("?pretty=true", true),
        ("?pretty=1", true),
        ("?watch=0&pretty=True", true),
        ("?pretty=false", false),
        ("?pretty=yes", false),
    ] {
        for agent in [None, Some("curl/8.5.0")] {
            let body = status_read_by(agent, &format!("{STATUS}{query}")).await;
            assert_eq!(indented(&body), wanted, "{query} by {agent:?}");
        }
    }
    // Without a value it says nothing: the client decides.
    assert!(!indented(
        &status_read_by(None, &format!("{STATUS}?pretty")).await
    ));
    assert!(indented(
        &status_read_by(Some("curl/8.5.0"), &format!("{STATUS}?pretty=")).await
    ));
}
