//! The client a cluster's session calls its API server through. kube's `Client` puts every
//! request through a `tower::buffer`: a channel and a task of its own per client, so that
//! it can be cloned cheaply. The channel's first block alone (32 slots of a request each)
//! was about 10 KiB of every cluster's memory, held for the connection's life, and each
//! call went through one more task on its way. The stack under it ([`super::transport`]:
//! TLS, HTTP/2, auth, retries) clones cheaply itself, so this client shares it behind an
//! `Arc` and each call clones it, with the same requests and errors as kube's `Client`.

use std::sync::Arc;

use bytes::Bytes;
use either::Either;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use kube::core::Status;
use kube::Error;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceExt};

/// An answer's body, whatever the stack under the client reads it with.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

type Stack = BoxCloneSyncService<Request<kube::client::Body>, Response<ResponseBody>, BoxError>;

/// A cluster's API server, as its session and passes call it.
#[derive(Clone)]
pub struct ClusterClient {
    stack: Arc<Stack>,
}

impl ClusterClient {
    /// A client over `service`, which sends a request to the API server (the path is
    /// relative to it) and answers with what the server answered.
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<Request<kube::client::Body>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|r: Response<B>| r.map(|b| b.map_err(Into::into).boxed_unsync()))
            .map_err(Into::into);
        ClusterClient {
            stack: Arc::new(BoxCloneSyncService::new(service)),
        }
    }

    /// Sends `request` and hands back the answer, whatever its code; a failure to get one
    /// is told apart as kube's `Client::send` tells it.
    pub async fn send(
        &self,
        request: Request<kube::client::Body>,
    ) -> Result<Response<ResponseBody>, Error> {
        Stack::clone(&self.stack)
            .oneshot(request)
            .await
            .map_err(|e| {
                e.downcast::<Error>()
                    .map(|e| *e)
                    .or_else(|e| e.downcast::<hyper::Error>().map(|e| Error::HyperError(*e)))
                    .unwrap_or_else(Error::Service)
            })
    }

    /// Sends `request` and decodes a successful answer as `T`; an error answer is
    /// `Error::Api` with the server's Status.
    pub async fn request<T: DeserializeOwned>(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<T, Error> {
        let body = self.answer(request).await?;
        decode(&body).map_err(Error::SerdeError)
    }

    /// As [`Self::request`], for a call whose answer is not kept (a created Event, a probe
    /// that the server answers); a 2xx body that is not JSON is still an error.
    pub async fn call(&self, request: Request<Vec<u8>>) -> Result<(), Error> {
        self.request::<serde::de::IgnoredAny>(request)
            .await
            .map(drop)
    }

    /// As [`Self::request`], for calls answered either with an object or with a Status (a
    /// delete: the object while finalizers hold it, a Status once it is gone).
    pub async fn request_status<T: DeserializeOwned>(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Either<T, Status>, Error> {
        let body = self.answer(request).await?;
        let value: serde_json::Value = decode(&body).map_err(Error::SerdeError)?;
        if value["kind"] == "Status" {
            serde_json::from_value(value)
                .map(Either::Right)
                .map_err(Error::SerdeError)
        } else {
            serde_json::from_value(value)
                .map(Either::Left)
                .map_err(Error::SerdeError)
        }
    }

    /// The body of a successful answer to `request`.
    async fn answer(&self, request: Request<Vec<u8>>) -> Result<Bytes, Error> {
        let response = self.send(request.map(kube::client::Body::from)).await?;
        let code = response.status();
        let body = collect(response.into_body()).await?;
        if code.is_client_error() || code.is_server_error() {
            return Err(api_error(code, &body));
        }
        Ok(body)
    }
}

/// The whole of a body; a failure while reading it is kube's `Error::Service`, as its
/// `Body` reports one.
pub async fn collect(body: ResponseBody) -> Result<Bytes, Error> {
    Ok(body.collect().await.map_err(Error::Service)?.to_bytes())
}

/// The error an answer with `code` and `body` stands for: the server's Status, or one made
/// from the text when the body is not a Status (a proxy's page, a path nothing serves).
/// A JSON answer decoded as `T`. serde_json checks each string of a byte slice as UTF-8 on
/// its own, a call per string (a Release in a watch event has hundreds); a body checked
/// whole first is read as text without it. A body that is not UTF-8 is left to
/// `from_slice`, which says where.
pub fn decode<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

pub fn api_error(code: http::StatusCode, body: &[u8]) -> Error {
    let status = serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
        Status::failure(
            String::from_utf8_lossy(body).trim(),
            "Failed to parse error data",
        )
        .with_code(code.as_u16())
    });
    Error::Api(status.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_decodes_as_from_slice_decodes_it_and_bad_bytes_are_placed() {
        let bodies: [&[u8]; 4] = [
            br#"{"kind":"Release","metadata":{"name":"r\u00e9","labels":{"a":"\u2603 b"}}}"#,
            "{\"name\":\"caf\u{e9}\"}".as_bytes(),
            b"{\"name\":\"a\"",
            b"{\"name\":\"a\xffb\"}",
        ];
        for body in bodies {
            let ours = decode::<serde_json::Value>(body).map_err(|e| (e.line(), e.column()));
            let theirs = serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|e| (e.line(), e.column()));
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(body));
        }
        assert!(decode::<serde_json::Value>(b"{\"name\":\"a\xffb\"}").is_err());
    }

    fn answering(code: u16, body: &'static str) -> ClusterClient {
        ClusterClient::new(tower::service_fn(
            move |_: Request<kube::client::Body>| async move {
                Ok::<_, std::io::Error>(
                    Response::builder()
                        .status(code)
                        .body(kube::client::Body::from(body.as_bytes().to_vec()))
                        .unwrap(),
                )
            },
        ))
    }

    fn get() -> Request<Vec<u8>> {
        Request::get("/api/v1/namespaces/kube-system")
            .body(Vec::new())
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_is_decoded_and_an_error_answer_is_the_servers_status() {
        let ok = answering(200, r#"{"metadata":{"uid":"u-1"}}"#);
        let ns: k8s_openapi::api::core::v1::Namespace = ok.request(get()).await.unwrap();
        assert_eq!(ns.metadata.uid.as_deref(), Some("u-1"));

        let missing = answering(
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"namespaces \"x\" not found","reason":"NotFound","code":404}"#,
        );
        match missing.request::<serde_json::Value>(get()).await {
            Err(Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
                assert_eq!(s.message, r#"namespaces "x" not found"#);
            }
            other => panic!("{other:?}"),
        }

        // An answer not kept is still checked: the error answer is the same Status.
        ok.call(get()).await.unwrap();
        assert!(matches!(missing.call(get()).await, Err(Error::Api(s)) if s.code == 404));

        // Not a Status: a proxy's page keeps its code and its text.
        let proxy = answering(502, "  Bad Gateway\n");
        match proxy.request::<serde_json::Value>(get()).await {
            Err(Error::Api(s)) => {
                assert_eq!(s.code, 502);
                assert_eq!(s.message, "Bad Gateway");
                assert_eq!(s.reason, "Failed to parse error data");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_delete_answers_the_object_held_or_a_status() {
        let held = answering(
            200,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","deletionTimestamp":"2026-12-03T11:00:00Z"}}"#,
        );
        let answer = held
            .request_status::<kube::api::DynamicObject>(get())
            .await
            .unwrap();
        assert_eq!(answer.left().unwrap().metadata.name.as_deref(), Some("a"));

        let gone = answering(
            200,
            r#"{"kind":"Status","apiVersion":"v1","status":"Success","details":{"name":"a"}}"#,
        );
        let answer = gone
            .request_status::<kube::api::DynamicObject>(get())
            .await
            .unwrap();
        assert_eq!(
            answer.right().unwrap().status,
            Some(kube::core::response::StatusSummary::Success)
        );
    }

    #[tokio::test]
    async fn no_answer_is_a_service_error_with_its_cause() {
        let down = ClusterClient::new(tower::service_fn(|_: Request<kube::client::Body>| async {
            Err::<Response<kube::client::Body>, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))
        }));
        match down.request::<serde_json::Value>(get()).await {
            Err(Error::Service(e)) => assert_eq!(e.to_string(), "connection refused"),
            other => panic!("{other:?}"),
        }
    }
}
