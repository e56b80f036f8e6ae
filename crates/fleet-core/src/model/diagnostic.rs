//! A problem found in the fleet directory, located as precisely as the input allows.

use std::fmt;

use serde::Serialize;

/// Where a document came from: the file (relative to the fleet directory) and the
/// 1-based index of the document in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub file: String,
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding. Rendered as `file[:line:column]: [document N: ][field: ]message`, the
/// form editors and CI annotations understand.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    /// An error about a whole file.
    pub fn file(file: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            document: None,
            field: None,
            message: message.to_string(),
            severity: Severity::Error,
        }
    }

    /// An error about one field of one document.
    pub fn field(
        origin: &Origin,
        field: impl Into<String>,
        message: impl std::fmt::Display,
    ) -> Self {
        Self {
            document: Some(origin.document),
            field: Some(field.into()),
            ..Self::file(origin.file.clone(), message)
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(document) = self.document {
            write!(f, ": document {document}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        if self.severity == Severity::Warning {
            f.write_str(": warning")?;
        }
        write!(f, ": {}", self.message)
    }
}
