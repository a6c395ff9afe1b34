//! What the stage leaves for the trainer besides `tokens.bin`: `meta.json` and the optional
//! `blocks.parquet` (one row per block, an `input_ids` list<int32> column).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::OffsetBufferBuilder;
use arrow_array::{ArrayRef, Int32Array, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use camel_engine::StageError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::Layout;
use super::pack::Width;

/// The value of `format` in `meta.json`; a new value means a reader must change.
pub const FORMAT: &str = "camel-tokens-v1";

/// `meta.json`. Field names are a contract with the trainer: add fields, never rename them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    /// `u16` or `u32`, little-endian.
    pub dtype: String,
    /// Every id is below this: the model's vocabulary plus the added tokens.
    pub vocab_size: u64,
    pub block_size: u64,
    pub blocks: u64,
    /// Tokens in the whole stream, before cutting it to whole blocks.
    pub tokens_total: u64,
    /// Tokens at the end of the stream that did not fill a block (not in `tokens.bin`).
    pub tokens_dropped: u64,
    pub notes: u64,
    pub bos_id: u32,
    pub eos_id: u32,
    /// Tokens added to the input tokenizer, with their ids.
    pub added_tokens: BTreeMap<String, u32>,
    /// Ids the loss should ignore (CAMEL masked `[ANON]`).
    pub ignore_ids: Vec<u32>,
    pub layout: Layout,
    pub shuffle: bool,
    pub seed: u64,
    /// blake3 of the input tokenizer file.
    pub tokenizer_blake3: String,
    /// blake3 of the `tokenizer.json` written beside the tokens (the input plus the added tokens).
    pub tokenizer_json_blake3: String,
    /// What was replaced by the anonymization token, and how many times.
    pub anon_marker: String,
    pub anon_replaced: u64,
    /// The files: `tokens.bin`, and `blocks.parquet` when written.
    pub tokens_file: String,
    pub parquet_file: Option<String>,
}

pub fn write_meta(path: &Path, meta: &Meta) -> Result<(), StageError> {
    let mut bytes = serde_json::to_vec_pretty(meta).expect("meta serializes");
    bytes.push(b'\n');
    std::fs::write(path, bytes).map_err(StageError::io(format!("write {}", path.display())))
}

/// Blocks per Parquet row group (and per record batch): 1,024 blocks of 2,048 tokens is 8 MB.
const ROWS_PER_GROUP: usize = 1024;

/// Writes `blocks` blocks of `block_size` ids from `tokens` (the finished `tokens.bin`) to `out`.
pub fn write_parquet(
    tokens: &Path,
    width: Width,
    block_size: u64,
    blocks: u64,
    out: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), StageError> {
    let fail =
        |e: parquet::errors::ParquetError| StageError::msg(format!("failed to write {}: {e}", out.display()));
    let item = Arc::new(Field::new("item", DataType::Int32, true));
    let schema = Arc::new(Schema::new(vec![Field::new("input_ids", DataType::List(item.clone()), false)]));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build();
    let file = File::create(out).map_err(StageError::io(format!("create {}", out.display())))?;
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(fail)?;
    let mut reader = BufReader::with_capacity(
        1 << 20,
        File::open(tokens).map_err(StageError::io(format!("open {}", tokens.display())))?,
    );
    let bs = usize::try_from(block_size).expect("block size fits in memory");
    let mut buf = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        if cancelled() {
            return Err(StageError::Cancelled);
        }
        let rows = (blocks - done).min(ROWS_PER_GROUP as u64) as usize;
        buf.resize(rows * bs * width.bytes(), 0);
        reader.read_exact(&mut buf).map_err(StageError::io(format!("read {}", tokens.display())))?;
        let values: Int32Array = width.decode(&buf).map(|id| id as i32).collect();
        let mut offsets = OffsetBufferBuilder::<i32>::new(rows);
        for _ in 0..rows {
            offsets.push_length(bs);
        }
        let offsets = offsets.finish();
        let list = ListArray::new(item.clone(), offsets, Arc::new(values), None);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list) as ArrayRef])
            .map_err(|e| StageError::msg(format!("failed to build a block batch: {e}")))?;
        w.write(&batch).map_err(fail)?;
        done += rows as u64;
    }
    w.close().map_err(fail)?;
    Ok(())
}
