//! One kind's watch on one cluster: the initial list (pages of 500), then a watch from the
//! list's resourceVersion with bookmarks, relisted on 410 Gone, picked up again from the
//! last version seen when the server ends it. These are kube-runtime's `watcher`
//! semantics, its events and its errors, so the session and its backoff do not change.
//! Two things differ, and they are why this is not kube-runtime's watcher at ten
//! thousand clusters:
//! - No line buffer is held between events. kube reads a watch through a line codec
//!   whose 8 KiB buffer lives as long as the watch: two watches per cluster were 16 MiB
//!   at a thousand clusters, for streams that are silent nearly all the time. Here a
//!   line is cut out of the HTTP/2 frame it came in (no copy), and only a line split
//!   across frames is put together, in a buffer dropped once it is whole.
//! - Each object is decoded once, straight into what the live view keeps
//!   ([`ServedObject`]): `DynamicObject`'s own decoding buffers the whole object (serde's
//!   `Content`) to flatten it and decodes that again, and the live view then encoded its
//!   metadata back to JSON and converted the lot.
//!
//! And one thing is added: a watch opened again after an error says so
//! ([`Seen::Reopened`]). Resumed from the last version seen, it brings no event when
//! nothing changed, and without this word the session would go on reporting the cluster
//! unreachable until its next resync, which at thousands of clusters is minutes away.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use fleet_core::reconcile::{LiveObject, ServedObject};
use fleet_core::render::ObjectKind;
use futures::{FutureExt, Stream};
use http_body_util::BodyExt;
use kube::api::{ListParams, WatchParams};
use kube::core::{ListMeta, Status, WatchEvent};
use kube::runtime::watcher::{Error, Event};
use serde::Deserialize;

use super::client::{self, ClusterClient, ResponseBody};

/// client-go's and kube-runtime's page size.
const PAGE_SIZE: u32 = 500;

/// The server's own timeout of a watch (kube's default `timeoutSeconds`); a watch that
/// says nothing for this long and a margin more is taken for a dead one and opened again,
/// as kube-runtime does.
const WATCH_TIMEOUT_SECS: u32 = 290;
const IDLE_MARGIN: Duration = Duration::from_secs(5);

pub type Item = Result<Seen, Error>;

/// What a watch hands out besides its errors.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "handed out and taken apart at once, never held; boxing would cost every event an allocation"
)]
pub enum Seen {
    Event(Event<LiveObject>),
    /// Open again from where it was after an error: the server answers, and nothing
    /// changed that the watch would say.
    Reopened,
}

/// The watch of the objects of `kind`, in every namespace, that carry `labels`.
pub fn watch(
    client: ClusterClient,
    kind: ObjectKind,
    labels: String,
) -> impl Stream<Item = Item> + Send {
    let on = On {
        client,
        kind,
        labels,
    };
    futures::stream::unfold((on, State::Empty), |(on, mut state)| async move {
        loop {
            let (item, next) = step(&on, state).await;
            state = next;
            if let Some(item) = item {
                return Some((item, (on, state)));
            }
        }
    })
}

struct On {
    client: ClusterClient,
    kind: ObjectKind,
    labels: String,
}

enum State {
    Empty,
    InitPage {
        continue_token: Option<String>,
        objects: VecDeque<LiveObject>,
        resource_version: Option<String>,
    },
    InitListed {
        resource_version: String,
        /// Whether the last attempt failed with an error handed out.
        after_error: bool,
    },
    Watching {
        resource_version: String,
        body: ResponseBody,
        lines: Lines,
    },
}

