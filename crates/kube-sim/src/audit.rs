//! The audit log of mutating requests, readable through the admin API and optionally
//! appended to a JSON-lines file, so tests can assert who wrote what.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub time: String,
    pub cluster: String,
    /// create, update, patch, apply, delete, deletecollection
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub field_manager: Option<String>,
    pub code: u16,
    /// The client's User-Agent header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Kept in memory up to a bound (oldest dropped), and appended to a file when configured.
pub struct AuditLog {
    entries: Mutex<std::collections::VecDeque<AuditEntry>>,
    file: Option<Mutex<std::fs::File>>,
    limit: usize,
}

impl AuditLog {
    pub fn new(path: Option<&PathBuf>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        Ok(Self {
            entries: Mutex::new(Default::default()),
            file,
            limit: 100_000,
        })
    }

    pub fn record(&self, entry: AuditEntry) {
        if let Some(file) = &self.file {
            if let Ok(line) = serde_json::to_string(&entry) {
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::warn!(error = %e, "cannot append to the audit log file");
                }
            }
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push_back(entry);
        while entries.len() > self.limit {
            entries.pop_front();
        }
    }

    /// Entries, optionally of one cluster.
    pub fn entries(&self, cluster: Option<&str>) -> Vec<AuditEntry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|e| cluster.is_none_or(|c| e.cluster == c))
            .cloned()
            .collect()
    }
}
