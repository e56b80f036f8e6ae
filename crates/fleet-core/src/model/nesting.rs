//! The nesting guard: how deeply a file's collections nest, measured by one linear scan
//! before any parser sees the text.
//!
//! libyaml's scanner costs time quadratic in the nesting depth of flow collections (a
//! 200 KB file of brackets took 46 s), long before serde_yaml's recursion limit (128) is
//! reached, so the depth has to be known without parsing. The scan counts block
//! collections (indentation levels and `- ` entries) and flow collections (`[` and `{`)
//! together, as the parser will nest them. It never counts more than the parser will see
//! (a quoted scalar, a comment, a block scalar's text and the middle of a plain scalar do
//! not count), so no valid fleet file is refused; where it counts fewer (a sequence written
//! at its parent key's indentation), serde_yaml's own limit remains behind it, and
//! undercounting by that much keeps the parser's cost bounded.

/// Deepest nesting accepted, equal to serde_yaml's recursion limit so that what passes the
/// scan is never refused later for its depth.
pub const MAX_NESTING_DEPTH: usize = 128;

/// The line and column (1-based) of the first collection that opens deeper than
/// [`MAX_NESTING_DEPTH`], if any.
pub fn too_deep(text: &str) -> Option<(usize, usize)> {
    Scan::default().run(text)
}

#[derive(Default)]
struct Scan {
    /// Columns of the open block collections, innermost last.
    indents: Vec<usize>,
    flow: usize,
    single: bool,
    double: bool,
    escaped: bool,
    /// The indentation a block scalar's text must exceed, while inside one.
    block_scalar: Option<usize>,
}

impl Scan {
    fn run(&mut self, text: &str) -> Option<(usize, usize)> {
        for (index, line) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            let indent = line.len() - line.trim_start_matches(' ').len();
            let blank = line[indent..].is_empty() || line[indent..].starts_with('#');
            if let Some(parent) = self.block_scalar {
                if blank || indent > parent {
                    continue;
                }
                self.block_scalar = None;
            }
            let mut start = 0;
            if !self.in_quotes() && self.flow == 0 {
                if line.starts_with("---") || line.starts_with("...") || line.starts_with('%') {
                    // A new document (or a directive before one): nothing is open.
                    self.indents.clear();
                    if !line.starts_with("---") {
                        continue;
                    }
                    start = 3;
                } else if blank {
                    continue;
                } else {
                    start = indent;
                    // Entries of compact sequences (`- - x`) each open what follows them; a
                    // mapping key opens a mapping; a scalar or a flow collection opens no
                    // block (its brackets count below).
                    let bytes = line.as_bytes();
                    loop {
                        let rest = &line[start..];
                        let entry = rest.starts_with('-')
                            && bytes.get(start + 1).is_none_or(|b| *b == b' ');
                        if !entry && !is_mapping_key(rest) {
                            self.close_blocks(start);
                            break;
                        }
                        if let Some(at) = self.open_block(start, line_no) {
                            return Some(at);
                        }
                        if !entry {
                            break;
                        }
                        let after = &line[start + 1..];
                        start = start + 1 + after.len() - after.trim_start_matches(' ').len();
                        if start >= line.len() || line[start..].starts_with('#') {
                            break;
                        }
                    }
                }
            }
            if let Some(at) = self.scan_tokens(line, start, line_no) {
                return Some(at);
            }
            if !self.in_quotes() && self.flow == 0 && opens_block_scalar(line) {
                self.block_scalar = Some(indent);
            }
        }
        None
    }

    fn in_quotes(&self) -> bool {
        self.single || self.double
    }

    /// A block node starting at `column`: closes the deeper ones, opens it if new.
    fn open_block(&mut self, column: usize, line_no: usize) -> Option<(usize, usize)> {
        self.close_blocks(column);
        if self.indents.last() != Some(&column) {
            self.indents.push(column);
            if self.depth() > MAX_NESTING_DEPTH {
                return Some((line_no, column + 1));
            }
        }
        None
    }

    /// A node at `column` ends every block collection indented deeper.
    fn close_blocks(&mut self, column: usize) {
        while self.indents.last().is_some_and(|top| *top > column) {
            self.indents.pop();
        }
    }

    fn depth(&self) -> usize {
        self.indents.len() + self.flow
    }

    /// Flow brackets from `start` to the end of the line, outside quotes and comments.
    fn scan_tokens(&mut self, line: &str, start: usize, line_no: usize) -> Option<(usize, usize)> {
        // Whether the next character starts a token (after whitespace or an indicator),
        // and whether it follows whitespace (which a comment needs).
        let (mut token_start, mut after_space) = (true, true);
        let mut column = line[..start].chars().count();
        for c in line[start..].chars() {
            column += 1;
            let (at_start, spaced) = (token_start, after_space);
            token_start = c == ' ' || c == '\t';
            after_space = token_start;
            if self.double {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.double = false;
                }
                continue;
            }
            if self.single {
                self.single = c != '\'';
                continue;
            }
            // In a flow collection every bracket is structure: flow indicators end plain
            // scalars there, so `{"x":[[` nests however tightly it is written.
            let in_flow = self.flow > 0;
            match c {
                '#' if spaced => break,
                '"' if at_start || in_flow => self.double = true,
                '\'' if at_start => self.single = true,
                '[' | '{' if at_start || in_flow => {
                    self.flow += 1;
                    token_start = true;
                    if self.depth() > MAX_NESTING_DEPTH {
                        return Some((line_no, column));
                    }
                }
                ']' | '}' if in_flow => {
                    self.flow -= 1;
                    token_start = true;
                }
                ',' | ':' if in_flow => token_start = true,
                '-' | '?' | ':' if at_start => token_start = true,
                _ => {}
            }
        }
        None
    }
}