/// One step: an event or error to hand out, if any, and the state after it.
async fn step(on: &On, state: State) -> (Option<Item>, State) {
    match state {
        State::Empty => (
            Some(Ok(Seen::Event(Event::Init))),
            State::InitPage {
                continue_token: None,
                objects: VecDeque::new(),
                resource_version: None,
            },
        ),
        State::InitPage {
            continue_token,
            mut objects,
            resource_version,
        } => {
            if let Some(next) = objects.pop_front() {
                let state = State::InitPage {
                    continue_token,
                    objects,
                    resource_version,
                };
                return (Some(Ok(Seen::Event(Event::InitApply(next)))), state);
            }
            if let (None, Some(resource_version)) = (&continue_token, &resource_version) {
                let resource_version = resource_version.clone();
                return (
                    Some(Ok(Seen::Event(Event::InitDone))),
                    State::InitListed {
                        resource_version,
                        after_error: false,
                    },
                );
            }
            let mut lp = ListParams::default().labels(&on.labels).limit(PAGE_SIZE);
            lp.continue_token = continue_token;
            // Boxed, as is the watch's opening: the stream is held for the watch's life
            // and sized by its largest step, which these two are and which run seldom.
            match Box::pin(list(on, &lp)).await {
                Ok(list) => {
                    let resource_version = list.metadata.resource_version.filter(|v| !v.is_empty());
                    let continue_token = list.metadata.continue_.filter(|c| !c.is_empty());
                    if resource_version.is_none() && continue_token.is_none() {
                        return (Some(Err(Error::NoResourceVersion)), State::Empty);
                    }
                    let state = State::InitPage {
                        continue_token,
                        objects: list
                            .items
                            .into_iter()
                            .filter_map(|o| o.into_live(on.kind))
                            .collect(),
                        resource_version,
                    };
                    (None, state)
                }
                Err(e) => (Some(Err(Error::InitialListFailed(e))), State::Empty),
            }
        }
        State::InitListed {
            resource_version,
            after_error,
        } => match Box::pin(open(on, &resource_version)).await {
            Ok(body) => {
                let state = State::Watching {
                    resource_version,
                    body,
                    lines: Lines::default(),
                };
                (after_error.then_some(Ok(Seen::Reopened)), state)
            }
            Err(e) => (
                Some(Err(Error::WatchStartFailed(e))),
                State::InitListed {
                    resource_version,
                    after_error: true,
                },
            ),
        },
        State::Watching {
            resource_version,
            body,
            lines,
        } => watching(on.kind, resource_version, body, lines).await,
    }
}

/// The next event of an open watch: one already cut out of a frame, or the next frame's.
async fn watching(
    kind: ObjectKind,
    mut resource_version: String,
    mut body: ResponseBody,
    mut lines: Lines,
) -> (Option<Item>, State) {
    let idle = Duration::from_secs(WATCH_TIMEOUT_SECS.into()) + IDLE_MARGIN;
    loop {
        if let Some(line) = lines.next() {
            let event = match super::client::decode::<WatchEvent<ServedObject>>(&line) {
                Ok(event) => event,
                // What kube does with a line it cannot read: a Status is the server's
                // error, anything else a broken stream.
                Err(e) => {
                    let error = match serde_json::from_slice::<Status>(&line) {
                        Ok(status) => kube::Error::Api(status.boxed()),
                        Err(_) => kube::Error::SerdeError(e),
                    };
                    let state = State::Watching {
                        resource_version,
                        body,
                        lines,
                    };
                    return (Some(Err(Error::WatchFailed(error))), state);
                }
            };
            let (item, version) = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    // An object without a name is nothing the live view could keep.
                    let Some(o) = o.into_live(kind) else { continue };
                    let version = o.resource_version().map(str::to_string);
                    (Event::Apply(o), version)
                }
                WatchEvent::Deleted(o) => {
                    let Some(o) = o.into_live(kind) else { continue };
                    let version = o.resource_version().map(str::to_string);
                    (Event::Delete(o), version)
                }
                WatchEvent::Bookmark(mark) => {
                    resource_version = mark.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) => {
                    // 410: the version is gone from the server's window; list again.
                    let state = if status.code == 410 {
                        State::Empty
                    } else {
                        State::Watching {
                            resource_version,
                            body,
                            lines,
                        }
                    };
                    return (Some(Err(Error::WatchError(status))), state);
                }
            };
            return match version.filter(|v| !v.is_empty()) {
                Some(version) => {
                    let state = State::Watching {
                        resource_version: version,
                        body,
                        lines,
                    };
                    (Some(Ok(Seen::Event(item))), state)
                }
                None => (Some(Err(Error::NoResourceVersion)), State::Empty),
            };
        }
        // A failure to read is kube's `Error::Service`, as kube's own body reports it.
        let read = body
            .frame()
            .map(|f| f.map(|f| f.map_err(kube::Error::Service)));
        let frame = match tokio::time::timeout(idle, read).await {
            Ok(Some(Ok(frame))) => frame,
            // Ended by the server (its timeout), silent for too long, or cut short at the
            // end of a stream: watch again from the last version seen.
            Ok(None) | Err(_) => {
                let state = State::InitListed {
                    resource_version,
                    after_error: false,
                };
                return (None, state);
            }
            Ok(Some(Err(e))) if ends_quietly(&e) => {
                let state = State::InitListed {
                    resource_version,
                    after_error: false,
                };
                return (None, state);
            }
            Ok(Some(Err(e))) => {
                let state = State::InitListed {
                    resource_version,
                    after_error: true,
                };
                return (Some(Err(Error::WatchFailed(e))), state);
            }
        };
        if let Ok(data) = frame.into_data() {
            lines.push(data);
        }
    }
}

