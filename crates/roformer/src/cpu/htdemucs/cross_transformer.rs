//! The cross-domain transformer of HT Demucs on token rows: the spectrogram branch's
//! `[frames][freqs][c]` planes are already its `(t1 fr) c` tokens, the waveform branch's
//! `[samples][1][c]` its `t2 c` tokens.

use candle_core::Result as CResult;

use super::epilogue::{finish, Act, GroupNorm, RowLayout, Sink, Stats};
use super::layers::values;
use crate::cpu::attention::multi_head;
use crate::cpu::kernels::{add_scaled_rows, gelu_bias_rows, layer_norm_rows};
use crate::cpu::{Precision, Weight};
use crate::model::htdemucs::cross_transformer::{
    CrossTransformer as RefTransformer, Layer as RefLayer, LayerNorm as RefLayerNorm,
};
use crate::model::htdemucs::sin_embedding::{sin_embedding, sin_embedding_2d};
use crate::model::linear::Linear;

/// `nn.LayerNorm`'s default.
const LN_EPS: f32 = 1e-5;

#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl LayerNorm {
    fn new(n: &RefLayerNorm) -> CResult<Self> {
        Ok(Self {
            weight: values(&n.weight)?,
            bias: values(&n.bias)?,
        })
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; x.len()];
        layer_norm_rows(x, &mut out, &self.weight, &self.bias, LN_EPS);
        out
    }
}

/// `nn.Linear` on the engine's products.
#[derive(Debug, Clone)]
struct Dense {
    weight: Weight,
    bias: Vec<f32>,
}

impl Dense {
    fn new(l: &Linear, precision: Precision) -> CResult<Self> {
        let d = l.weight.dims();
        let bias = match &l.bias {
            Some(b) => values(b)?,
            None => vec![0.0; d[0]],
        };
        Ok(Self::from_parts(values(&l.weight)?, bias, d[1], precision))
    }

    fn from_parts(w: Vec<f32>, bias: Vec<f32>, inp: usize, precision: Precision) -> Self {
        Self {
            weight: Weight::new(w, bias.len(), inp, precision),
            bias,
        }
    }

    /// `x W^T` without the bias (the callers fold it into the next pass).
    fn product(&self, x: &[f32]) -> Vec<f32> {
        let m = x.len() / self.weight.in_dim();
        let mut out = vec![0.0f32; m * self.weight.out_dim()];
        self.weight.matmul(x, m, &mut out, false);
        out
    }
}

#[derive(Debug, Clone)]
struct Layer {
    cross: bool,
    norm_first: bool,
    gelu: bool,
    heads: usize,
    /// `in_proj`'s query rows, and its key and value rows.
    q: Dense,
    kv: Dense,
    out: Dense,
    linear1: Dense,
    linear2: Dense,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: Option<LayerNorm>,
    norm_out: Option<GroupNorm>,
    gammas: Option<(Vec<f32>, Vec<f32>)>,
}

impl Layer {
    fn new(l: &RefLayer, precision: Precision) -> CResult<Self> {
        let a = &l.attn;
        let dim = a.out.weight.dims()[0];
        let q_bias: Vec<f32> = match &a.q.bias {
            Some(b) => values(b)?,
            None => vec![0.0; dim],
        };
        let q_w: Vec<f32> = values(&a.q.weight)?;
        let mut kv_w = values(&a.k.weight)?;
        kv_w.extend(values(&a.v.weight)?);
        let mut kv_b =
            a.k.bias
                .as_ref()
                .map(values)
                .transpose()?
                .unwrap_or(vec![0.0; dim]);
        kv_b.extend(
            a.v.bias
                .as_ref()
                .map(values)
                .transpose()?
                .unwrap_or(vec![0.0; dim]),
        );
        Ok(Self {
            cross: l.cross,
            norm_first: l.norm_first,
            gelu: l.gelu,
            heads: a.heads,
            q: Dense::from_parts(q_w, q_bias, dim, precision),
            kv: Dense::from_parts(kv_w, kv_b, dim, precision),
            out: Dense::new(&a.out, precision)?,
            linear1: Dense::new(&l.linear1, precision)?,
            linear2: Dense::new(&l.linear2, precision)?,
            norm1: LayerNorm::new(&l.norm1)?,
            norm2: LayerNorm::new(&l.norm2)?,
            norm3: l.norm3.as_ref().map(LayerNorm::new).transpose()?,
            norm_out: l
                .norm_out
                .as_ref()
                .map(|n| -> CResult<_> {
                    Ok(GroupNorm {
                        groups: n.groups,
                        weight: values(&n.weight)?,
                        bias: values(&n.bias)?,
                    })
                })
                .transpose()?,
            gammas: l
                .gammas
                .as_ref()
                .map(|(a, b)| -> CResult<_> { Ok((values(a)?, values(b)?)) })
                .transpose()?,
        })
    }

    fn dim(&self) -> usize {
        self.out.bias.len()
    }

    fn gamma(&self, which: usize) -> Option<&[f32]> {
        self.gammas.as_ref().map(|(a, b)| {
            if which == 0 {
                a.as_slice()
            } else {
                b.as_slice()
            }
        })
    }

