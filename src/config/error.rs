//! Config errors and where they point: `ConfigError` (one problem at a line
//! and column, naming the offending key) and `ConfigErrors` (all problems of
//! one file). Also turns byte offsets into line/column and names the key under
//! a serde error.
//! Invariant: line and column are 1-based; line 0 means the error concerns the
//! whole file (it cannot be read, or something required is missing).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Every problem found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

/// One problem: the offending value's position, its key and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based; 0 when the error concerns the whole file.
    pub line: usize,
    /// 1-based, in characters; 0 when `line` is 0.
    pub column: usize,
    /// Dotted key path, entries named by their `name`, e.g.
    /// `backend[users].server[users-1].weight` or `frontend[web].route[2].backend`.
    /// An entry without a usable name is numbered from 0: `backend[#1]`.
    pub field: String,
    /// Lowercase, no trailing period, says what is expected.
    pub message: String,
}

/// One error per line: `file:line:column: field: message`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{file}:")?;
            if e.line > 0 {
                write!(f, "{e}")?;
            } else {
                write!(f, " {e}")?;
            }
        }
        Ok(())
    }
}

/// `line:column: field: message`; a whole-file error is `field: message`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigErrors {
    /// The file could not be read at all.
    pub fn unreadable(file: &Path, err: &std::io::Error) -> ConfigErrors {
        ConfigErrors {
            file: file.to_path_buf(),
            errors: vec![ConfigError {
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read: {err}"),
            }],
        }
    }

    /// The one error serde stopped at (syntax, type or unknown key).
    pub(crate) fn from_toml(source: &str, file: &Path, err: &toml::de::Error) -> ConfigErrors {
        let (line, column, field) = match err.span() {
            Some(span) => {
                let (line, column) = line_column(source, span.start);
                (line, column, field_at(source, span.start))
            }
            None => (0, 0, String::new()),
        };
        let message = err
            .message()
            .trim_end_matches('\n')
            .replace("expected i64", "expected an integer");
        ConfigErrors {
            file: file.to_path_buf(),
            errors: vec![ConfigError {
                line,
                column,
                field,
                message,
            }],
        }
    }
}

/// Collects semantic errors while validation walks the file.
pub(crate) struct Collector<'s> {
    source: &'s str,
    /// The config file's directory: where relative file paths start.
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

impl<'s> Collector<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Collector {
            source,
            base_dir: PathBuf::new(),
            errors: Vec::new(),
        }
    }

    /// Relative file paths in the config start at `dir`.
    pub(crate) fn with_base_dir(mut self, dir: &Path) -> Self {
        self.base_dir = dir.to_path_buf();
        self
    }

    pub(crate) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub(crate) fn source(&self) -> &'s str {
        self.source
    }

    /// Records an error at `span` (a byte range of the file).
    pub(crate) fn at(&mut self, span: Range<usize>, field: String, message: impl Into<String>) {
        let (line, column) = line_column(self.source, span.start);
        self.push(line, column, field, message.into());
    }

    /// Records an error that concerns the whole file.
    pub(crate) fn whole_file(&mut self, field: String, message: impl Into<String>) {
        self.push(0, 0, field, message.into());
    }

    fn push(&mut self, line: usize, column: usize, field: String, message: String) {
        self.errors.push(ConfigError {
            line,
            column,
            field,
            message,
        });
    }

    /// The errors in file order (whole-file errors first), if any.
    pub(crate) fn finish(mut self, file: &Path) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors {
            file: file.to_path_buf(),
            errors: self.errors,
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The dotted key path of the deepest key or value at `offset`, named the same
/// way validation names fields; empty when the file does not parse.
fn field_at(source: &str, offset: usize) -> String {
    match DeTable::parse(source) {
        Ok(root) => find_in_table(root.get_ref(), offset, "").unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn find_in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        if key.span().contains(&offset) {
            return Some(path);
        }
        if let Some(found) = find_in_value(value, offset, &path, key.get_ref()) {
            return Some(found);
        }
    }
    None
}

fn find_in_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    path: &str,
    key: &str,
) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(table) => find_in_table(table, offset, path)
            .or_else(|| value.span().contains(&offset).then(|| path.to_owned())),
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                let label = match item.get_ref() {
                    DeValue::Table(t) => entry_label(path, key, t, i),
                    _ => format!("{path}[{i}]"),
                };
                if let Some(found) = find_in_value(item, offset, &label, key) {
                    return Some(found);
                }
            }
            value.span().contains(&offset).then(|| path.to_owned())
        }
        _ => value.span().contains(&offset).then(|| path.to_owned()),
    }
}

/// `backend[users]` for a named entry, `route[2]` for a route, `backend[#2]`
/// for an entry without a usable name.
fn entry_label(path: &str, key: &str, table: &DeTable<'_>, index: usize) -> String {
    if key == "route" {
        return format!("{path}[{index}]");
    }
    let name = table
        .iter()
        .find(|(k, _)| k.get_ref() == "name")
        .and_then(|(_, v)| v.get_ref().as_str());
    entry(path, name, index)
}

/// Names one entry of an array of tables, by name when it has a valid one.
pub(crate) fn entry(path: &str, name: Option<&str>, index: usize) -> String {
    match name {
        Some(name) if super::values::is_valid_name(name) => format!("{path}[{name}]"),
        _ => format!("{path}[#{index}]"),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}
