//! Splitting a YAML file into documents and deserializing each one strictly, turning
//! serde_yaml's errors into diagnostics that name the document, the field and the position.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::diagnostic::{Diagnostic, Origin};

/// Files larger than this are refused before parsing: a fleet file is a few kilobytes, and
/// a huge one is a mistake or an attack.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The identifying head of a document, read before its kind-specific parse.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Head {
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// A non-empty document of a file, identified but not yet parsed by kind.
#[derive(Debug, Clone)]
pub struct RawDocument<'a> {
    pub origin: Origin,
    pub head: Head,
    text: &'a str,
    index: usize,
}

impl RawDocument<'_> {
    /// Deserializes the document as `T`, failing with the position and field path of the
    /// first problem the parser meets.
    #[allow(
        clippy::result_large_err,
        reason = "a Diagnostic per document is cold-path and kept unboxed for simple matching"
    )]
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        // serde_yaml's documents are one-shot; a second pass over the stream is cheap for
        // files capped at MAX_FILE_BYTES and keeps positions exact.
        let doc = serde_yaml::Deserializer::from_str(self.text)
            .nth(self.index)
            .ok_or_else(|| Diagnostic::file(&self.origin.file, "document vanished on reparse"))?;
        T::deserialize(doc)
            .map_err(|e| yaml_diagnostic(&self.origin.file, Some(self.index + 1), &e))
    }
}

/// Decodes a file and splits it into its non-empty documents. A file that is not UTF-8,
/// too large, or not YAML gives one diagnostic and no documents.
#[allow(
    clippy::result_large_err,
    reason = "a Diagnostic per file is cold-path and kept unboxed for simple matching"
)]
pub fn split<'a>(file: &str, bytes: &'a [u8]) -> Result<Vec<RawDocument<'a>>, Diagnostic> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::file(
            file,
            format!(
                "file is {} bytes, larger than the limit of {MAX_FILE_BYTES} bytes",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Diagnostic::file(
            file,
            format!(
                "not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let mut documents = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let head = Option::<Head>::deserialize(doc)
            .map_err(|e| yaml_diagnostic(file, Some(index + 1), &e))?;
        if let Some(head) = head {
            documents.push(RawDocument {
                origin: Origin {
                    file: file.to_string(),
                    document: index + 1,
                },
                head,
                text,
                index,
            });
        }
    }
    Ok(documents)
}

/// Turns a serde_yaml error into a diagnostic, moving the field path that serde_yaml puts
/// at the front of its message into the diagnostic's field.
pub fn yaml_diagnostic(file: &str, document: Option<usize>, err: &serde_yaml::Error) -> Diagnostic {
    let mut message = err.to_string();
    let mut diagnostic = Diagnostic::file(file, String::new());
    diagnostic.document = document;
    if let Some(location) = err.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        diagnostic = diagnostic.at(location.line(), location.column());
    }
    let (path, rest) = split_path(&message);
    let (field, message) = relocate_field_errors(path, rest);
    diagnostic.field = field;
    diagnostic.message = message;
    diagnostic
}

/// serde_yaml writes `path: message`; a path has no spaces, which tells it from messages
/// such as `invalid type: ...`.
fn split_path(message: &str) -> (Option<&str>, &str) {
    match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(char::is_whitespace) => {
            (Some(path), rest)
        }
        _ => (None, message),
    }
}

/// Unknown and missing fields are reported by serde at their parent; point at the field.
fn relocate_field_errors(path: Option<&str>, message: &str) -> (Option<String>, String) {
    let join = |name: &str| match path {
        Some(parent) => format!("{parent}.{name}"),
        None => name.to_string(),
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            let allowed = tail.trim_start_matches(", ");
            return (Some(join(name)), format!("unknown field ({allowed})"));
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return (Some(join(name)), "required field is missing".to_string());
        }
    }
    (path.map(str::to_string), message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields exist to be deserialized")]
    struct Doc {
        kind: String,
        spec: Spec,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code, reason = "fields exist to be deserialized")]
    struct Spec {
        cluster_name: String,
        replicas: Option<u32>,
    }

    fn first_error(text: &str) -> Diagnostic {
        let docs = split("f.yaml", text.as_bytes()).expect("splits");
        docs.iter()
            .find_map(|d| d.parse::<Doc>().err())
            .expect("an error")
    }

    #[test]
    fn empty_documents_are_skipped_and_indices_stay_true() {
        let docs = split("f.yaml", b"---\n---\nkind: A\n---\n\n---\nkind: B\n").unwrap();
        let found: Vec<_> = docs
            .iter()
            .map(|d| (d.origin.document, d.head.kind.clone().unwrap()))
            .collect();
        assert_eq!(found, vec![(3, "A".to_string()), (5, "B".to_string())]);
    }

    #[test]
    fn unknown_field_names_its_full_path_and_position() {
        let d = first_error("kind: A\nspec:\n  clusterName: x\n  replicaz: 3\n");
        assert_eq!(d.field.as_deref(), Some("spec.replicaz"));
        assert!(d.message.starts_with("unknown field"), "{}", d.message);
        assert_eq!((d.line, d.column), (Some(4), Some(3)));
        assert_eq!(d.document, Some(1));
    }

    #[test]
    fn missing_field_names_the_field() {
        let d = first_error("kind: A\nspec:\n  replicas: 3\n");
        assert_eq!(d.field.as_deref(), Some("spec.clusterName"));
        assert_eq!(d.message, "required field is missing");
    }

    #[test]
    fn wrong_type_keeps_serde_message_and_path() {
        let d = first_error("kind: A\nspec:\n  clusterName: x\n  replicas: many\n");
        assert_eq!(d.field.as_deref(), Some("spec.replicas"));
        assert!(
            d.message.starts_with("invalid type: string"),
            "{}",
            d.message
        );
    }

    #[test]
    fn syntax_error_gives_position_without_documents() {
        let err = split("f.yaml", b"kind: A\nspec: [unclosed\n").unwrap_err();
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn non_utf8_and_oversized_files_are_refused() {
        assert!(split("f.yaml", &[0x6b, 0xff, 0xfe])
            .unwrap_err()
            .message
            .contains("UTF-8"));
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        assert!(split("f.yaml", &big)
            .unwrap_err()
            .message
            .contains("larger"));
    }

    #[test]
    fn alias_bombs_are_refused_not_expanded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
        }
        let docs = split("bomb.yaml", text.as_bytes()).unwrap();
        let err = docs[0].parse::<serde_json::Value>().unwrap_err();
        assert!(err.message.contains("repetition limit"), "{err}");
    }
}
