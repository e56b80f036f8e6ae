//! Splitting a YAML file into documents and deserializing each one strictly, turning
//! serde_yaml's errors into diagnostics that name the document, the field and the position.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::diagnostic::{Diagnostic, Origin};
use super::nesting::{self, MAX_NESTING_DEPTH};

/// Files larger than this are refused before parsing: a fleet file is a few kilobytes, and
/// a huge one is a mistake or an attack.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

pub use super::head::Head;

/// A non-empty document of a file, identified but not yet parsed by kind.
#[derive(Debug, Clone)]
pub struct RawDocument<'a> {
    pub origin: Origin,
    pub head: Head,
    /// The slice of the file this document lives in, and its index within that slice.
    text: &'a str,
    index: usize,
    /// Lines of the file before `text`, so positions name lines of the whole file.
    line_offset: usize,
    /// Whether a mapping of the document has a merge key (`<<`).
    merges: bool,
}

impl RawDocument<'_> {
    /// Deserializes the document as `T`, failing with the position and field path of the
    /// first problem the parser meets.
    #[allow(
        clippy::result_large_err,
        reason = "a diagnostic is the cold path of a one-shot parse"
    )]
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        // serde_yaml's documents are one-shot, so the slice is parsed again; slices hold
        // one document each but for rare `...`-terminated streams.
        let doc = serde_yaml::Deserializer::from_str(self.text)
            .nth(self.index)
            .ok_or_else(|| Diagnostic::file(&self.origin.file, "document vanished on reparse"))?;
        let diagnostic = |e: &serde_yaml::Error| {
            yaml_diagnostic(
                &self.origin.file,
                Some(self.origin.document),
                self.line_offset,
                e,
            )
        };
        if !self.merges {
            return T::deserialize(doc).map_err(|e| diagnostic(&e));
        }
        // Merge keys are applied as go-yaml applies them under kubectl (see `keys`): on
        // the document's value, which has no positions, so the typed parse's errors are
        // placed by their field path instead.
        let mut value = serde_yaml::Value::deserialize(doc).map_err(|e| diagnostic(&e))?;
        value.apply_merge().map_err(|e| {
            let d = diagnostic(&e);
            match first_merge_key(self.text, self.line_offset) {
                Some((line, column)) => d.at(line, column),
                None => d,
            }
        })?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = match path.as_str() {
                "." => e.inner().to_string(),
                _ => format!("{path}: {}", e.inner()),
            };
            let mut d = message_diagnostic(&self.origin.file, Some(self.origin.document), message);
            if let Some((line, column)) = d.field.as_deref().and_then(|f| self.locate(f)) {
                d = d.at(line, column);
            }
            d
        })
    }

    /// The line and column of `field` (a path such as `spec.labels.env`) in the file, or
    /// of the nearest enclosing field the document writes (a defaulted field, or one only
    /// a merged mapping holds, points at its parent, a missing top-level field at the
    /// document).
    pub fn locate(&self, field: &str) -> Option<(usize, usize)> {
        super::locate::locate(self.text, self.index, field)
            .map(|(line, column)| (line + self.line_offset, column))
    }
}

/// A run of lines from one `---` marker to the next. A marker at column 0 always starts a
/// document in YAML (it may not appear inside any scalar), so splitting there is exact and
/// spares re-parsing a whole multi-document file for each of its documents. Directives
/// (`%YAML 1.2`, `%TAG ...`) belong to the document after them, so the lines from the
/// first directive before a marker travel with the marker.
struct Slice<'a> {
    text: &'a str,
    line_offset: usize,
}

fn slices(text: &str) -> Vec<Slice<'_>> {
    let mut out = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0, 0);
    // Where the directives waiting for the next marker begin: (byte offset, line index).
    let mut directives: Option<(usize, usize)> = None;
    // Whether the slice so far holds more than comments and directives; one that does not
    // is the preamble of the document after it, not a document of its own.
    let mut has_content = false;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if is_marker {
            let (cut, cut_line) = directives.take().unwrap_or((offset, line_no));
            if has_content && cut > start {
                out.push(Slice {
                    text: &text[start..cut],
                    line_offset: start_line,
                });
                start = cut;
                start_line = cut_line;
            }
            has_content = true;
        } else if line.starts_with('%') {
            directives.get_or_insert((offset, line_no));
        } else if !(line.trim().is_empty() || line.trim_start().starts_with('#')) {
            directives = None;
            has_content = true;
        }
        offset += line.len();
    }
    out.push(Slice {
        text: &text[start..],
        line_offset: start_line,
    });
    out
}

