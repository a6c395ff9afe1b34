//! corpus.parquet: written on its own thread while the next batches are read, one row group at
//! a time so that memory stays bounded (a row group closes at `row_group_rows` rows or
//! `row_group_mb` MB of encoded data, whichever comes first).
//!
//! The bytes depend only on the rows and the params (no timestamps), so that a rerun that keeps
//! every note keeps the file byte-identical and its dependents cached.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use duckdb::arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::NotesError;
use crate::params::{Compression, ParquetParams};

pub struct CorpusWriter {
    tx: Option<SyncSender<RecordBatch>>,
    handle: Option<JoinHandle<Result<(), NotesError>>>,
    path: PathBuf,
}

impl CorpusWriter {
    pub fn create(path: &Path, p: &ParquetParams) -> Result<Self, NotesError> {
        let file = File::create(path)
            .map_err(|e| NotesError::new(format!("cannot create {}: {e}", path.display())))?;
        let compression = match p.compression {
            Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")),
            Compression::Snappy => PqCompression::SNAPPY,
            Compression::Lz4 => PqCompression::LZ4_RAW,
            Compression::None => PqCompression::UNCOMPRESSED,
        };
        let text = ColumnPath::from("text");
        let id = ColumnPath::from("id");
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(p.row_group_rows.get() as usize))
            .set_max_row_group_bytes(Some(p.row_group_mb.get() as usize * 1024 * 1024))
            // Notes and ids are nearly all distinct: a dictionary is wasted work for them, and
            // min/max statistics of multi-kilobyte notes are useless.
            .set_column_dictionary_enabled(text.clone(), false)
            .set_column_dictionary_enabled(id, false)
            .set_column_statistics_enabled(text, EnabledStatistics::None)
            .set_created_by("camel notes".to_string())
            .build();
        let mut writer = ArrowWriter::try_new(file, camel_corpus::schema(), Some(props))
            .map_err(|e| NotesError::new(format!("cannot write {}: {e}", path.display())))?;
        let (tx, rx): (SyncSender<RecordBatch>, Receiver<RecordBatch>) = sync_channel(2);
        let out = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("notes-parquet".into())
            .spawn(move || -> Result<(), NotesError> {
                let fail = |e: parquet::errors::ParquetError| {
                    NotesError::new(format!("cannot write {}: {e}", out.display()))
                };
                for batch in rx {
                    writer.write(&batch).map_err(fail)?;
                }
                writer.close().map_err(fail)?;
                Ok(())
            })
            .map_err(|e| NotesError::new(format!("cannot start the Parquet writer: {e}")))?;
        Ok(CorpusWriter { tx: Some(tx), handle: Some(handle), path: path.to_path_buf() })
    }

    /// Queues a batch (blocks while two are waiting, which bounds memory).
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), NotesError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            Err(self.join().err().unwrap_or_else(|| NotesError::new("the Parquet writer stopped")))
        }
    }

    fn join(&mut self) -> Result<(), NotesError> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(NotesError::new(format!("the Parquet writer of {} panicked", self.path.display())))
            }),
            None => Ok(()),
        }
    }

    /// Writes the footer and closes the file.
    pub fn finish(mut self) -> Result<(), NotesError> {
        self.join()
    }
}

impl Drop for CorpusWriter {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
