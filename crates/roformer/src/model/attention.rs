//! Gated multi-head self-attention with rotary positions (MSST `Attention`):
//! `RMSNorm -> to_qkv -> RoPE(q, k) -> softmax(q k^T / sqrt(d)) v -> * sigmoid(to_gates(x)) -> to_out`.

use candle_core::{Device, Module, Result as CResult, Tensor, D};

use super::linear::Linear;
use super::rms_norm::RmsNorm;
use super::rope::Rope;
use super::transformer::TransformerShape;
use crate::error::Result;
use crate::weights::WeightsView;

/// Upper bound on attention scores held at once (elements): long sequences are processed in
/// slices of the batch so memory stays bounded whatever the batch size.
const MAX_SCORE_ELEMENTS: usize = 1 << 26;

#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) heads: usize,
    pub(crate) dim_head: usize,
    pub(crate) norm: RmsNorm,
    pub(crate) to_qkv: Linear,
    pub(crate) to_gates: Linear,
    pub(crate) to_out: Linear,
    pub(crate) rope: Rope,
}

impl Attention {
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
        Ok(Self {
            heads,
            dim_head,
            norm: RmsNorm::load(&mut vb.pp("norm"), dim, device)?,
            to_qkv: Linear::load(&mut vb.pp("to_qkv"), dim, inner * 3, false, device)?,
            to_gates: Linear::load(&mut vb.pp("to_gates"), dim, heads, true, device)?,
            to_out: Linear::load(&mut vb.pp("to_out").pp("0"), inner, dim, false, device)?,
            rope: Rope::load(&mut vb.pp("rotary_embed"), dim_head)?,
        })
    }

    /// Softmax attention of `q, k, v: [b, h, n, d]`, sliced over `b` to bound the score memory.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> CResult<Tensor> {
        let (b, h, n, _) = q.dims4()?;
        let scale = (self.dim_head as f64).powf(-0.5);
        let per_item = (h * n * n).max(1);
        let slice = (MAX_SCORE_ELEMENTS / per_item).clamp(1, b);
        let mut outs = Vec::with_capacity(b.div_ceil(slice));
        let mut start = 0;
        while start < b {
            let len = slice.min(b - start);
            let (qs, ks, vs) = (
                q.narrow(0, start, len)?,
                k.narrow(0, start, len)?,
                v.narrow(0, start, len)?,
            );
            let scores = (qs.matmul(&ks.t()?)? * scale)?;
            let probs = super::softmax_last_dim(&scores)?;
            outs.push(probs.matmul(&vs)?);
            start += len;
        }
        Tensor::cat(&outs, 0)
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (h, d) = (self.heads, self.dim_head);
        let x = self.norm.forward(x)?;
        // b n (qkv h d) -> qkv b h n d
        let qkv = self
            .to_qkv
            .forward_heads(&x, 3, h)?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (cos, sin) = self.rope.tables(n, x.device())?;
        let q = self.rope.apply(&qkv.get(0)?, &cos, &sin)?;
        let k = self.rope.apply(&qkv.get(1)?, &cos, &sin)?;
        let v = qkv.get(2)?.contiguous()?;
        let out = self.attend(&q, &k, &v)?; // b h n d
                                            // Per-head sigmoid gate from the normed input: b n h -> b h n 1.
        let gates = candle_nn::ops::sigmoid(&self.to_gates.forward(&x)?)?
            .permute((0, 2, 1))?
            .unsqueeze(D::Minus1)?;
        let out = out.broadcast_mul(&gates)?;
        // b h n d -> b n (h d)
        let out = out.permute((0, 2, 1, 3))?.reshape((b, n, h * d))?;
        self.to_out.forward(&out)
    }
}