    /// Attention of the rows `query` to `source` (both already normalised where the layer
    /// asks), out-projected but without the output bias.
    fn attend(&self, query: &[f32], source: &[f32]) -> Vec<f32> {
        let d = self.dim();
        let (n, m) = (query.len() / d, source.len() / d);
        let mut q = self.q.product(query);
        add_bias(&mut q, &self.q.bias);
        // torch scales the projected (biased) queries.
        let scale = ((d / self.heads) as f32).powf(-0.5);
        q.iter_mut().for_each(|v| *v *= scale);
        let mut kv = self.kv.product(source);
        add_bias(&mut kv, &self.kv.bias);
        let mut o = vec![0.0f32; n * d];
        multi_head(&q, &kv, n, m, self.heads, &mut o);
        self.out.product(&o)
    }

    fn feed_forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = self.linear1.product(x);
        if self.gelu {
            gelu_bias_rows(&mut h, &self.linear1.bias);
        } else {
            let b = &self.linear1.bias;
            for row in h.chunks_exact_mut(b.len()) {
                row.iter_mut()
                    .zip(b)
                    .for_each(|(v, b)| *v = (*v + b).max(0.0));
            }
        }
        self.linear2.product(&h)
    }

    /// `x`'s tokens through the layer; `other`: the other branch's tokens for a cross layer.
    fn forward(&self, x: &mut Vec<f32>, other: Option<&[f32]>) {
        let d = self.dim();
        if self.norm_first {
            let q = self.norm1.forward(x);
            let a = match (self.cross, other) {
                (true, Some(k)) => self.attend(&q, &self.norm2.forward(k)),
                _ => self.attend(&q, &q),
            };
            add_scaled_rows(x, &a, &self.out.bias, self.gamma(0));
            let ff_norm = self.norm3.as_ref().unwrap_or(&self.norm2);
            let f = self.feed_forward(&ff_norm.forward(x));
            add_scaled_rows(x, &f, &self.linear2.bias, self.gamma(1));
            if let Some(n) = &self.norm_out {
                // `MyGroupNorm(1, d)` over all the item's tokens and channels.
                let layout = RowLayout::compact(1, x.len() / d, d);
                let mut out = vec![0.0f32; x.len()];
                let zero = vec![0.0f32; d];
                let norm = Some((n, Stats::Whole));
                finish(x, layout, &zero, norm, Act::Identity, Sink::Write(&mut out));
                *x = out;
            }
        } else {
            let a = match other {
                Some(k) => self.attend(x, k),
                None => self.attend(x, x),
            };
            add_scaled_rows(x, &a, &self.out.bias, self.gamma(0));
            *x = self.norm1.forward(x);
            let f = self.feed_forward(x);
            add_scaled_rows(x, &f, &self.linear2.bias, self.gamma(1));
            *x = self.norm2.forward(x);
        }
    }
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

#[derive(Debug, Clone)]
pub struct CrossTransformer {
    max_period: f64,
    weight_pos_embed: f32,
    classic_parity: usize,
    norm_in: Option<(LayerNorm, LayerNorm)>,
    layers: Vec<Layer>,
    layers_t: Vec<Layer>,
}

impl CrossTransformer {
    pub fn new(r: &RefTransformer, precision: Precision) -> CResult<Self> {
        let layers = |ls: &[RefLayer]| -> CResult<Vec<Layer>> {
            ls.iter().map(|l| Layer::new(l, precision)).collect()
        };
        Ok(Self {
            max_period: r.max_period,
            weight_pos_embed: r.weight_pos_embed as f32,
            classic_parity: r.classic_parity,
            norm_in: r
                .norm_in
                .as_ref()
                .map(|(a, b)| -> CResult<_> { Ok((LayerNorm::new(a)?, LayerNorm::new(b)?)) })
                .transpose()?,
            layers: layers(&r.layers)?,
            layers_t: layers(&r.layers_t)?,
        })
    }

    /// `x`: `[t1][fr][c]` tokens, `xt`: `[t2][c]`; both replaced by the outputs.
    pub fn forward(&self, x: &mut Vec<f32>, t1: usize, fr: usize, xt: &mut Vec<f32>) {
        let c = x.len() / (t1 * fr);
        let t2 = xt.len() / c;
        if let Some((n, nt)) = &self.norm_in {
            *x = n.forward(x);
            *xt = nt.forward(xt);
        }
        // The 2-D embedding `[c][fr][t1]` read as tokens `(t1 fr) c`.
        let w = self.weight_pos_embed;
        let pe = sin_embedding_2d(c, fr, t1, self.max_period);
        for (tok, row) in x.chunks_exact_mut(c).enumerate() {
            let (t, f) = (tok / fr, tok % fr);
            for (ch, v) in row.iter_mut().enumerate() {
                *v += pe[(ch * fr + f) * t1 + t] * w;
            }
        }
        let pe_t = sin_embedding(t2, c, self.max_period);
        xt.iter_mut().zip(&pe_t).for_each(|(v, p)| *v += p * w);
        for (i, (layer, layer_t)) in self.layers.iter().zip(&self.layers_t).enumerate() {
            if i % 2 == self.classic_parity {
                layer.forward(x, None);
                layer_t.forward(xt, None);
            } else {
                let old_x = x.clone();
                layer.forward(x, Some(xt));
                layer_t.forward(xt, Some(&old_x));
            }
        }
    }
}