/// Where the first merge key of `text` is written, found lexically: serde_yaml's merge
/// errors do not say which merge failed, and the first is the likeliest culprit.
fn first_merge_key(text: &str, line_offset: usize) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let column = line.find("<<")?;
        line[column + 2..]
            .trim_start()
            .starts_with(':')
            .then_some((i + 1 + line_offset, column + 1))
    })
}

/// Decodes a file and splits it into its non-empty documents. A file that is not UTF-8,
/// too large, too deeply nested, not YAML, or with a key given twice gives one diagnostic
/// and no documents.
#[allow(
    clippy::result_large_err,
    reason = "a diagnostic is the cold path of a one-shot parse"
)]
pub fn split<'a>(file: &str, bytes: &'a [u8]) -> Result<Vec<RawDocument<'a>>, Diagnostic> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::file(file, too_large(bytes.len() as u64)));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        Diagnostic::file(file, "not valid UTF-8; fleet files must be UTF-8 encoded")
            .at(line, column)
    })?;
    // A byte order mark may open a YAML stream (editors on Windows write one); it is not
    // text, and columns are counted without it, as editors show them.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((line, column)) = nesting::too_deep(text) {
        return Err(Diagnostic::file(
            file,
            format!("collections nest deeper than {MAX_NESTING_DEPTH} levels (indentation and brackets counted together); refusing to parse (the document nests too deeply)"),
        )
        .at(line, column));
    }
    let mut documents = Vec::new();
    let mut number = 0;
    for slice in slices(text) {
        let keys = serde_yaml::Deserializer::from_str(slice.text).map(super::keys::check);
        for (index, keys) in keys.enumerate() {
            number += 1;
            let located = |e: serde_yaml::Error| {
                at_reader_position(
                    yaml_diagnostic(file, Some(number), slice.line_offset, &e),
                    slice.text,
                    slice.line_offset,
                )
            };
            let keys = keys.map_err(located)?;
            let head = match keys.head {
                Some(head) => Ok(Some(head)),
                // Not a plain mapping (empty, a tag, numbers): the head's own parse says
                // what it is, and words what is wrong with it.
                None => serde_yaml::Deserializer::from_str(slice.text)
                    .nth(index)
                    .map_or(Ok(None), Option::<Head>::deserialize),
            };
            if let Some(head) = head.map_err(located)? {
                documents.push(RawDocument {
                    origin: Origin {
                        file: file.to_string(),
                        document: number,
                    },
                    head,
                    text: slice.text,
                    index,
                    line_offset: slice.line_offset,
                    merges: keys.merges,
                });
            }
        }
    }
    Ok(documents)
}

/// What the size limit says of a file of `size` bytes.
pub fn too_large(size: u64) -> String {
    format!("file is {size} bytes, larger than the limit of {MAX_FILE_BYTES} bytes")
}

/// libyaml's reader errors (control characters, for one) carry a character offset into
/// the text instead of a line and column; turn it into the position a reader can find.
fn at_reader_position(mut diagnostic: Diagnostic, text: &str, line_offset: usize) -> Diagnostic {
    let Some((message, offset)) = diagnostic.message.rsplit_once(" at position ") else {
        return diagnostic;
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return diagnostic;
    };
    let before: String = text.chars().take(offset).collect();
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    diagnostic.message = message.to_string();
    diagnostic.at(line + line_offset, column)
}

