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

/// Query rows per task of [`multi_head`].
const MHA_QUERY_BLOCK: usize = 256;

/// Unmasked softmax attention, as `nn.MultiheadAttention` computes it after its projections:
/// `q` `[n, heads * dh]` (already scaled by `dh^-0.5`) against `kv` `[m, 2 * heads * dh]` (keys,
/// then values), into `out` `[n, heads * dh]`. Parallel over blocks of queries; each block
/// holds its `rows x m` scores only.
pub fn multi_head(q: &[f32], kv: &[f32], n: usize, m: usize, heads: usize, out: &mut [f32]) {
    let inner = q.len() / n.max(1);
    let dh = inner / heads;
    assert_eq!(q.len(), n * inner);
    assert_eq!(kv.len(), m * 2 * inner);
    assert_eq!(out.len(), n * inner);
    if n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let block = n.div_ceil(4 * threads).clamp(16, MHA_QUERY_BLOCK);
    out.par_chunks_mut(block * inner).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(scores, sums): &mut (Vec<f32>, Vec<f32>), (b, out)| {
            let rows = out.len() / inner;
            let start = b * block;
            scores.resize(rows * m, 0.0);
            sums.resize(rows, 0.0);
            for head in 0..heads {
                let keys = Mat::new(&kv[head * dh..], m, dh, 2 * inner, 1);
                let values = Mat::new(&kv[inner + head * dh..], m, dh, 2 * inner, 1);
                let queries = Mat::new(&q[start * inner + head * dh..], rows, dh, inner, 1);
                let s = &mut scores[..rows * m];
                matmul(
                    MatMut::row_major(s, rows, m),
                    queries,
                    keys.t(),
                    false,
                    Parallelism::None,
                );
                exp_rows(s, m, sums);
                let dst = MatMut::new(&mut out[head * dh..], rows, dh, inner);
                matmul(
                    dst,
                    Mat::row_major(s, rows, m),
                    values,
                    false,
                    Parallelism::None,
                );
                for (r, &sum) in sums.iter().enumerate() {
                    let at = r * inner + head * dh;
                    let inv = 1.0 / sum;
                    out[at..at + dh].iter_mut().for_each(|v| *v *= inv);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Softmax attention in f64, straight from the definition.
    #[test]
    fn multi_head_is_softmax_attention_per_head() {
        let (n, m, heads, dh) = (37, 23, 3, 4);
        let inner = heads * dh;
        let q: Vec<f32> = (0..n * inner)
            .map(|i| ((i * 13) % 11) as f32 * 0.2 - 1.0)
            .collect();
        let kv: Vec<f32> = (0..m * 2 * inner)
            .map(|i| ((i * 7) % 19) as f32 * 0.15 - 1.3)
            .collect();
        let mut out = vec![0.0; n * inner];
        multi_head(&q, &kv, n, m, heads, &mut out);
        for i in 0..n {
            for h in 0..heads {
                let s: Vec<f64> = (0..m)
                    .map(|j| {
                        (0..dh)
                            .map(|e| {
                                q[i * inner + h * dh + e] as f64
                                    * kv[j * 2 * inner + h * dh + e] as f64
                            })
                            .sum()
                    })
                    .collect();
                let max = s.iter().copied().fold(f64::MIN, f64::max);
                let p: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                let total: f64 = p.iter().sum();
                for e in 0..dh {
                    let want: f64 = (0..m)
                        .map(|j| p[j] * kv[j * 2 * inner + inner + h * dh + e] as f64)
                        .sum::<f64>()
                        / total;
                    let got = out[i * inner + h * dh + e] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "query {i} head {h}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
