//! Demucs' `CrossTransformerEncoder`: the bottleneck of HT Demucs, where the spectrogram
//! branch (`[b, c, f, t1]`, read as `t1 * f` tokens) and the waveform branch (`[b, c, t2]`)
//! alternate self-attention layers (`MyTransformerEncoderLayer`) and cross-attention layers
//! (`CrossTransformerEncoderLayer`, each branch attending to the other), with sinusoidal
//! positions (2-D for the spectrogram) added after an input LayerNorm.

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::group_norm::GroupNorm;
use super::sin_embedding::{sin_embedding, sin_embedding_2d};
use super::HtDemucsConfig;
use crate::error::Result;
use crate::model::linear::Linear;
use crate::model::softmax_last_dim;
use crate::weights::WeightsView;

/// `nn.LayerNorm`'s default.
const LN_EPS: f32 = 1e-5;
/// Upper bound on attention scores held at once (elements); heads are sliced to stay below.
const MAX_SCORE_ELEMENTS: usize = 1 << 26;

#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
}

impl LayerNorm {
    fn load(vb: &mut WeightsView<'_>, dim: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: vb.take("weight", &[dim])?.to_device(device)?,
            bias: vb.take("bias", &[dim])?.to_device(device)?,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, LN_EPS)
    }
}

/// `nn.MultiheadAttention` (batch first, no mask): packed `in_proj`, `out_proj`.
#[derive(Debug, Clone)]
pub(crate) struct MultiheadAttention {
    pub(crate) heads: usize,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) out: Linear,
}

impl MultiheadAttention {
    fn load(vb: &mut WeightsView<'_>, dim: usize, heads: usize, device: &Device) -> Result<Self> {
        let w = vb
            .take("in_proj_weight", &[3 * dim, dim])?
            .to_device(device)?;
        let b = vb.take("in_proj_bias", &[3 * dim])?.to_device(device)?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear {
                weight: w.narrow(0, i * dim, dim)?.contiguous()?,
                bias: Some(b.narrow(0, i * dim, dim)?.contiguous()?),
            })
        };
        Ok(Self {
            heads,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: Linear::load(&mut vb.pp("out_proj"), dim, dim, true, device)?,
        })
    }

    /// `query: [b, n, d]` attends to `kv: [b, m, d]`.
    fn forward(&self, query: &Tensor, kv: &Tensor) -> CResult<Tensor> {
        let (b, n, dim) = query.dims3()?;
        let m = kv.dim(1)?;
        let h = self.heads;
        let dh = dim / h;
        let split = |x: Tensor, len: usize| -> CResult<Tensor> {
            x.reshape((b, len, h, dh))?.transpose(1, 2)?.contiguous()
        };
        let scale = (dh as f64).powf(-0.5);
        let q = split((self.q.forward(query)? * scale)?, n)?;
        let k = split(self.k.forward(kv)?, m)?;
        let v = split(self.v.forward(kv)?, m)?;
        let per_head = (b * n * m).max(1);
        let slice = (MAX_SCORE_ELEMENTS / per_head).clamp(1, h);
        let mut outs = Vec::with_capacity(h.div_ceil(slice));
        let mut start = 0;
        while start < h {
            let len = slice.min(h - start);
            let (q, k, v) = (
                q.narrow(1, start, len)?,
                k.narrow(1, start, len)?,
                v.narrow(1, start, len)?,
            );
            let scores = q
                .contiguous()?
                .matmul(&k.contiguous()?.transpose(2, 3)?.contiguous()?)?;
            outs.push(softmax_last_dim(&scores)?.matmul(&v.contiguous()?)?);
            start += len;
        }
        let o = Tensor::cat(&outs, 1)?
            .transpose(1, 2)?
            .reshape((b, n, dim))?;
        self.out.forward(&o)
    }
}

