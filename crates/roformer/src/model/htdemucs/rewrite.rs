//! The "rewrite" of HT Demucs' encoder and decoder layers: a convolution to twice the channels
//! (1x1, or with `context` steps each side: 3x3 in the spectrogram branch), GroupNorm (from
//! `norm_starts`), then GLU back to the channels.

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::Conv;
use super::glu::glu;
use super::group_norm::{self, GroupNorm, MaybeNorm};
use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug, Clone)]
pub struct Rewrite {
    pub(crate) conv: Conv,
    pub(crate) norm: MaybeNorm,
}

impl Rewrite {
    /// `vb` points at the layer; the convolution is `rewrite`, the norm `norm_name`.
    pub fn load(
        vb: &mut WeightsView<'_>,
        norm_name: &str,
        freq: bool,
        channels: usize,
        context: usize,
        norm: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        let (c, k) = (channels, 1 + 2 * context);
        let mut at = vb.pp("rewrite");
        let conv = if freq {
            Conv::square(&mut at, c, 2 * c, k, context, device)?
        } else {
            Conv::time(&mut at, c, 2 * c, k, 1, context, 1, device)?
        };
        Ok(Self {
            conv,
            norm: GroupNorm::load_if(&mut vb.pp(norm_name), norm, 2 * c, device)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        glu(&group_norm::apply(&self.norm, self.conv.forward(x)?)?)
    }
}
