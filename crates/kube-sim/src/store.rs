//! One cluster's objects, its resourceVersion counter and a bounded window of change
//! events that watches resume from, bounded as kube-apiserver's watch cache is, by count
//! and by age; older resourceVersions answer 410 Gone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast;

/// Where an object lives: resource type (index into the registry), namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub res: usize,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// A committed change; `old` lets a selector-filtered watch turn a change that leaves
/// the selection into DELETED, as the API server does.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub key: Key,
    pub kind: EventType,
    pub object: Arc<Value>,
    pub old: Option<Arc<Value>>,
}

/// How many change events a cluster keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub events: usize,
    pub age: Duration,
}

/// Watch streams that fall this far behind are ended (they relist), as the API server
/// ends a watcher whose buffer fills; the window is what they resume from.
const BROADCAST_CAPACITY: usize = 1024;

/// Objects plus the event window; callers hold the cluster's lock around every use.
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    events: VecDeque<(Instant, Arc<Event>)>,
    window: Window,
    /// Highest resourceVersion dropped from the window (or expired by fault injection);
    /// a watch from at or below it cannot be served.
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Store {
    pub fn new(window: Window) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            events: VecDeque::new(),
            window: Window {
                events: window.events.max(1),
                age: window.age,
            },
            compacted: 0,
            tx,
        }
    }

    /// A store holding `objects` as they were saved at `rv`, as an API server finds etcd
    /// after a restart: its event window starts empty there, so a watch from an older
    /// resourceVersion gets 410 and relists.
    pub fn restore(window: Window, rv: u64, objects: BTreeMap<Key, Value>) -> Self {
        let mut store = Self::new(window);
        store.rv = rv;
        store.compacted = rv;
        store.objects = objects.into_iter().map(|(k, o)| (k, Arc::new(o))).collect();
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.objects.get(key).cloned()
    }

    /// Objects of one resource type, optionally in one namespace, in key order, starting
    /// after `after` (a continue token's last name).
    pub fn list<'a>(
        &'a self,
        res: usize,
        namespace: Option<&'a str>,
        after: Option<&'a Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        let start = Key {
            res,
            namespace: namespace.unwrap_or_default().to_string(),
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.res == res && namespace.is_none_or(|ns| k.namespace == ns))
            .filter(move |(k, _)| after.is_none_or(|a| *k > a))
    }

    /// Every object, for cross-type lookups (namespace contents, owner references).
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Arc<Value>)> {
        self.objects.iter()
    }

    /// Stores `object` under a fresh resourceVersion and records the event.
    pub fn put(&mut self, key: Key, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        let object = Arc::new(object);
        self.insert(key, object.clone());
        object
    }

    /// Stores an object already built with `rv` as its resourceVersion (one shared between
    /// clusters), skipping the versions in between.
    pub fn put_built(&mut self, key: Key, rv: u64, object: Arc<Value>) {
        debug_assert!(rv > self.rv, "resourceVersions only go up");
        debug_assert_eq!(
            object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
            Some(rv.to_string().as_str())
        );
        self.rv = rv.max(self.rv + 1);
        self.insert(key, object);
    }

    /// Stores `object` at the current resourceVersion and records the event.
    fn insert(&mut self, key: Key, object: Arc<Value>) {
        let old = self.objects.insert(key.clone(), object.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(key, kind, object, old);
    }

    /// Removes an object; the DELETED event carries a fresh resourceVersion as it does
    /// on a real server.
    pub fn remove(&mut self, key: &Key) -> Option<Arc<Value>> {
        let old = self.objects.remove(key)?;
        self.rv += 1;
        let mut last = (*old).clone();
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        let last = Arc::new(last);
        self.record(key.clone(), EventType::Deleted, last.clone(), Some(old));
        Some(last)
    }

    fn record(&mut self, key: Key, kind: EventType, object: Arc<Value>, old: Option<Arc<Value>>) {
        let event = Arc::new(Event {
            rv: self.rv,
            key,
            kind,
            object,
            old,
        });
        let now = Instant::now();
        self.events.push_back((now, event.clone()));
        while self.events.len() > self.window.events
            || self
                .events
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > self.window.age)
        {
            if let Some((_, e)) = self.events.pop_front() {
                self.compacted = self.compacted.max(e.rv);
            }
        }
        // No receivers is normal: nobody watches this cluster right now.
        let _ = self.tx.send(event);
    }

    /// Events after `rv` still in the window, or `Err(oldest servable)` when `rv` is too old.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        // Events past their age are gone even when no write has pruned them yet.
        let now = Instant::now();
        let aged = self
            .events
            .iter()
            .take_while(|(at, _)| now.duration_since(*at) > self.window.age)
            .map(|(_, e)| e.rv)
            .last()
            .unwrap_or(0);
        let compacted = self.compacted.max(aged);
        if rv < compacted {
            return Err(compacted + 1);
        }
        Ok(self
            .events
            .iter()
            .filter(|(_, e)| e.rv > rv)
            .map(|(_, e)| e.clone())
            .collect())
    }

    /// Marks everything up to now as compacted: the next watch from an older
    /// resourceVersion gets 410 (fault injection "expire watches").
    pub fn expire(&mut self) {
        self.compacted = self.rv;
        self.events.clear();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Drops live watch streams by replacing the channel (expire watches).
    pub fn close_watchers(&mut self) {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        self.tx = tx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(events: usize) -> Window {
        Window {
            events,
            age: Duration::from_secs(300),
        }
    }

    #[test]
    fn events_past_their_age_are_gone_even_without_a_later_write() {
        let mut s = Store::new(Window {
            events: 100,
            age: Duration::from_millis(50),
        });
        s.put(key("a"), json!({"metadata": {"name": "a"}}));
        s.put(key("b"), json!({"metadata": {"name": "b"}}));
        assert_eq!(s.events_since(1).unwrap().len(), 2);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.events_since(1).err(), Some(4));
        // The newest version is still a place to watch from: nothing is missed there.
        assert!(s.events_since(s.resource_version()).unwrap().is_empty());
    }

    fn key(name: &str) -> Key {
        Key {
            res: 0,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn resource_versions_increase_and_events_resume_from_a_version() {
        let mut s = Store::new(window(10));
        let a = s.put(key("a"), json!({"metadata": {"name": "a"}}));
        let rv_a: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        s.put(key("b"), json!({"metadata": {"name": "b"}}));
        s.remove(&key("a"));
        let since = s.events_since(rv_a).unwrap();
        let kinds: Vec<_> = since.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventType::Added, EventType::Deleted]);
        assert!(s.resource_version() > rv_a);
    }

    #[test]
    fn a_version_older_than_the_window_is_gone() {
        let mut s = Store::new(window(2));
        for n in ["a", "b", "c", "d"] {
            s.put(key(n), json!({"metadata": {"name": n}}));
        }
        assert!(s.events_since(1).is_err());
        assert!(s.events_since(s.resource_version()).unwrap().is_empty());
        s.expire();
        assert!(s.events_since(s.resource_version() - 1).is_err());
    }

    #[test]
    fn a_restored_store_continues_its_versions_and_serves_watches_only_from_there() {
        let saved = json!({"metadata": {"name": "a", "resourceVersion": "41"}});
        let mut s = Store::restore(window(10), 42, BTreeMap::from([(key("a"), saved.clone())]));
        assert_eq!(*s.get(&key("a")).unwrap(), saved);
        assert_eq!(s.resource_version(), 42);
        assert!(s.events_since(41).is_err());
        assert!(s.events_since(42).unwrap().is_empty());
        s.put(key("b"), json!({"metadata": {"name": "b"}}));
        assert_eq!(s.resource_version(), 43);
        assert_eq!(s.events_since(42).unwrap().len(), 1);
    }

    #[test]
    fn list_is_scoped_by_resource_and_namespace() {
        let mut s = Store::new(window(10));
        s.put(key("a"), json!({}));
        s.put(
            Key {
                res: 0,
                namespace: "other".into(),
                name: "z".into(),
            },
            json!({}),
        );
        s.put(
            Key {
                res: 1,
                namespace: "ns".into(),
                name: "b".into(),
            },
            json!({}),
        );
        assert_eq!(s.list(0, Some("ns"), None).count(), 1);
        assert_eq!(s.list(0, None, None).count(), 2);
        assert_eq!(s.list(0, None, Some(&key("a"))).count(), 1);
    }
}
