//! Git over HTTPS for the tests: `git http-backend` run as CGI behind a small TLS server on
//! loopback that demands HTTP Basic authentication with a token as the password, as a Git
//! host does. The certificate comes from a CA generated at start (the simulator's), so a
//! client must be told to trust it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

/// Serves the repositories under `root` at `https://127.0.0.1:<port>/<path>`; stops on drop.
pub struct HttpsServer {
    runtime: Option<tokio::runtime::Runtime>,
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate, in PEM.
    pub ca_pem: String,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Backend {
    root: PathBuf,
    exec_path: PathBuf,
    token: String,
}

impl HttpsServer {
    pub fn start(root: &Path, token: &str) -> HttpsServer {
        let tls = kube_sim::tls::generate().unwrap();
        let mut config = (*tls.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let backend = Arc::new(Backend {
            root: root.to_path_buf(),
            exec_path: PathBuf::from(super::git::git(root, &["--exec-path"])),
            token: token.to_string(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let backend = backend.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate ends here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let backend = backend.clone();
                        async move { backend.serve(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpsServer {
            runtime: Some(runtime),
            addr,
            ca_pem: tls.ca_pem,
        }
    }

    /// The URL of the repository at `path` under the root.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}/{path}", self.addr)
    }
}

fn reply(status: StatusCode, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}

impl Backend {
    /// The user name when the request carries `Basic` credentials whose password is the token.
    fn authorized(&self, req: &Request<hyper::body::Incoming>) -> Option<String> {
        let value = req.headers().get("authorization")?.to_str().ok()?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        (password == self.token).then(|| user.to_string())
    }

    async fn serve(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
        let Some(user) = self.authorized(&req) else {
            return Ok(reply(
                StatusCode::UNAUTHORIZED,
                &[("WWW-Authenticate", "Basic realm=\"git\"")],
                b"authentication required\n".to_vec(),
            ));
        };
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = header("content-type");
        let content_encoding = header("content-encoding");
        let git_protocol = header("git-protocol");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut child = tokio::process::Command::new(self.exec_path.join("git-http-backend"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", content_encoding)
            .env("GIT_PROTOCOL", git_protocol)
            .env("REMOTE_USER", user)
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Written beside the read so a backend that answers before reading all cannot block.
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
        let output = child.wait_with_output().await.unwrap();
        let _ = writer.await;
        Ok(parse_cgi(&output.stdout))
    }
}

/// The CGI response (`Status:` and other headers, a blank line, the body) as HTTP.
fn parse_cgi(out: &[u8]) -> Response<Full<Bytes>> {
    let (head, body) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match out.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => (&out[..0], out),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            status = code.parse().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            headers.push((name.trim().to_string(), value.to_string()));
        }
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    reply(status, &headers, body.to_vec())
}
