//! Errors that point into a file: `path:line:column: message`.
//!
//! Configuration and rule files are validated once at start-up; every error found there names
//! the file, the line and the field, so a user can fix it without guessing.

use std::fmt;
use std::ops::Range;

/// An error located in a text file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    /// 1-based line and column, when the error can be placed.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl FileError {
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        FileError {
            file: file.into(),
            position: None,
            message: message.into(),
        }
    }

    /// An error at byte offset `span.start` of `text`.
    pub fn at(
        file: impl Into<String>,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        FileError {
            file: file.into(),
            position: Some(line_column(text, span.start)),
            message: message.into(),
        }
    }

    /// A TOML syntax or schema error, placed where the parser says.
    pub fn from_toml(file: impl Into<String>, text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim().to_owned();
        match error.span() {
            Some(span) => FileError::at(file, text, span, message),
            None => FileError::whole_file(file, message),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => {
                write!(f, "{}:{}:{}: {}", self.file, line, column, self.message)
            }
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_offsets_on_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 4));
        let error = FileError::at("x.toml", text, 6..8, "bad");
        assert_eq!(error.to_string(), "x.toml:2:1: bad");
    }
}