/// One layer: self-attention (`MyTransformerEncoderLayer`) or cross-attention
/// (`CrossTransformerEncoderLayer`), then the feed-forward block.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) cross: bool,
    pub(crate) norm_first: bool,
    pub(crate) gelu: bool,
    pub(crate) attn: MultiheadAttention,
    pub(crate) linear1: Linear,
    pub(crate) linear2: Linear,
    pub(crate) norm1: LayerNorm,
    pub(crate) norm2: LayerNorm,
    /// Cross layers: the norm before the feed-forward (with `norm_first`).
    pub(crate) norm3: Option<LayerNorm>,
    /// `MyGroupNorm(1, dim)` at the end (with `norm_first` and `norm_out`).
    pub(crate) norm_out: Option<GroupNorm>,
    /// `LayerScale`s of the attention and feed-forward outputs.
    pub(crate) gammas: Option<(Tensor, Tensor)>,
}

impl Layer {
    fn load(
        vb: &mut WeightsView<'_>,
        cross: bool,
        dim: usize,
        config: &HtDemucsConfig,
        device: &Device,
    ) -> Result<Self> {
        let hidden = (dim as f64 * config.t_hidden_scale) as usize;
        let attn_name = if cross { "cross_attn" } else { "self_attn" };
        let gammas = if config.t_layer_scale {
            let mut g = |name: &str| -> Result<Tensor> {
                Ok(vb.pp(name).take("scale", &[dim])?.to_device(device)?)
            };
            Some((g("gamma_1")?, g("gamma_2")?))
        } else {
            None
        };
        Ok(Self {
            cross,
            norm_first: config.t_norm_first,
            gelu: config.t_gelu,
            attn: MultiheadAttention::load(&mut vb.pp(attn_name), dim, config.t_heads, device)?,
            linear1: Linear::load(&mut vb.pp("linear1"), dim, hidden, true, device)?,
            linear2: Linear::load(&mut vb.pp("linear2"), hidden, dim, true, device)?,
            norm1: LayerNorm::load(&mut vb.pp("norm1"), dim, device)?,
            norm2: LayerNorm::load(&mut vb.pp("norm2"), dim, device)?,
            // Built (and saved) for every cross layer, used only with `norm_first`.
            norm3: cross
                .then(|| LayerNorm::load(&mut vb.pp("norm3"), dim, device))
                .transpose()?,
            norm_out: (config.t_norm_first && config.t_norm_out)
                .then(|| GroupNorm::load(&mut vb.pp("norm_out"), 1, dim, device))
                .transpose()?,
            gammas,
        })
    }

    fn scaled(&self, x: Tensor, which: usize) -> CResult<Tensor> {
        match &self.gammas {
            Some((g1, g2)) => x.broadcast_mul(if which == 0 { g1 } else { g2 }),
            None => Ok(x),
        }
    }

    fn feed_forward(&self, x: &Tensor) -> CResult<Tensor> {
        let h = self.linear1.forward(x)?;
        let h = if self.gelu { h.gelu_erf()? } else { h.relu()? };
        self.linear2.forward(&h)
    }

    /// `x: [b, n, d]`; `other`: the other branch's tokens for a cross layer.
    fn forward(&self, x: &Tensor, other: Option<&Tensor>) -> CResult<Tensor> {
        let attend = |q: &Tensor, k: Option<&Tensor>| match k {
            Some(k) => self.attn.forward(q, k),
            None => self.attn.forward(q, q),
        };
        if self.norm_first {
            let q = self.norm1.forward(x)?;
            let a = match (self.cross, other) {
                (true, Some(k)) => attend(&q, Some(&self.norm2.forward(k)?))?,
                _ => attend(&q, None)?,
            };
            let x = (x + self.scaled(a, 0)?)?;
            let ff_norm = self.norm3.as_ref().unwrap_or(&self.norm2);
            let x = (&x + self.scaled(self.feed_forward(&ff_norm.forward(&x)?)?, 1)?)?;
            match &self.norm_out {
                Some(n) => n
                    .forward(&x.transpose(1, 2)?.contiguous()?)?
                    .transpose(1, 2),
                None => Ok(x),
            }
        } else {
            let a = attend(x, other)?;
            let x = self.norm1.forward(&(x + self.scaled(a, 0)?)?)?;
            let f = self.feed_forward(&x)?;
            self.norm2.forward(&(&x + self.scaled(f, 1)?)?)
        }
    }
}

