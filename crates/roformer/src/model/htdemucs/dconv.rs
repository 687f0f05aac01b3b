//! Demucs' `DConv`: residual branches of dilated convolutions inside each encoder and decoder
//! layer. Branch `d`: `Conv1d(c, c / compress, 3, dilation 2^d)`, `GroupNorm(1)`, GELU,
//! `Conv1d(.., 2c, 1)`, `GroupNorm(1)`, GLU, `LayerScale`; `x = x + branch(x)`.

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::Conv;
use super::glu::glu;
use super::group_norm::GroupNorm;
use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) conv: Conv,
    pub(crate) norm: GroupNorm,
    pub(crate) project: Conv,
    pub(crate) norm_out: GroupNorm,
    /// `LayerScale`: one factor per channel.
    pub(crate) scale: Tensor,
}

#[derive(Debug, Clone)]
pub struct DConv {
    pub(crate) branches: Vec<Branch>,
}

impl DConv {
    /// `vb` points at the layer's `dconv`.
    pub fn load(
        vb: &mut WeightsView<'_>,
        channels: usize,
        hidden: usize,
        depth: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut layers = vb.pp("layers");
        let branches = (0..depth)
            .map(|d| {
                let mut l = layers.pp(d);
                let dilation = 1 << d;
                Ok(Branch {
                    conv: Conv::time(
                        &mut l.pp(0),
                        channels,
                        hidden,
                        3,
                        1,
                        dilation,
                        dilation,
                        device,
                    )?,
                    norm: GroupNorm::load(&mut l.pp(1), 1, hidden, device)?,
                    project: Conv::time(&mut l.pp(3), hidden, 2 * channels, 1, 1, 0, 1, device)?,
                    norm_out: GroupNorm::load(&mut l.pp(4), 1, 2 * channels, device)?,
                    scale: l
                        .pp(6)
                        .take("scale", &[channels])?
                        .to_device(device)?
                        .reshape((channels, 1))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { branches })
    }

    /// The layer's `dconv` when `enabled`, with HT Demucs' compression and depth.
    pub fn load_if(
        vb: &mut WeightsView<'_>,
        enabled: bool,
        channels: usize,
        config: &super::HtDemucsConfig,
        device: &Device,
    ) -> Result<Option<Self>> {
        enabled
            .then(|| {
                Self::load(
                    &mut vb.pp("dconv"),
                    channels,
                    config.dconv_hidden(channels),
                    config.dconv_depth as usize,
                    device,
                )
            })
            .transpose()
    }

    /// On a layer's activations: `[b, c, f, t]` (every frequency its own sequence) when
    /// `freq`, else `[b, c, t]`.
    pub fn forward_layer(&self, y: &Tensor, freq: bool) -> CResult<Tensor> {
        if freq {
            self.forward_freq(y)
        } else {
            self.forward(y)
        }
    }

    /// `x`: `[b, c, t]`.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut x = x.clone();
        for b in &self.branches {
            let h = b.norm.forward(&b.conv.forward(&x)?)?.gelu_erf()?;
            let h = glu(&b.norm_out.forward(&b.project.forward(&h)?)?)?;
            x = (x + h.broadcast_mul(&b.scale)?)?;
        }
        Ok(x)
    }

    /// On `[b, c, f, t]`: every frequency is its own sequence, as `HEncLayer` runs it.
    fn forward_freq(&self, y: &Tensor) -> CResult<Tensor> {
        let (b, c, f, t) = y.dims4()?;
        let rows = y
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((b * f, c, t))?;
        self.forward(&rows)?
            .reshape((b, f, c, t))?
            .permute((0, 2, 1, 3))?
            .contiguous()
    }
}