/// An end of the body that kube treats as the end of the watch rather than an error:
/// a connection closed mid-stream (what a watch sees after some minutes behind proxies).
fn ends_quietly(e: &kube::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// Opens the watch from `resource_version`: the body of the server's answer, or its error.
async fn open(on: &On, resource_version: &str) -> Result<ResponseBody, kube::Error> {
    let params = WatchParams::default()
        .labels(&on.labels)
        .timeout(WATCH_TIMEOUT_SECS);
    let mut request = super::apply::resource_request(on.kind, None)
        .watch(&params, resource_version)
        .map_err(kube::Error::BuildRequest)?;
    request.headers_mut().insert(
        http::header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
    let response = on
        .client
        .send(request.map(kube::client::Body::from))
        .await?;
    let code = response.status();
    if code.is_success() {
        return Ok(response.into_body());
    }
    let text = client::collect(response.into_body()).await?;
    Err(client::api_error(code, &text))
}

/// The lines of a watch's body as its frames bring them: a line within one frame is a
/// slice of it; a line split across frames is put together in `partial`, which is freed
/// once the line is whole, so a silent watch holds no buffer.
#[derive(Default)]
struct Lines {
    ready: VecDeque<Bytes>,
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, mut data: Bytes) {
        // An event is a line of several kilobytes: searched a vector at a time, not a byte.
        while let Some(end) = memchr::memchr(b'\n', &data) {
            let line = data.split_to(end + 1).slice(..end);
            let line = if self.partial.is_empty() {
                line
            } else {
                self.partial.extend_from_slice(&line);
                Bytes::from(std::mem::take(&mut self.partial))
            };
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.ready.push_back(line);
            }
        }
        self.partial.extend_from_slice(&data);
    }

    fn next(&mut self) -> Option<Bytes> {
        let line = self.ready.pop_front();
        if self.ready.is_empty() && self.ready.capacity() > 0 {
            self.ready = VecDeque::new();
        }
        line
    }
}

/// One page of the initial list, its objects decoded as the watch's are.
#[derive(Deserialize)]
struct Page {
    metadata: ListMeta,
    items: Vec<ServedObject>,
}

