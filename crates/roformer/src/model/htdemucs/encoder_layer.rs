//! Demucs' `HEncLayer`, for both branches: a strided convolution (along frequency in the
//! spectrogram branch, along time in the waveform branch), then GroupNorm (from `norm_starts`)
//! + GELU, the DConv residual branch, and a 1x1 "rewrite" convolution with GLU.

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::Conv;
use super::dconv::DConv;
use super::glu::glu;
use super::group_norm::{self, GroupNorm, MaybeNorm};
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
    freq: bool,
    stride: usize,
    conv: Conv,
    /// `None` for an `empty` layer.
    body: Option<Body>,
}

#[derive(Debug, Clone)]
struct Body {
    norm1: MaybeNorm,
    dconv: Option<DConv>,
    rewrite: Option<(Conv, MaybeNorm)>,
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
        let norm = |vb: &mut WeightsView<'_>, c: usize| -> Result<MaybeNorm> {
            spec.norm
                .then(|| GroupNorm::load(vb, config.norm_groups, c, device))
                .transpose()
        };
        let norm1 = norm(&mut vb.pp("norm1"), cout)?;
        let rewrite = if config.rewrite {
            let ctx = config.context_enc;
            let conv = if freq {
                Conv::square(
                    &mut vb.pp("rewrite"),
                    cout,
                    2 * cout,
                    1 + 2 * ctx,
                    ctx,
                    device,
                )?
            } else {
                Conv::time(
                    &mut vb.pp("rewrite"),
                    cout,
                    2 * cout,
                    1 + 2 * ctx,
                    1,
                    ctx,
                    1,
                    device,
                )?
            };
            Some((conv, norm(&mut vb.pp("norm2"), 2 * cout)?))
        } else {
            None
        };
        let dconv = spec
            .dconv
            .then(|| {
                DConv::load(
                    &mut vb.pp("dconv"),
                    cout,
                    config.dconv_hidden(cout),
                    config.dconv_depth as usize,
                    device,
                )
            })
            .transpose()?;
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
            y = if self.freq {
                dconv.forward_freq(&y)?
            } else {
                dconv.forward(&y)?
            };
        }
        match &body.rewrite {
            Some((conv, norm)) => glu(&group_norm::apply(norm, conv.forward(&y)?)?),
            None => Ok(y),
        }
    }
}
