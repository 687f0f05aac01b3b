//! Rotary softmax attention over sequences held in a tile of projected tokens, one block of
//! query rows at a time, so at most `QUERY_BLOCK x n` scores exist per worker.
//!
//! [`prepare`] rotates q and k in place in the projection rows (q pre-scaled by
//! `dim_head^-0.5`) and turns the gate logits into gates; [`attend`] then multiplies each head
//! straight out of those rows through strided views: per query block `S = q k^T`,
//! `P = exp(S - max)`, `O = P v` written into the head's output columns, then scaled by
//! `gate / sum(P)`.

use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Parallelism};
use super::kernels::{exp_rows, sigmoid};
use super::simd::simd_dispatch;

/// Query rows per score block. Whole time sequences (801 frames for an 8 s chunk) in one block
/// measured fastest (22.0 s against 22.6 s per chunk with 128 rows): each block re-packs the
/// keys and values inside `gemm`, and 2.5 MB of scores per worker still sits in L3.
const QUERY_BLOCK: usize = 1024;

/// Rows handed to one rayon task by [`prepare`].
const ROWS_PER_TASK: usize = 64;

/// The layout of one row of the fused projection: `[q (h d) | k (h d) | v (h d) | gates (h)]`.
#[derive(Debug, Clone, Copy)]
pub struct HeadLayout {
    pub heads: usize,
    pub dim_head: usize,
}

impl HeadLayout {
    pub fn inner(&self) -> usize {
        self.heads * self.dim_head
    }

    /// Columns of a fused projection row.
    pub fn row_len(&self) -> usize {
        3 * self.inner() + self.heads
    }
}

/// Cosine and sine tables `[n, dim_head / 2]` for positions `0..n`.
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

/// Interleaved-pair rotation in place, times `scale`: `(x0, x1) -> (x0 cos - x1 sin,
/// x1 cos + x0 sin)`, as rotary-embedding-torch rotates.
#[inline(always)]
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], scale: f32) {
    for ((p, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (x0, x1) = (p[0], p[1]);
        p[0] = (x0 * c - x1 * s) * scale;
        p[1] = (x1 * c + x0 * s) * scale;
    }
}

#[inline(always)]
fn prepare_block(
    rows: &mut [f32],
    first_row: usize,
    n: usize,
    layout: HeadLayout,
    rope: &RopeTables,
    gate_bias: &[f32],
) {
    let dh = layout.dim_head;
    let inner = layout.inner();
    let scale = (dh as f32).powf(-0.5);
    for (r, row) in rows.chunks_exact_mut(layout.row_len()).enumerate() {
        let t = (first_row + r) % n;
        let cos = &rope.cos[t * dh / 2..(t + 1) * dh / 2];
        let sin = &rope.sin[t * dh / 2..(t + 1) * dh / 2];
        let (qk, rest) = row.split_at_mut(2 * inner);
        for (i, head) in qk.chunks_exact_mut(dh).enumerate() {
            rotate(head, cos, sin, if i < layout.heads { scale } else { 1.0 });
        }
        for (g, &b) in rest[inner..].iter_mut().zip(gate_bias) {
            *g = sigmoid(*g + b);
        }
    }
}

simd_dispatch!(fn prepare_block_simd(
    rows: &mut [f32],
    first_row: usize,
    n: usize,
    layout: HeadLayout,
    rope: &RopeTables,
    gate_bias: &[f32],
) => prepare_block);

/// Rotates q and k of every projection row in place (row `i` is position `i % n` of its
/// sequence), scales q by `dim_head^-0.5`, and replaces the gate logits by
/// `sigmoid(logit + gate_bias)`.
pub fn prepare(
    proj: &mut [f32],
    n: usize,
    layout: HeadLayout,
    rope: &RopeTables,
    gate_bias: &[f32],
) {
    assert_eq!(rope.cos.len(), n * layout.dim_head / 2);
    let row = layout.row_len();
    proj.par_chunks_mut(row * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, rows)| {
            prepare_block_simd(rows, task * ROWS_PER_TASK, n, layout, rope, gate_bias)
        });
}

/// Attention of every sequence in `proj` (`seqs` sequences of `n` tokens, rows laid out as
/// [`HeadLayout::row_len`], already [`prepare`]d) into `out` (`[seqs * n, heads * dim_head]`).
pub fn attend(proj: &[f32], out: &mut [f32], n: usize, layout: HeadLayout) {
    let (h, dh) = (layout.heads, layout.dim_head);
    let inner = layout.inner();
    let row = layout.row_len();
    assert_eq!(proj.len() % (n * row), 0);
    assert_eq!(out.len(), proj.len() / row * inner);
    proj.par_chunks(n * row)
        .zip(out.par_chunks_mut(n * inner))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(scores, factors): &mut (Vec<f32>, Vec<f32>), (seq, seq_out)| {
                let block = QUERY_BLOCK.min(n);
                scores.resize(block * n, 0.0);
                factors.resize(block, 0.0);
                for head in 0..h {
                    let keys = Mat::new(&seq[inner + head * dh..], n, dh, row, 1);
                    let values = Mat::new(&seq[2 * inner + head * dh..], n, dh, row, 1);
                    let mut start = 0;
                    while start < n {
                        let rows = block.min(n - start);
                        let queries = Mat::new(&seq[start * row + head * dh..], rows, dh, row, 1);
                        let s = &mut scores[..rows * n];
                        let dst = MatMut::row_major(s, rows, n);
                        matmul(dst, queries, keys.t(), false, Parallelism::None);
                        exp_rows(s, n, &mut factors[..rows]);
                        let o = &mut seq_out[start * inner + head * dh..];
                        let dst = MatMut::new(o, rows, dh, inner);
                        let probs = Mat::row_major(s, rows, n);
                        matmul(dst, probs, values, false, Parallelism::None);
                        // Softmax denominator and the head's sigmoid gate, one factor per row.
                        for (r, f) in factors[..rows].iter_mut().enumerate() {
                            let gate = seq[(start + r) * row + 3 * inner + head];
                            let factor = gate / *f;
                            let at = (start + r) * inner + head * dh;
                            seq_out[at..at + dh].iter_mut().for_each(|v| *v *= factor);
                        }
                        start += rows;
                    }
                }
            },
        );
}