#[derive(Debug, Clone)]
pub struct CrossTransformer {
    pub(crate) max_period: f64,
    pub(crate) weight_pos_embed: f64,
    /// The self-attention layers are those with `index % 2 == classic_parity`.
    pub(crate) classic_parity: usize,
    pub(crate) norm_in: Option<(LayerNorm, LayerNorm)>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) layers_t: Vec<Layer>,
}

impl CrossTransformer {
    /// `vb` points at `crosstransformer`.
    pub fn load(
        vb: &mut WeightsView<'_>,
        dim: usize,
        config: &HtDemucsConfig,
        device: &Device,
    ) -> Result<Self> {
        let classic_parity = usize::from(config.t_cross_first);
        let norm_in = config
            .t_norm_in
            .then(|| -> Result<_> {
                Ok((
                    LayerNorm::load(&mut vb.pp("norm_in"), dim, device)?,
                    LayerNorm::load(&mut vb.pp("norm_in_t"), dim, device)?,
                ))
            })
            .transpose()?;
        let mut load = |branch: &str| -> Result<Vec<Layer>> {
            let mut layers = vb.pp(branch);
            (0..config.t_layers)
                .map(|i| {
                    let cross = i % 2 != classic_parity;
                    Layer::load(&mut layers.pp(i), cross, dim, config, device)
                })
                .collect()
        };
        let layers = load("layers")?;
        let layers_t = load("layers_t")?;
        Ok(Self {
            max_period: config.t_max_period,
            weight_pos_embed: config.t_weight_pos_embed,
            classic_parity,
            norm_in,
            layers,
            layers_t,
        })
    }

    /// `x: [b, c, f, t1]`, `xt: [b, c, t2]`, both returned in the same shapes.
    pub fn forward(&self, x: &Tensor, xt: &Tensor) -> CResult<(Tensor, Tensor)> {
        let (b, c, fr, t1) = x.dims4()?;
        let t2 = xt.dim(2)?;
        let device = x.device();
        // "b c fr t1 -> b (t1 fr) c"
        let tokens = |x: &Tensor| -> CResult<Tensor> {
            x.permute((0, 3, 2, 1))?
                .contiguous()?
                .reshape((b, t1 * fr, c))
        };
        let pos_2d = Tensor::from_vec(
            sin_embedding_2d(c, fr, t1, self.max_period),
            (1, c, fr, t1),
            device,
        )?;
        let pos_2d = (tokens(&pos_2d.broadcast_as((b, c, fr, t1))?)? * self.weight_pos_embed)?;
        let pos_t = Tensor::from_vec(sin_embedding(t2, c, self.max_period), (1, t2, c), device)?;
        let pos_t = (pos_t * self.weight_pos_embed)?;
        let mut x = tokens(x)?;
        let mut xt = xt.transpose(1, 2)?.contiguous()?;
        if let Some((n, nt)) = &self.norm_in {
            x = n.forward(&x)?;
            xt = nt.forward(&xt)?;
        }
        x = (x + pos_2d)?;
        xt = xt.broadcast_add(&pos_t)?;
        for (i, (layer, layer_t)) in self.layers.iter().zip(&self.layers_t).enumerate() {
            if i % 2 == self.classic_parity {
                x = layer.forward(&x, None)?;
                xt = layer_t.forward(&xt, None)?;
            } else {
                let old_x = x.clone();
                x = layer.forward(&x, Some(&xt))?;
                xt = layer_t.forward(&xt, Some(&old_x))?;
            }
        }
        let x = x
            .reshape((b, t1, fr, c))?
            .permute((0, 3, 2, 1))?
            .contiguous()?;
        let xt = xt.transpose(1, 2)?.contiguous()?;
        Ok((x, xt))
    }
}