/// Whether a line's content (from its first token) is a block mapping's key: a `key: `
/// or a `key:` ending the line, not a flow collection.
fn is_mapping_key(content: &str) -> bool {
    if content.starts_with(['[', '{']) {
        return false;
    }
    let content = match content.find(" #") {
        Some(at) => &content[..at],
        None => content,
    };
    content.contains(": ") || content.trim_end().ends_with(':')
}

/// Whether a line ends with a block scalar header (`|`, `>-`, `|2+` ...), outside any
/// comment; the lines indented under it are text, not structure.
fn opens_block_scalar(line: &str) -> bool {
    let content = match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    };
    let last = content.split_whitespace().next_back().unwrap_or("");
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| c == '-' || c == '+' || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_blocks(levels: usize) -> String {
        (0..levels)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect::<String>()
            + &"  ".repeat(levels)
            + "leaf: 1\n"
    }

    #[test]
    fn brackets_written_tightly_count_and_cost_linear_time() {
        let text = format!("{{\"x\":{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
        let started = std::time::Instant::now();
        // The top-level `{` is level 1; `[` number n, at column 5 + n, is level n + 1.
        assert_eq!(too_deep(&text), Some((1, 5 + 128)));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn indentation_and_brackets_count_together() {
        // Three block levels (spec, stackgresOperator, values), then the flow ones.
        let head = "spec:\n  stackgresOperator:\n    values: {x: ";
        let ok = format!("{head}{}{}}}\n", "[".repeat(124), "]".repeat(124));
        assert_eq!(too_deep(&ok), None);
        let deep = format!("{head}{}{}}}\n", "[".repeat(125), "]".repeat(125));
        assert_eq!(too_deep(&deep), Some((3, 17 + 124)));
    }

    #[test]
    fn block_nesting_alone_counts() {
        assert_eq!(too_deep(&nested_blocks(127)), None);
        assert_eq!(too_deep(&nested_blocks(128)), Some((129, 257)));
        let dashes = format!("{}x\n", "- ".repeat(200));
        assert_eq!(too_deep(&dashes), Some((1, 2 * 128 + 1)));
    }

    #[test]
    fn text_that_only_looks_nested_does_not_count() {
        let deep = "[".repeat(300);
        let text = format!(
            "a: \"{deep}\"\nb: '{deep}'\nc: x{deep}\n# {deep}\nd: |\n  {deep}\n   {deep}\ne: >-\n\n    {deep}\nf: \"multi\n  line {deep}\"\ng: [[[1]]]\n"
        );
        assert_eq!(too_deep(&text), None);
        let staircase: String = (0..300)
            .map(|i| format!("{}line\n", " ".repeat(i + 2)))
            .collect();
        assert_eq!(too_deep(&format!("text: |\n{staircase}")), None);
    }

    #[test]
    fn documents_start_from_nothing() {
        let doc = nested_blocks(100);
        assert_eq!(too_deep(&format!("{doc}---\n{doc}---\n{doc}")), None);
    }
}
