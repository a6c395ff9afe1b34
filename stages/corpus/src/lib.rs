//! The corpus file that the `notes` stage writes and later stages (tokenize, instruction
//! generation) read: a Parquet file with the columns `source`, `id`, `category` and `text`, one
//! row per note, in a deterministic order.
//!
//! This crate holds only the file format (schema, a streaming reader and a small writer), so that
//! the stages which read a corpus need neither DuckDB nor each other. The reader also accepts any
//! Parquet file with a `text` column (an institution's own export): the other columns are
//! optional.
//!
//! Errors name the file and the column, never the text of a note.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// The corpus's columns, in file order.
pub const COLUMNS: [&str; 4] = ["source", "id", "category", "text"];

/// The Arrow schema of a corpus written by camel.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, false),
    ]))
}

/// One note of a corpus. Columns that were not read (see [`Columns`]) or are absent are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Note {
    pub source: Option<String>,
    pub id: Option<String>,
    pub category: Option<String>,
    pub text: String,
}

/// Which columns [`CorpusReader`] decodes: only `text` is much cheaper for a large corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    TextOnly,
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("failed to open the corpus {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a readable Parquet file ({message}); a corpus is the corpus.parquet of a notes stage, or any Parquet file with a `text` column", path.display())]
    NotParquet { path: PathBuf, message: String },
    #[error("the corpus {} has no `{column}` column (it has: {found})", path.display())]
    MissingColumn { path: PathBuf, column: String, found: String },
    #[error("column `{column}` of {} has type {found}; expected a string column", path.display())]
    WrongType { path: PathBuf, column: String, found: String },
    #[error("column `{column}` of {} has a null at row {row}; every note needs a text", path.display())]
    NullText { path: PathBuf, column: String, row: u64 },
    #[error("failed to read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("failed to write {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// Streams the notes of a corpus file, one record batch at a time (bounded memory).
pub struct CorpusReader {
    path: PathBuf,
    rows: u64,
    read: u64,
    /// Index of each of source, id, category, text in the projected batches.
    index: [Option<usize>; 4],
    inner: ParquetRecordBatchReader,
}

impl CorpusReader {
    /// Opens `path`, checks that it has a string `text` column (and, with [`Columns::All`],
    /// string `source`/`id`/`category` columns where present).
    pub fn open(path: &Path, columns: Columns) -> Result<Self, CorpusError> {
        Self::open_with_batch_size(path, columns, 1024)
    }

    pub fn open_with_batch_size(
        path: &Path,
        columns: Columns,
        batch_size: usize,
    ) -> Result<Self, CorpusError> {
        let file =
            File::open(path).map_err(|source| CorpusError::Open { path: path.to_path_buf(), source })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(CorpusError::NotParquet {
                path: path.to_path_buf(),
                message: "it is a directory".into(),
            });
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| CorpusError::NotParquet { path: path.to_path_buf(), message: e.to_string() })?;
        let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let arrow = builder.schema().clone();
        let found = || arrow.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let want: &[&str] = match columns {
            Columns::TextOnly => &["text"],
            Columns::All => &COLUMNS,
        };
        // Top-level column indices in file order; the projected batch keeps that order.
        let mut present = Vec::new();
        for name in want {
            match arrow.index_of(name) {
                Ok(i) => {
                    let ty = arrow.field(i).data_type();
                    if !matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                        return Err(CorpusError::WrongType {
                            path: path.to_path_buf(),
                            column: (*name).into(),
                            found: ty.to_string(),
                        });
                    }
                    present.push((i, *name));
                }
                Err(_) if *name == "text" => {
                    return Err(CorpusError::MissingColumn {
                        path: path.to_path_buf(),
                        column: "text".into(),
                        found: found(),
                    });
                }
                Err(_) => {}
            }
        }
        present.sort();
        let mut index = [None; 4];
        for (pos, (_, name)) in present.iter().enumerate() {
            let slot = COLUMNS.iter().position(|c| c == name).expect("a corpus column");
            index[slot] = Some(pos);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), present.iter().map(|(i, _)| *i));
        let inner = builder
            .with_projection(mask)
            .with_batch_size(batch_size.max(1))
            .build()
            .map_err(|e| CorpusError::NotParquet { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(CorpusReader { path: path.to_path_buf(), rows, read: 0, index, inner })
    }

    /// Number of notes in the file (from its footer).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn decode(&self, batch: &RecordBatch) -> Result<Vec<Note>, CorpusError> {
        let col = |slot: usize| self.index[slot].map(|i| batch.column(i).clone());
        let strings = |a: &ArrayRef, i: usize| -> Option<String> {
            if a.is_null(i) {
                return None;
            }
            Some(match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().value(i).to_owned(),
                DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_owned(),
                _ => a.as_string_view().value(i).to_owned(),
            })
        };
        let (source, id, category) = (col(0), col(1), col(2));
        let text = col(3).expect("the text column is always read");
        (0..batch.num_rows())
            .map(|i| {
                Ok(Note {
                    source: source.as_ref().and_then(|a| strings(a, i)),
                    id: id.as_ref().and_then(|a| strings(a, i)),
                    category: category.as_ref().and_then(|a| strings(a, i)),
                    text: strings(&text, i).ok_or_else(|| CorpusError::NullText {
                        path: self.path.clone(),
                        column: "text".into(),
                        row: self.read + i as u64,
                    })?,
                })
            })
            .collect()
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Vec<Note>, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.inner.next()? {
            Ok(b) => b,
            Err(e) => {
                return Some(Err(CorpusError::Read { path: self.path.clone(), message: e.to_string() }));
            }
        };
        let notes = self.decode(&batch);
        self.read += batch.num_rows() as u64;
        Some(notes)
    }
}

