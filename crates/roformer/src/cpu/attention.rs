//! Rotary softmax attention over sequences held in a tile of projected tokens, one block of
//! query rows at a time, so at most `QUERY_BLOCK x n` scores exist per worker.
//!
//! Per (sequence, head): gather `q` (rotated, pre-scaled by `dim_head^-0.5`), `k` (rotated) and
//! `v^T` into contiguous scratch; for each query block `S = q k^T`, `P = exp(S - max)`,
//! `O = P v`, then `O * gate / sum(P)`, written into the head's columns of the output rows.

use rayon::prelude::*;

use super::kernels::{exp_rows, scale_rows};
use super::weight::gemm_f32_serial;

/// Query rows per score block: 128 x 801 scores (400 KiB) stay in a core's L2 cache.
const QUERY_BLOCK: usize = 128;

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

/// Per-worker scratch, reused across (sequence, head) pairs.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    vt: Vec<f32>,
    scores: Vec<f32>,
    sums: Vec<f32>,
    out: Vec<f32>,
}

/// Interleaved-pair rotation of `src` (`dim_head` values at position `pos`) into `dst`, times
/// `scale`: `(x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)` as rotary-embedding-torch does.
#[inline(always)]
fn rotate(src: &[f32], dst: &mut [f32], cos: &[f32], sin: &[f32], scale: f32) {
    for (((d, s), &c), &sn) in dst
        .chunks_exact_mut(2)
        .zip(src.chunks_exact(2))
        .zip(cos)
        .zip(sin)
    {
        d[0] = (s[0] * c - s[1] * sn) * scale;
        d[1] = (s[1] * c + s[0] * sn) * scale;
    }
}

/// Attention of every sequence in `proj` (`seqs` sequences of `n` tokens, rows laid out as
/// [`HeadLayout::row_len`], gate logits already turned into sigmoid gates) into `out`
/// (`[seqs * n, heads * dim_head]`).
pub fn attend(proj: &[f32], out: &mut [f32], n: usize, layout: HeadLayout, rope: &RopeTables) {
    let (h, dh) = (layout.heads, layout.dim_head);
    let inner = layout.inner();
    let row = layout.row_len();
    assert_eq!(proj.len() % (n * row), 0);
    assert_eq!(out.len(), proj.len() / row * inner);
    assert_eq!(rope.cos.len(), n * dh / 2);
    let scale = (dh as f32).powf(-0.5);
    proj.par_chunks(n * row)
        .zip(out.par_chunks_mut(n * inner))
        .for_each_init(Scratch::default, |s, (seq, seq_out)| {
            s.q.resize(n * dh, 0.0);
            s.k.resize(n * dh, 0.0);
            s.vt.resize(n * dh, 0.0);
            let block = QUERY_BLOCK.min(n);
            s.scores.resize(block * n, 0.0);
            s.sums.resize(block, 0.0);
            s.out.resize(block * dh, 0.0);
            for head in 0..h {
                let (qc, kc, vc) = (head * dh, inner + head * dh, 2 * inner + head * dh);
                for (t, token) in seq.chunks_exact(row).enumerate() {
                    let cos = &rope.cos[t * dh / 2..(t + 1) * dh / 2];
                    let sin = &rope.sin[t * dh / 2..(t + 1) * dh / 2];
                    let qs = &mut s.q[t * dh..(t + 1) * dh];
                    rotate(&token[qc..qc + dh], qs, cos, sin, scale);
                    let ks = &mut s.k[t * dh..(t + 1) * dh];
                    rotate(&token[kc..kc + dh], ks, cos, sin, 1.0);
                    for (j, &v) in token[vc..vc + dh].iter().enumerate() {
                        s.vt[j * n + t] = v;
                    }
                }
                let mut start = 0;
                while start < n {
                    let rows = block.min(n - start);
                    let scores = &mut s.scores[..rows * n];
                    gemm_f32_serial(&s.q[start * dh..], rows, &s.k, n, dh, scores, false);
                    exp_rows(scores, n, &mut s.sums[..rows]);
                    let o = &mut s.out[..rows * dh];
                    gemm_f32_serial(scores, rows, &s.vt, dh, n, o, false);
                    // Softmax denominator and the head's sigmoid gate in one factor per row.
                    for (r, f) in s.sums[..rows].iter_mut().enumerate() {
                        *f = seq[(start + r) * row + 3 * inner + head] / *f;
                    }
                    scale_rows(o, dh, &s.sums[..rows]);
                    for (r, orow) in o.chunks_exact(dh).enumerate() {
                        let at = (start + r) * inner + head * dh;
                        seq_out[at..at + dh].copy_from_slice(orow);
                    }
                    start += rows;
                }
            }
        });
}
