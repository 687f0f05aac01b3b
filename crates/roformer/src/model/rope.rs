//! Rotary position embedding as `rotary-embedding-torch` applies it: interleaved pairs
//! `(x[2i], x[2i+1])` rotated by `pos * freqs[i]`, positions `0..n`.

use candle_core::{Device, Result as CResult, Tensor};

use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug, Clone)]
pub struct Rope {
    /// `dim_head / 2` inverse frequencies, read from the checkpoint (every attention layer stores them).
    pub(crate) freqs: Vec<f32>,
}

impl Rope {
    pub fn load(vb: &mut WeightsView<'_>, dim_head: usize) -> Result<Self> {
        let freqs = vb.take("freqs", &[dim_head / 2])?.to_vec1::<f32>()?;
        Ok(Self { freqs })
    }

    /// `cos` and `sin` tables of shape `[n, dim_head/2]` for a sequence of `n` positions.
    pub fn tables(&self, n: usize, device: &Device) -> CResult<(Tensor, Tensor)> {
        let half = self.freqs.len();
        let (cos, sin) = rope_tables(&self.freqs, n);
        Ok((
            Tensor::from_vec(cos, (n, half), device)?,
            Tensor::from_vec(sin, (n, half), device)?,
        ))
    }

    /// Rotates `x` of shape `[b, heads, n, dim_head]`.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> CResult<Tensor> {
        if x.track_op() {
            // Training: the fused kernel has no backward pass.
            candle_nn::rotary_emb::rope_i_slow(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope_i(&x.contiguous()?, cos, sin)
        }
    }
}

/// `cos` and `sin` of `pos * freqs[i]` for positions `0..n`, row-major `[n, freqs.len()]`.
pub fn rope_tables(freqs: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(n * freqs.len());
    let mut sin = Vec::with_capacity(n * freqs.len());
    for pos in 0..n {
        for &f in freqs {
            // f32 product as torch's einsum computes it, then cos/sin.
            let angle = pos as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}