/// Reads every note of a (small) corpus into memory.
pub fn read_all(path: &Path, columns: Columns) -> Result<Vec<Note>, CorpusError> {
    let mut out = Vec::new();
    for batch in CorpusReader::open(path, columns)? {
        out.extend(batch?);
    }
    Ok(out)
}

/// Writes `notes` as a corpus file with [`schema`] (for tests and small tools; the notes stage
/// has its own streaming writer). Missing `source` is written as an empty string.
pub fn write(path: &Path, notes: &[Note]) -> Result<(), CorpusError> {
    let fail = |message: String| CorpusError::Write { path: path.to_path_buf(), message };
    let opt =
        |f: fn(&Note) -> Option<&str>| -> ArrayRef { Arc::new(notes.iter().map(f).collect::<StringArray>()) };
    let source: ArrayRef =
        Arc::new(notes.iter().map(|n| Some(n.source.as_deref().unwrap_or(""))).collect::<StringArray>());
    let text: ArrayRef = Arc::new(notes.iter().map(|n| Some(n.text.as_str())).collect::<StringArray>());
    let batch = RecordBatch::try_new(
        schema(),
        vec![source, opt(|n| n.id.as_deref()), opt(|n| n.category.as_deref()), text],
    )
    .map_err(|e| fail(e.to_string()))?;
    let file = File::create(path).map_err(|e| fail(e.to_string()))?;
    let mut w = ArrowWriter::try_new(file, schema(), None).map_err(|e| fail(e.to_string()))?;
    w.write(&batch).map_err(|e| fail(e.to_string()))?;
    w.close().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: usize) -> Note {
        Note {
            source: Some("mimic3".into()),
            id: (!i.is_multiple_of(3)).then(|| i.to_string()),
            category: Some(format!("cat{}", i % 2)),
            text: format!("note {i}\n\"quoted\", ünïcode"),
        }
    }

    #[test]
    fn write_then_read_round_trips_in_order_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.parquet");
        let notes: Vec<Note> = (0..2500).map(note).collect();
        write(&path, &notes).unwrap();
        let reader = CorpusReader::open_with_batch_size(&path, Columns::All, 1000).unwrap();
        assert_eq!(reader.rows(), 2500);
        let back: Vec<Note> = reader.flat_map(Result::unwrap).collect();
        assert_eq!(back, notes);
        let texts = read_all(&path, Columns::TextOnly).unwrap();
        assert!(texts.iter().zip(&notes).all(|(a, b)| a.text == b.text && a.id.is_none()));
    }

    #[test]
    fn a_table_with_only_a_text_column_is_a_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("note_text", DataType::Utf8, false),
            Field::new("text", DataType::LargeUtf8, true),
        ]));
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        let b: ArrayRef = Arc::new(arrow_array::LargeStringArray::from(vec![Some("one"), None]));
        let batch = RecordBatch::try_new(schema.clone(), vec![a, b]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let mut r = CorpusReader::open(&path, Columns::All).unwrap();
        let err = r.next().unwrap().unwrap_err();
        assert!(matches!(err, CorpusError::NullText { row: 1, .. }), "{err}");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.parquet");
        let e = CorpusReader::open(&missing, Columns::All).err().unwrap();
        assert!(e.to_string().contains("nope.parquet"), "{e}");

        let csv = dir.path().join("notes.csv");
        std::fs::write(&csv, "text\nhello\n").unwrap();
        let e = CorpusReader::open(&csv, Columns::All).err().unwrap();
        assert!(matches!(e, CorpusError::NotParquet { .. }) && e.to_string().contains("notes.csv"), "{e}");

        let e = CorpusReader::open(dir.path(), Columns::All).err().unwrap();
        assert!(matches!(e, CorpusError::NotParquet { .. } | CorpusError::Open { .. }), "{e}");

        let no_text = dir.path().join("no_text.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, false)]));
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let mut w = ArrowWriter::try_new(File::create(&no_text).unwrap(), schema.clone(), None).unwrap();
        w.write(&RecordBatch::try_new(schema, vec![a]).unwrap()).unwrap();
        w.close().unwrap();
        let e = CorpusReader::open(&no_text, Columns::TextOnly).err().unwrap();
        assert!(e.to_string().contains("no `text` column") && e.to_string().contains("body"), "{e}");
    }
}
