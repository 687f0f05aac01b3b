//! MSST's `LinearAttention` (cross-covariance attention, El-Nouby et al. 2021): attention runs
//! between feature channels instead of tokens, with q and k L2-normalised along the sequence.

use candle_core::{Device, Module, Result as CResult, Tensor, D};

use super::linear::Linear;
use super::rms_norm::RmsNorm;
use super::transformer::TransformerShape;
use crate::error::Result;
use crate::weights::WeightsView;

/// `Attend(scale=8)` in the reference.
const SCALE: f64 = 8.0;

#[derive(Debug, Clone)]
pub struct LinearAttention {
    heads: usize,
    dim_head: usize,
    norm: RmsNorm,
    to_qkv: Linear,
    /// `exp(temperature)`, shape `[heads, 1, 1]`.
    temperature_exp: Tensor,
    to_out: Linear,
}

impl LinearAttention {
    pub fn load(
        vb: &mut WeightsView<'_>,
        shape: &TransformerShape,
        device: &Device,
    ) -> Result<Self> {
        let TransformerShape {
            dim,
            heads,
            dim_head,
            ..
        } = *shape;
        let inner = heads * dim_head;
        let temperature = vb.take("temperature", &[heads, 1, 1])?.to_device(device)?;
        Ok(Self {
            heads,
            dim_head,
            norm: RmsNorm::load(&mut vb.pp("norm"), dim, device)?,
            to_qkv: Linear::load(&mut vb.pp("to_qkv").pp("0"), dim, inner * 3, false, device)?,
            temperature_exp: temperature.exp()?,
            to_out: Linear::load(&mut vb.pp("to_out").pp("1"), inner, dim, false, device)?,
        })
    }
}

/// `F.normalize(t, dim=-1)`: divide by the L2 norm, floored at 1e-12.
fn l2norm(t: &Tensor) -> CResult<Tensor> {
    let norm = t
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    t.broadcast_div(&norm)
}

impl Module for LinearAttention {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (h, d) = (self.heads, self.dim_head);
        let x = self.norm.forward(x)?;
        // b n (qkv h d) -> qkv b h d n
        let qkv = self
            .to_qkv
            .forward_heads(&x, 3, h)?
            .permute((2, 0, 3, 4, 1))?
            .contiguous()?;
        let q = l2norm(&qkv.get(0)?)?.broadcast_mul(&self.temperature_exp)?;
        let k = l2norm(&qkv.get(1)?)?;
        let v = qkv.get(2)?;
        let scores = (q.matmul(&k.t()?)? * SCALE)?; // b h d d
        let probs = super::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?; // b h d n
                                     // b h d n -> b n (h d)
        let out = out.permute((0, 3, 1, 2))?.reshape((b, n, h * d))?;
        self.to_out.forward(&out)
    }
}