/// What `Api::list` asks, decoded as [`Page`].
async fn list(on: &On, params: &ListParams) -> Result<Page, kube::Error> {
    let mut request = super::apply::resource_request(on.kind, None)
        .list(params)
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("list");
    on.client.request::<Page>(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines_of(frames: &[&str]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for f in frames {
            lines.push(Bytes::copy_from_slice(f.as_bytes()));
            while let Some(l) = lines.next() {
                out.push(String::from_utf8(l.to_vec()).unwrap());
            }
        }
        out
    }

    #[test]
    fn lines_are_cut_at_newlines_whichever_frames_they_came_in() {
        assert_eq!(
            lines_of(&["{\"a\":1}\n{\"b\":2}\n"]),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(
            lines_of(&["{\"a\"", ":1}\n{\"b", "\":2}", "\n"]),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(
            lines_of(&["\n", "  \n", "{}\n"]),
            ["{}"],
            "blank lines are skipped"
        );
        assert_eq!(
            lines_of(&["{\"a\":1}"]),
            Vec::<String>::new(),
            "no line before its end"
        );
    }

    #[test]
    fn a_silent_watch_holds_no_buffer() {
        let mut lines = Lines::default();
        lines.push(Bytes::from_static(b"{\"type\":\"BOOK"));
        assert!(lines.partial.capacity() > 0);
        lines.push(Bytes::from_static(b"MARK\"}\n"));
        assert!(lines.next().is_some());
        assert_eq!(lines.partial.capacity(), 0);
        assert_eq!(lines.ready.capacity(), 0);
    }

    #[test]
    fn an_object_decodes_as_the_live_view_made_it_of_a_dynamic_object() {
        let objects = [
            (
                ObjectKind::Release,
                json!({"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
                "metadata": {"name": "a", "namespace": "n", "resourceVersion": "7", "generation": 3,
                    "uid": "0f6c1d3e", "creationTimestamp": "2026-12-03T10:00:00Z",
                    "labels": {"hops.ops.com.ai/psql": "p", "fleet.hops.ops.com.ai/fleet": "f"},
                    "annotations": {"fleet.hops.ops.com.ai/desired-hash": "abc"},
                    "finalizers": ["finalizer.managedresource.crossplane.io"],
                    "managedFields": [
                        {"manager": "psql-fleet", "operation": "Apply", "apiVersion": "helm.m.crossplane.io/v1beta1",
                         "time": "2026-12-03T10:00:00Z", "fieldsType": "FieldsV1",
                         "fieldsV1": {"f:spec": {"f:forProvider": {"f:chart": {"f:name": {}}}}}},
                        {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "helm.m.crossplane.io/v1beta1",
                         "time": "2026-12-03T11:00:00Z", "fieldsType": "FieldsV1",
                         "fieldsV1": {"f:spec": {"f:rollbackLimit": {}}}},
                        {"manager": "provider-helm", "operation": "Update", "subresource": "status",
                         "time": "2026-12-03T11:30:00Z", "fieldsType": "FieldsV1",
                         "fieldsV1": {"f:status": {"f:conditions": {}}}}
                    ]},
                "spec": {"forProvider": {"chart": {"name": "x", "version": "1.0.0"}, "values": {"a": [1, 2.5, null]}},
                    "rollbackLimit": 7},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                    "observedGeneration": 2, "lastTransitionTime": "2026-12-03T11:30:00Z"}]}}),
            ),
            (
                ObjectKind::Usage,
                json!({"apiVersion": "protection.crossplane.io/v1beta1", "kind": "Usage",
                "metadata": {"name": "u", "namespace": "n", "resourceVersion": "8",
                    "deletionTimestamp": "2026-12-03T12:00:00Z"},
                "spec": {"of": {"resourceRef": {"name": "a"}}, "by": {"resourceRef": {"name": "b"}}}}),
            ),
        ];
        for (kind, o) in objects {
            let text = serde_json::to_vec(&o).unwrap();
            let ours = serde_json::from_slice::<ServedObject>(&text)
                .unwrap()
                .into_live(kind);
            let dynamic = serde_json::from_slice::<kube::api::DynamicObject>(&text).unwrap();
            let theirs = super::super::apply::to_live(kind, dynamic);
            assert!(ours.is_some(), "{o}");
            assert_eq!(ours, theirs, "{o}");
        }
    }

    /// The stream lives as long as the watch, two per cluster: its size is what each
    /// holds, whichever step it is in.
    #[tokio::test]
    async fn a_watch_held_open_is_small() {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other("none"))
        });
        let client = ClusterClient::new(service);
        let size = std::mem::size_of_val(&watch(client, ObjectKind::Release, "a".into()));
        assert!(size < 1536, "{size} bytes");
    }

    /// Opened again after an error, a watch says so; opened again after the server ended
    /// it (its timeout), it says nothing: nothing went wrong there.
    #[tokio::test]
    async fn a_watch_reopened_after_an_error_says_so_and_after_a_quiet_end_does_not() {
        use futures::StreamExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let watches = Arc::new(AtomicUsize::new(0));
        let opened = watches.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let query = request.uri().query().unwrap_or_default().to_string();
            let n = if query.contains("watch=true") {
                opened.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                0
            };
            async move {
                let added = |name: &str, version: u32| {
                    format!(
                        "{{\"type\":\"ADDED\",\"object\":{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\",\"resourceVersion\":\"{version}\"}}}}}}\n"
                    )
                };
                let (code, body) = match n {
                    0 => (200, r#"{"apiVersion":"v1","kind":"ConfigMapList","metadata":{"resourceVersion":"5"},"items":[]}"#.to_string()),
                    1 => (500, r#"{"apiVersion":"v1","kind":"Status","status":"Failure","message":"etcd is away","reason":"InternalError","code":500}"#.to_string()),
                    2 => (200, added("a", 6)),
                    _ => (200, added("b", 7)),
                };
                let response = http::Response::builder()
                    .status(code)
                    .body(kube::client::Body::from(body.into_bytes()))
                    .unwrap();
                Ok::<_, std::io::Error>(response)
            }
        });
        let client = ClusterClient::new(service);
        let seen: Vec<String> = watch(client, ObjectKind::Release, "a".into())
            .take(6)
            .map(|item| match item {
                Ok(Seen::Event(Event::Init)) => "init".to_string(),
                Ok(Seen::Event(Event::InitDone)) => "listed".to_string(),
                Ok(Seen::Event(Event::Apply(o))) => format!("apply {}", o.object_ref.name),
                Ok(Seen::Reopened) => "reopened".to_string(),
                Err(Error::WatchStartFailed(_)) => "start failed".to_string(),
                other => format!("unexpected {other:?}"),
            })
            .collect()
            .await;
        assert_eq!(
            seen,
            [
                "init",
                "listed",
                "start failed",
                "reopened",
                "apply a",
                "apply b"
            ]
        );
        assert_eq!(watches.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_watch_line_decodes_with_its_type() {
        let line = br#"{"type":"MODIFIED","object":{"apiVersion":"protection.crossplane.io/v1beta1","kind":"Usage","metadata":{"name":"a","resourceVersion":"9"}}}"#;
        match serde_json::from_slice::<WatchEvent<ServedObject>>(line).unwrap() {
            WatchEvent::Modified(o) => {
                let o = o.into_live(ObjectKind::Usage).unwrap();
                assert_eq!(o.resource_version(), Some("9"))
            }
            other => panic!("{other:?}"),
        }
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old","reason":"Expired","code":410}}"#;
        assert!(matches!(
            serde_json::from_slice::<WatchEvent<ServedObject>>(gone).unwrap(),
            WatchEvent::Error(s) if s.code == 410
        ));
    }
}
