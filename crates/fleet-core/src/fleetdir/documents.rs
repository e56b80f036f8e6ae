//! Every document of a loaded fleet by origin, so that findings made after parsing (names,
//! labels, pins, collisions) get the line and column of the field they name.

use std::collections::HashMap;

use crate::model::document::RawDocument;
use crate::model::{Diagnostic, Origin};

/// The documents of a fleet by origin, to give findings made after parsing the position
/// of the field they name.
#[derive(Default)]
pub(super) struct Documents<'a> {
    by_origin: HashMap<Origin, RawDocument<'a>>,
}

impl<'a> Documents<'a> {
    pub(super) fn add(&mut self, documents: Vec<RawDocument<'a>>) {
        self.by_origin
            .extend(documents.into_iter().map(|d| (d.origin.clone(), d)));
    }

    fn locate(&self, origin: &Origin, field: &str) -> Option<(usize, usize)> {
        self.by_origin.get(origin)?.locate(field)
    }

    /// `file:line:column: document N`, naming where another document sets `field`.
    pub(super) fn describe(&self, origin: &Origin, field: &str) -> String {
        match self.locate(origin, field) {
            Some((line, column)) => format!(
                "{}:{line}:{column}: document {}",
                origin.file, origin.document
            ),
            None => origin.to_string(),
        }
    }

    /// Gives a field's finding the field's position, when the parser did not.
    pub(super) fn place(&self, d: &mut Diagnostic) {
        if d.line.is_some() {
            return;
        }
        let (Some(document), Some(field)) = (d.document, d.field.as_deref()) else {
            return;
        };
        let origin = Origin {
            file: d.file.clone(),
            document,
        };
        if let Some((line, column)) = self.locate(&origin, field) {
            d.line = Some(line);
            d.column = Some(column);
        }
    }
}
