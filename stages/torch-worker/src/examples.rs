//! The training set as the loop sees it: examples addressed by index, turned into micro-batches
//! of ids and labels. Pretraining's packed blocks are here; fine-tuning's tokenized records are in
//! src/sft.rs. The loop (src/train.rs) and the step strategies only know this interface.

use tch::Tensor;

use crate::data::TokenData;

/// One micro-batch on the CPU: ids and labels `[batch, len]` (labels -100 where ignored).
pub struct Batch {
    pub ids: Tensor,
    pub labels: Tensor,
    /// Tokens that count for throughput (not padding).
    pub tokens: i64,
}

/// A training set: examples addressed by index.
pub trait Examples {
    fn len(&self) -> usize;
    fn batch(&self, indices: &[usize]) -> Batch;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Example lengths, for length-grouped batches.
    fn lengths(&self) -> Option<Vec<usize>> {
        None
    }
}

/// Packed pretraining blocks; labels are the ids with `ignore` ids set to -100.
pub struct Blocks {
    pub data: TokenData,
    pub ignore: Vec<i64>,
}

impl Examples for Blocks {
    fn len(&self) -> usize {
        self.data.blocks()
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        let t = self.data.meta.block_size as i64;
        let ids: Vec<i64> = indices.iter().flat_map(|&i| self.data.block(i)).collect();
        let labels: Vec<i64> =
            ids.iter().map(|id| if self.ignore.contains(id) { -100 } else { *id }).collect();
        let b = indices.len() as i64;
        Batch {
            ids: Tensor::from_slice(&ids).view([b, t]),
            labels: Tensor::from_slice(&labels).view([b, t]),
            tokens: b * t,
        }
    }
}
