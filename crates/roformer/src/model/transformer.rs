//! MSST's `Transformer`: `depth` pre-norm residual layers of (attention, feed-forward).

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::attention::Attention;
use super::feed_forward::FeedForward;
use super::linear_attention::LinearAttention;
use crate::error::Result;
use crate::weights::WeightsView;

/// Which attention a transformer's layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Softmax attention over tokens with rotary positions and per-head gates.
    Rotary,
    /// Cross-covariance "linear" attention over feature channels, no positions.
    Linear,
}

#[derive(Debug, Clone)]
enum Mixer {
    Rotary(Attention),
    Linear(LinearAttention),
}

impl Module for Mixer {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Mixer::Rotary(a) => a.forward(x),
            Mixer::Linear(a) => a.forward(x),
        }
    }
}

/// The shape of one transformer stack.
#[derive(Debug, Clone, Copy)]
pub struct TransformerShape {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub dim_head: usize,
    pub kind: AttentionKind,
}

#[derive(Debug, Clone)]
pub struct Transformer {
    layers: Vec<(Mixer, FeedForward)>,
}

impl Transformer {
    /// `vb` points at the transformer; its layers are under `layers.{k}.{0 = attention, 1 = ff}`.
    pub fn load(
        vb: &mut WeightsView<'_>,
        shape: TransformerShape,
        device: &Device,
    ) -> Result<Self> {
        let mut layers_vb = vb.pp("layers");
        let mut layers = Vec::with_capacity(shape.depth);
        for k in 0..shape.depth {
            let mut layer = layers_vb.pp(k);
            let mut attn_vb = layer.pp("0");
            let mixer = match shape.kind {
                AttentionKind::Rotary => {
                    Mixer::Rotary(Attention::load(&mut attn_vb, &shape, device)?)
                }
                AttentionKind::Linear => {
                    Mixer::Linear(LinearAttention::load(&mut attn_vb, &shape, device)?)
                }
            };
            let ff = FeedForward::load(&mut layer.pp("1"), shape.dim, device)?;
            layers.push((mixer, ff));
        }
        Ok(Self { layers })
    }
}

impl Module for Transformer {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut x = x.clone();
        for (mixer, ff) in &self.layers {
            x = (mixer.forward(&x)? + &x)?;
            x = (ff.forward(&x)? + &x)?;
        }
        Ok(x)
    }
}
