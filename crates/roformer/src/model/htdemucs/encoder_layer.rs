//! Demucs' `HEncLayer`, for both branches: a strided convolution (along frequency in the
//! spectrogram branch, along time in the waveform branch), then GroupNorm (from `norm_starts`)
//! + GELU, the DConv residual branch, and a 1x1 "rewrite" convolution with GLU.

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::Conv;
use super::dconv::DConv;
use super::group_norm::{self, GroupNorm, MaybeNorm};
use super::rewrite::Rewrite;
use crate::error::Result;
use crate::weights::WeightsView;

/// What one encoder layer is made of.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSpec {
    pub freq: bool,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub norm: bool,
    /// Only the first convolution (the time layer that feeds the merged branch).
    pub empty: bool,
    pub dconv: bool,
}

#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub(crate) freq: bool,
    pub(crate) stride: usize,
    pub(crate) conv: Conv,
    /// `None` for an `empty` layer.
    pub(crate) body: Option<Body>,
}

#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) norm1: MaybeNorm,
    pub(crate) dconv: Option<DConv>,
    pub(crate) rewrite: Option<Rewrite>,
}

impl EncoderLayer {
    pub fn load(
        vb: &mut WeightsView<'_>,
        spec: EncoderSpec,
        config: &super::HtDemucsConfig,
        device: &Device,
    ) -> Result<Self> {
        let EncoderSpec {
            freq,
            cin,
            cout,
            kernel,
            stride,
            pad,
            ..
        } = spec;
        let conv = if freq {
            Conv::freq(&mut vb.pp("conv"), cin, cout, kernel, stride, pad, device)?
        } else {
            Conv::time(
                &mut vb.pp("conv"),
                cin,
                cout,
                kernel,
                stride,
                pad,
                1,
                device,
            )?
        };
        if spec.empty {
            return Ok(Self {
                freq,
                stride,
                conv,
                body: None,
            });
        }
        let groups = spec.norm.then_some(config.norm_groups);
        let norm1 = GroupNorm::load_if(&mut vb.pp("norm1"), groups, cout, device)?;
        let rewrite = config
            .rewrite
            .then(|| Rewrite::load(vb, "norm2", freq, cout, config.context_enc, groups, device))
            .transpose()?;
        let dconv = DConv::load_if(vb, spec.dconv, cout, config, device)?;
        Ok(Self {
            freq,
            stride,
            conv,
            body: Some(Body {
                norm1,
                dconv,
                rewrite,
            }),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_none()
    }

    /// `x`: `[b, c, f, t]` (frequency) or `[b, c, t]` (time). `inject`: the time branch's
    /// output added after the convolution where the branches merge.
    pub fn forward(&self, x: &Tensor, inject: Option<&Tensor>) -> CResult<Tensor> {
        let mut x = x.clone();
        if !self.freq {
            // The time convolution sees a length padded up to a multiple of its stride.
            let le = x.dim(2)?;
            if !le.is_multiple_of(self.stride) {
                x = x.pad_with_zeros(2, 0, self.stride - le % self.stride)?;
            }
        }
        let mut y = self.conv.forward(&x)?;
        let Some(body) = &self.body else {
            return Ok(y);
        };
        if let Some(inject) = inject {
            let inject = if inject.rank() == 3 && y.rank() == 4 {
                inject.unsqueeze(2)?
            } else {
                inject.clone()
            };
            y = y.broadcast_add(&inject)?;
        }
        let mut y = group_norm::apply(&body.norm1, y)?.gelu_erf()?;
        if let Some(dconv) = &body.dconv {
            y = dconv.forward_layer(&y, self.freq)?;
        }
        match &body.rewrite {
            Some(rewrite) => rewrite.forward(&y),
            None => Ok(y),
        }
    }
}
