//! What the agent shows the outside: no secret in its status API, metrics or errors after
//! failures involving clusters whose tokens are known; and its HTTP endpoints refuse
//! bodies and cut off clients that trickle their headers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::{eventually, Agent, AgentOptions, SimFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_kubeconfig_content_in_status_metrics_or_errors_after_failures() {
    let f = SimFleet::start(3, Duration::from_millis(200)).await;
    let names = f.names();
    let (rotated, broken, fine) = (names[0].clone(), names[1].clone(), names[2].clone());
    f.claim_everywhere();
    let kubeconfig = |name: &str| std::fs::read_to_string(f.sim.kubeconfig_path(name)).unwrap();
    let token_of = |text: &str| {
        let at = text.find("token: ").unwrap() + "token: ".len();
        text[at..].lines().next().unwrap().trim().to_string()
    };
    let mut secrets = vec![
        token_of(&kubeconfig(&rotated)),
        token_of(&kubeconfig(&fine)),
    ];
    let ca_data = {
        let text = kubeconfig(&fine);
        let at = text.find("certificate-authority-data: ").unwrap() + 28;
        text[at..].lines().next().unwrap().trim().to_string()
    };
    secrets.push(ca_data[..40].to_string());
    // A kubeconfig that does not parse, holding a token: its error must not quote it.
    let broken_token = "tok-broken-0123456789abcdef".to_string();
    std::fs::write(
        f.sim.kubeconfig_path(&broken),
        format!("users: [{{name: u, user: {{token: {broken_token}}}}}]\nclusters: [oops"),
    )
    .unwrap();
    secrets.push(broken_token);

    let agent = f.start_agent(AgentOptions::default()).await;
    agent
        .wait_converged(&[fine.clone(), rotated.clone()], 1)
        .await;
    secrets.push(f.rotate_token_out_of_band(&rotated).await);
    f.expire_watches(&rotated).await;
    f.faults(&fine, json!({"errorRate": 0.5})).await;
    let report = eventually("both failures reported", || async {
        let r = agent.status().await?;
        let failing = |n: &str| r.clusters.get(n).is_some_and(|c| c.last_error.is_some());
        (failing(&rotated) && failing(&broken)).then_some(r)
    })
    .await;
    // Two more passes of the cluster answering 500s half the time, so its errors are in.
    agent.wait_passes(&fine, 2).await;

    let status = serde_json::to_string(&agent.report().await).unwrap();
    let metrics = agent.metrics().await;
    let table = report.to_table();
    for secret in &secrets {
        for (surface, text) in [
            ("status", &status),
            ("metrics", &metrics),
            ("table", &table),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "{surface} holds a secret:\n{text}"
            );
        }
    }
    // The errors are there, naming the cluster, only without the secrets.
    let broken_error = report.clusters[&broken].last_error.clone().unwrap();
    assert!(
        broken_error.contains(&broken) && broken_error.contains("kubeconfig"),
        "{broken_error}"
    );
    agent.stop().await;
    f.sim.shutdown().await;
}

/// A cluster whose kubeconfig trusts another CA than the one that signed its API
/// server's certificate, as after a CA rotation the kubeconfig missed: the status says
/// the TLS cause, not only that the list failed, and never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_is_reported_down_to_its_cause_without_the_token() {
    let f = SimFleet::start(1, Duration::from_millis(200)).await;
    let name = f.names()[0].clone();
    f.claim_everywhere();
    let path = f.sim.kubeconfig_path(&name);
    let text = std::fs::read_to_string(&path).unwrap();
    let token = {
        let at = text.find("token: ").unwrap() + "token: ".len();
        text[at..].lines().next().unwrap().trim().to_string()
    };
    let other_ca = f.sim_dir().join("other-ca.pem");
    std::fs::write(&other_ca, kube_sim::tls::generate().unwrap().ca_pem).unwrap();
    let wrong: String = text
        .lines()
        .map(
            |line| match line.split_once("certificate-authority-data:") {
                Some((indent, _)) => {
                    format!("{indent}certificate-authority: {}\n", other_ca.display())
                }
                None => format!("{line}\n"),
            },
        )
        .collect();
    assert_ne!(wrong, text, "no CA in the kubeconfig to replace");
    std::fs::write(&path, wrong).unwrap();

    let agent = f.start_agent(AgentOptions::default()).await;
    let error = eventually("the TLS failure reported", || async {
        let report = agent.status().await?;
        report.clusters.get(&name)?.last_error.clone()
    })
    .await;
    // The other CA has the same name but another key: rustls says BadSignature.
    let prefix = format!("cluster {name}: watch failed: initial list failed: ");
    assert!(
        error.starts_with(&prefix) && error.contains("invalid peer certificate: "),
        "{error}"
    );
    assert!(!error.contains(&token), "{error}");
    agent.assert_error_counted(&name, "unreachable").await;
    agent.stop().await;
    f.sim.shutdown().await;
}

/// The agent's endpoints alone, on a fleet with no clusters.
async fn endpoints_only() -> (SimFleet, Agent) {
    let f = SimFleet::start(0, Duration::ZERO).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    eventually("the agent to answer on /livez", || agent.get("/livez")).await;
    (f, agent)
}

/// Sends `head` then up to `body` bytes; what the server answered before it stopped
/// reading, and how many body bytes it took.
fn send(addr: &str, head: &str, body: usize) -> (String, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < body {
        match stream.write(&chunk[..chunk.len().min(body - sent)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_mebibyte_body_is_refused_without_being_read() {
    let (fleet, agent) = endpoints_only().await;
    let addr = agent.server.trim_start_matches("http://").to_string();
    let size = 10 * 1024 * 1024;
    let (answer, _) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            send(
                &addr,
                &format!(
                    "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
                ),
                size,
            )
        }
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let (answer, _) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            send(
                &addr,
                &format!("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"),
                size,
            )
        }
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    // Still serving.
    assert!(agent.get("/livez").await.is_some());
    agent.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_disconnected() {
    let (fleet, agent) = endpoints_only().await;
    let addr = agent.server.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // A header byte every 100 ms, never finishing: the server must give up first.
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(100));
            if stream.write_all(b"X").is_err() {
                return Some(started.elapsed());
            }
            stream
                .set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            let mut buf = [0u8; 256];
            match stream.read(&mut buf) {
                Ok(_) => return Some(started.elapsed()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return Some(started.elapsed()),
            }
        }
        None
    })
    .await
    .unwrap();
    let closed_after = closed_after.expect("a slowloris connection was kept open for a minute");
    assert!(
        closed_after < Duration::from_secs(30),
        "closed only after {closed_after:?}"
    );
    agent.stop().await;
    fleet.shutdown().await;
}
