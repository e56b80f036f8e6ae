//! Watch streams: newline-delimited JSON events from a resourceVersion, with synthetic
//! ADDED events for the current state when no version is given (or `sendInitialEvents`),
//! BOOKMARK events, `timeoutSeconds`, and an ERROR event carrying 410 Expired when the
//! version is older than the kept event window (what kube-rs and client-go relist on); a
//! version the cluster never reached is refused with 504 "Too large resource version".

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::cluster::{ClusterState, Shared};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Event, EventType};

#[derive(Debug, Default)]
pub struct WatchOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
}

struct Filter {
    res: usize,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event type a watcher sees for `e`, or none when it is outside the selection.
    fn view(&self, e: &Event) -> Option<&'static str> {
        if e.key.res != self.res
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != e.key.namespace)
        {
            return None;
        }
        let now = self.selects(&e.object);
        let before = e.old.as_ref().is_some_and(|o| self.selects(o));
        match (e.kind, before, now) {
            (EventType::Deleted, true, _) => Some("DELETED"),
            (EventType::Deleted, false, _) => None,
            (_, false, true) => Some("ADDED"),
            (EventType::Modified, true, true) => Some("MODIFIED"),
            (EventType::Modified, true, false) => Some("DELETED"),
            _ => None,
        }
    }
}

/// One event as the API server writes it: `metav1.WatchEvent` is a Go struct, encoded in
/// field order, so `type` comes before `object` (a JSON map here would sort them the other
/// way round, and a client reading the type first could no longer decode the object as it
/// streams past, but would have to buffer it whole).
pub(crate) fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = format!("{{\"type\":{},\"object\":", Value::from(kind));
    s.push_str(&object.to_string());
    s.push_str("}\n");
    Bytes::from(s)
}

/// How long before a watch's timeout its last bookmark is sent (the cacher's
/// `nextBookmarkTime`: two seconds before the deadline).
const BOOKMARK_BEFORE_DEADLINE: Duration = Duration::from_secs(2);

fn bookmark(sh: &Shared, res: usize, rv: u64, initial_end: bool) -> Bytes {
    let r = &sh.registry[res];
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": meta}),
    )
}

/// Starts a watch; the receiver yields the response body's chunks until the watch ends.
pub fn start(
    sh: Arc<Shared>,
    cl: Arc<ClusterState>,
    res: usize,
    namespace: Option<String>,
    o: WatchOpts,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let filter = Filter {
        res,
        namespace,
        labels: o.labels,
        fields: o.fields,
    };
    let since = match o.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))?,
        ),
    };
    let beginning = begin(&sh, &cl, &filter, since, o.send_initial_events)?;
    let watcher = Watcher {
        sh,
        filter,
        bookmarks: o.bookmarks,
        timeout: o.timeout,
        tx,
    };
    tokio::spawn(watcher.run(beginning));
    Ok(rx)
}

/// What a watch sends first, and where it follows the change events from.
struct Beginning {
    /// The events since the watch's version, or the current state as ADDED events (then a
    /// bookmark with `sendInitialEvents`), or the ERROR of an expired version.
    backlog: Vec<Bytes>,
    /// `None` when the watch ends after the backlog.
    events: Option<broadcast::Receiver<Arc<Event>>>,
    last_rv: u64,
}

/// The backlog and the subscription, taken under one store lock so that no change falls
/// between them.
fn begin(
    sh: &Shared,
    cl: &ClusterState,
    filter: &Filter,
    since: Option<u64>,
    send_initial_events: bool,
) -> Result<Beginning, ApiError> {
    let mut backlog = Vec::new();
    let store = cl.store();
    let rx_events = store.subscribe();
    let current = store.resource_version();
    if let Some(v) = since.filter(|v| *v > current) {
        return Err(ApiError::too_large_resource_version(v, current));
    }
    let (events, last_rv) = match since {
        Some(v) if !send_initial_events => match store.events_since(v) {
            Ok(evs) => {
                for e in &evs {
                    if let Some(kind) = filter.view(e) {
                        backlog.push(line(kind, &e.object));
                    }
                }
                (Some(rx_events), current.max(v))
            }
            Err(oldest) => {
                let status = ApiError::expired(format!("too old resource version: {v} ({oldest})"))
                    .to_status();
                backlog.push(line("ERROR", &status));
                (None, current)
            }
        },
        _ => {
            for (_, obj) in store.list(filter.res, filter.namespace.as_deref(), None) {
                if filter.selects(obj) {
                    backlog.push(line("ADDED", obj));
                }
            }
            if send_initial_events {
                backlog.push(bookmark(sh, filter.res, current, true));
            }
            (Some(rx_events), current)
        }
    };
    Ok(Beginning {
        backlog,
        events,
        last_rv,
    })
}

/// A running watch: it sends into the response body until the client goes, the timeout
/// passes or it falls behind.
struct Watcher {
    sh: Arc<Shared>,
    filter: Filter,
    bookmarks: bool,
    timeout: Option<Duration>,
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    async fn run(self, beginning: Beginning) {
        let Beginning {
            backlog,
            events,
            mut last_rv,
        } = beginning;
        let tx = &self.tx;
        for chunk in backlog {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        let Some(mut events) = events else { return };
        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval(self.sh.config.bookmark_interval);
        tick.tick().await;
        // As the cacher does, a last bookmark shortly before the deadline, so that the
        // client resumes from where the watch got to.
        let mut last_bookmark = deadline
            .filter(|_| self.bookmarks)
            .map(|d| d.checked_sub(BOOKMARK_BEFORE_DEADLINE).unwrap_or(d));
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            let before_deadline = async {
                match last_bookmark {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = before_deadline => {
                    last_bookmark = None;
                    if tx.send(bookmark(&self.sh, self.filter.res, last_rv, false)).await.is_err() { return; }
                }
                e = events.recv() => match e {
                    Ok(e) if e.rv > last_rv => {
                        last_rv = e.rv;
                        if let Some(kind) = self.filter.view(&e) {
                            if tx.send(line(kind, &e.object)).await.is_err() { return; }
                        }
                    }
                    Ok(_) => {}
                    // A watcher that fell behind the channel is closed, as the API server
                    // closes slow watchers; the client resumes from its last version.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if self.bookmarks => {
                    let rv = last_rv;
                    if tx.send(bookmark(&self.sh, self.filter.res, rv, false)).await.is_err() { return; }
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = tx.closed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn a_version_the_cluster_never_reached_is_refused_with_504() {
        let sh = Arc::new(Shared::new(SimConfig::default()));
        let cl = Arc::new(ClusterState::new("c", &sh));
        let res = sh.find("", "v1", "namespaces").unwrap();
        let current = cl.store().resource_version();
        let from = |rv: u64| WatchOpts {
            resource_version: Some(rv.to_string()),
            ..WatchOpts::default()
        };
        let e = start(sh.clone(), cl.clone(), res, None, from(current + 1)).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (504, "Timeout"));
        assert!(e.message.contains("Too large resource version"), "{e:?}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { assert!(start(sh, cl, res, None, from(current)).is_ok()) });
    }

    #[test]
    fn an_event_names_its_type_before_its_object_as_the_api_server_does() {
        let object = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "kind": "Release"});
        let written = line("ADDED", &object);
        let text = std::str::from_utf8(&written).unwrap();
        assert!(text.starts_with(r#"{"type":"ADDED","object":{"#), "{text}");
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        let read: Value = serde_json::from_str(text).unwrap();
        assert_eq!(read, json!({"type": "ADDED", "object": object}));
    }
}