/// Turns a serde_yaml error into a diagnostic, moving the field path that serde_yaml puts
/// at the front of its message into the diagnostic's field.
pub fn yaml_diagnostic(
    file: &str,
    document: Option<usize>,
    line_offset: usize,
    err: &serde_yaml::Error,
) -> Diagnostic {
    let mut message = err.to_string();
    match err.location() {
        Some(location) => {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            // libyaml's own messages carry the position mid-sentence; say it once, up front.
            message = message.replacen(&suffix, "", 1);
            message_diagnostic(file, document, message)
                .at(location.line() + line_offset, location.column())
        }
        None => message_diagnostic(file, document, message),
    }
}

/// A diagnostic from a deserializer's `path: message`, in the reader's words.
fn message_diagnostic(file: &str, document: Option<usize>, mut message: String) -> Diagnostic {
    let mut diagnostic = Diagnostic::file(file, String::new());
    diagnostic.document = document;
    // `Head` is this module's name for a document's apiVersion and kind; say what the
    // reader wrote instead.
    if let Some(got) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.strip_suffix(", expected struct Head"))
    {
        message = format!("expected a mapping with apiVersion and kind, got {got}");
    }
    // serde names Rust types; the reader wrote YAML.
    for (rust, yaml) in [
        ("expected f64", "expected a number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected a whole number"),
    ] {
        if let Some(stem) = message.strip_suffix(rust) {
            message = format!("{stem}{yaml}");
        }
    }
    if message == "repetition limit exceeded" {
        message
            .push_str(" (too many YAML alias expansions; refusing what looks like an alias bomb)");
    } else if message == "recursion limit exceeded" {
        message.push_str(" (the document nests too deeply)");
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
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return (Some(join(name)), "field appears more than once".to_string());
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
    fn deep_flow_nesting_is_refused_before_parsing_and_brackets_in_text_do_not_count() {
        let deep = format!(
            "kind: A\nspec: {{x: {}{}}}\n",
            "[".repeat(500_000),
            "]".repeat(500_000)
        );
        let started = std::time::Instant::now();
        let err = split("f.yaml", deep.as_bytes()).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.message.contains("nest deeper than 128"), "{err}");
        // The 129th level: `spec:` opens the first, its `{` the second, and "spec: {x: "
        // is 10 characters, so the 127th `[` is at column 10 + 127.
        assert_eq!((err.line, err.column), (Some(2), Some(10 + 127)));
        let text =
            "kind: A\nspec:\n  a: \"[[[[\"\n  b: '{{{{'\n  c: x[[[[\n  # [[[[\n  d: [[[1]]]\n";
        let brackets = text
            .replace("[[[[", &"[".repeat(200))
            .replace("{{{{", &"{".repeat(200));
        assert!(split("f.yaml", brackets.as_bytes()).is_ok());
    }

    /// The head is read during the key check rather than by a parse of its own; what it
    /// reads must be what that parse reads, or the check must leave it to the parse.
    #[test]
    fn the_head_read_with_the_keys_is_the_heads_own_parse() {
        let documents = [
            "apiVersion: v1\nkind: Psql\n",
            "kind: Psql\n",
            "apiVersion: \"v1\"\nkind: 'Psql'\nmetadata: {name: a, labels: {kind: x}}\n",
            "apiVersion:\nkind: ~\n",
            "apiVersion: null\nkind: \"\"\n",
            "apiVersion: 1\nkind: Psql\n",
            "apiVersion: v1\nkind: true\n",
            "apiVersion: [v1]\nkind: Psql\n",
            "apiVersion: {a: b}\nkind: Psql\n",
            "apiVersion: !custom v1\nkind: Psql\n",
            "!tagged\napiVersion: v1\nkind: Psql\n",
            "0: x\nkind: Psql\n",
            "base: &b v1\napiVersion: *b\nkind: Psql\n",
            "<<: {apiVersion: v1}\nkind: Psql\n",
            "- apiVersion: v1\n",
            "just text\n",
            "42\n",
            "~\n",
        ];
        let mut read = 0;
        for text in documents {
            let own = serde_yaml::Deserializer::from_str(text)
                .map(Option::<Head>::deserialize)
                .next()
                .unwrap()
                .map_err(|e| e.location().map(|l| l.line()));
            let keys = serde_yaml::Deserializer::from_str(text)
                .map(super::super::keys::check)
                .next()
                .unwrap()
                .unwrap();
            if let Some(head) = keys.head {
                read += 1;
                assert_eq!(Ok(Some(head)), own, "{text}");
            }
            // Through split, the head (or the error) is the same whichever read it.
            let split = split("f.yaml", text.as_bytes()).map(|d| d.first().map(|d| d.head.clone()));
            match own {
                Ok(head) => assert_eq!(split.unwrap(), head, "{text}"),
                Err(line) => assert_eq!(split.unwrap_err().line, line, "{text}"),
            }
        }
        // Plain mappings are read on the way; the rest are left to the head's parse.
        assert_eq!(read, 7);
    }

    #[test]
    fn empty_documents_are_skipped_and_indices_stay_true() {
        let docs = split("f.yaml", b"---\n---\nkind: A\n---\n\n---\nkind: B\n").unwrap();
        let found: Vec<_> = docs
            .iter()
            .map(|d| (d.origin.document, d.head.kind.clone().unwrap()))
            .collect();
        // A leading `---` opens the first document rather than closing an empty one.
        assert_eq!(found, vec![(2, "A".to_string()), (4, "B".to_string())]);
    }

    #[test]
    fn positions_in_later_documents_count_lines_of_the_whole_file() {
        let text = "# header\nkind: A\nspec: {clusterName: x}\n---\nkind: A\nspec:\n  clusterName: x\n  bad: 1\n";
        let d = first_error(text);
        assert_eq!((d.document, d.line, d.column), (Some(2), Some(8), Some(3)));
    }

    #[test]
    fn markers_only_split_at_column_zero() {
        let text = "kind: A\ndata: |\n  ---\n  not a marker\n---\nkind: B\n";
        let docs = split("f.yaml", text.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].origin.document, 2);
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
        // The key check walks every node, so the bomb is refused before any typed parse.
        let err = split("bomb.yaml", text.as_bytes()).unwrap_err();
        assert!(err.message.contains("repetition limit"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_and_directives_are_accepted_and_lines_stay_true() {
        let text = "\u{feff}%YAML 1.2\n%TAG !e! tag:example.com,2000:\n---\nkind: A\nspec: {clusterName: x}\n...\n%YAML 1.2\n---\nkind: A\nspec: {clusterName: x, bad: 1}\n";
        let docs = split("f.yaml", text.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        let d = first_error(text);
        assert_eq!(
            (d.document, d.line, d.column),
            (Some(2), Some(10), Some(24))
        );
        // Comments before the first marker are its preamble, not a document of their own.
        let docs = split("f.yaml", "\u{feff}# c\n---\nkind: A\n".as_bytes()).unwrap();
        assert_eq!(docs[0].origin.document, 1);
    }

    #[test]
    fn a_key_given_twice_is_an_error_at_the_second_with_its_field_path() {
        let err = split(
            "f.yaml",
            b"kind: A\nspec:\n  labels:\n    env: dev\n    env: prod\n",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.labels.env"));
        assert_eq!(err.message, "field appears more than once");
        assert_eq!((err.line, err.column), (Some(5), Some(5)));
        let err = split("f.yaml", b"kind: A\nvalues: {1: a, \"1\": b}\n").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("values.1"));
    }

    #[test]
    fn merge_keys_are_applied_and_explicit_keys_win() {
        let text =
            "kind: A\nbase: &b {clusterName: x, replicas: 1}\nspec:\n  <<: *b\n  replicas: 2\n";
        let docs = split("f.yaml", text.as_bytes()).unwrap();
        let value: serde_json::Value = docs[0].parse().unwrap();
        assert_eq!(
            value["spec"],
            serde_json::json!({"clusterName": "x", "replicas": 2})
        );
        // A typed error in a merged document still names its field and position.
        let bad = "kind: A\nspec:\n  <<: {clusterName: x}\n  replicas: many\n";
        let d = first_error(bad);
        assert_eq!(d.field.as_deref(), Some("spec.replicas"));
        assert_eq!((d.line, d.column), (Some(4), Some(3)));
    }
}
