//! MSST's `Transformer`: `depth` pre-norm residual layers of (attention, feed-forward), optionally
//! followed by an output RMSNorm (`norm_output`: on in Mel-Band RoFormer, off in BS-RoFormer), and
//! the axial stack both models build from it.

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::attention::Attention;
use super::backend::RunStack;
use super::feed_forward::FeedForward;
use super::linear_attention::LinearAttention;
use super::rms_norm::RmsNorm;
use crate::config::ModelConfig;
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
pub(crate) enum Mixer {
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
    /// Whether the stack ends in its own RMSNorm (`norm.gamma`).
    pub norm_output: bool,
}

#[derive(Debug, Clone)]
pub struct Transformer {
    pub(crate) layers: Vec<(Mixer, FeedForward)>,
    pub(crate) norm: Option<RmsNorm>,
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
        let norm = if shape.norm_output {
            Some(RmsNorm::load(&mut vb.pp("norm"), shape.dim, device)?)
        } else {
            None
        };
        Ok(Self { layers, norm })
    }
}

impl Module for Transformer {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut x = x.clone();
        for (mixer, ff) in &self.layers {
            x = (mixer.forward(&x)? + &x)?;
            x = (ff.forward(&x)? + &x)?;
        }
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }
}

/// One axial block: an optional linear-attention transformer over all tokens, then time, then
/// frequency.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) linear: Option<Transformer>,
    pub(crate) time: Transformer,
    pub(crate) freq: Transformer,
}

/// The `layers` of both models: `depth` axial blocks over `[b, t, bands, dim]`, with MSST's optional
/// skip connections (each block's input gets the outputs of all earlier blocks added).
#[derive(Debug, Clone)]
pub struct AxialStack {
    pub(crate) blocks: Vec<Block>,
    pub(crate) skip_connection: bool,
}

impl AxialStack {
    /// `vb` points at `layers`; block `l` holds `{0: linear?, then time, then freq}`.
    pub fn load(
        cfg: &ModelConfig,
        norm_output: bool,
        vb: &mut WeightsView<'_>,
        device: &Device,
    ) -> Result<Self> {
        let shape = |depth, kind| TransformerShape {
            dim: cfg.dim,
            depth,
            heads: cfg.heads,
            dim_head: cfg.dim_head,
            kind,
            norm_output,
        };
        let mut blocks = Vec::with_capacity(cfg.depth);
        for l in 0..cfg.depth {
            let mut block = vb.pp(l);
            // With a linear transformer present it takes index 0 and shifts time/freq to 1/2.
            let has_linear = cfg.linear_transformer_depth > 0;
            let linear = if has_linear {
                Some(Transformer::load(
                    &mut block.pp("0"),
                    shape(cfg.linear_transformer_depth, AttentionKind::Linear),
                    device,
                )?)
            } else {
                None
            };
            let first = usize::from(has_linear);
            let time = Transformer::load(
                &mut block.pp(first),
                shape(cfg.time_transformer_depth, AttentionKind::Rotary),
                device,
            )?;
            let freq = Transformer::load(
                &mut block.pp(first + 1),
                shape(cfg.freq_transformer_depth, AttentionKind::Rotary),
                device,
            )?;
            blocks.push(Block { linear, time, freq });
        }
        Ok(Self {
            blocks,
            skip_connection: cfg.skip_connection,
        })
    }
}

impl Module for AxialStack {
    /// `x: [b, t, bands, dim]` -> same shape.
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut x = x.clone();
        let (b, t, f, d) = x.dims4()?;
        let mut store: Vec<Tensor> = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            if let Some(linear) = &block.linear {
                // All (t f) tokens of an item attend together.
                x = linear
                    .forward(&x.reshape((b, t * f, d))?)?
                    .reshape((b, t, f, d))?;
            }
            if self.skip_connection {
                // The reference adds the outputs of all earlier blocks, one by one.
                for earlier in &store {
                    x = (x + earlier)?;
                }
            }
            // Time attention over (b f) t d.
            let xt = x.permute((0, 2, 1, 3))?.reshape((b * f, t, d))?;
            let xt = block.time.forward(&xt)?;
            // Frequency attention over (b t) f d.
            let xf = xt
                .reshape((b, f, t, d))?
                .permute((0, 2, 1, 3))?
                .reshape((b * t, f, d))?;
            x = block.freq.forward(&xf)?.reshape((b, t, f, d))?;
            if self.skip_connection {
                store.push(x.clone());
            }
        }
        Ok(x)
    }
}

impl RunStack for AxialStack {
    fn forward(&self, x: Tensor) -> CResult<Tensor> {
        Module::forward(self, &x)
    }
}
