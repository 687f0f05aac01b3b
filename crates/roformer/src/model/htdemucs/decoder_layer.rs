//! Demucs' `HDecLayer`, for both branches: skip connection added, the context "rewrite"
//! convolution with GLU (3x3 in the spectrogram branch with `context` 1), the DConv residual
//! branch, then a transposed convolution whose padding is trimmed, GroupNorm and GELU (but
//! for the last layer).

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::{Conv, ConvTranspose};
use super::dconv::DConv;
use super::glu::glu;
use super::group_norm::{self, GroupNorm, MaybeNorm};
use crate::error::Result;
use crate::weights::WeightsView;

/// What one decoder layer is made of.
#[derive(Debug, Clone, Copy)]
pub struct DecoderSpec {
    pub freq: bool,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub norm: bool,
    /// No skip, rewrite or DConv: the time layer fed by the merged branch.
    pub empty: bool,
    pub dconv: bool,
    /// The output layer: no GELU.
    pub last: bool,
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    freq: bool,
    pad: usize,
    last: bool,
    conv_tr: ConvTranspose,
    norm2: MaybeNorm,
    /// `None` for an `empty` layer.
    body: Option<Body>,
}

#[derive(Debug, Clone)]
struct Body {
    rewrite: Option<(Conv, MaybeNorm)>,
    dconv: Option<DConv>,
}

impl DecoderLayer {
    pub fn load(
        vb: &mut WeightsView<'_>,
        spec: DecoderSpec,
        config: &super::HtDemucsConfig,
        device: &Device,
    ) -> Result<Self> {
        let DecoderSpec {
            freq, cin, cout, ..
        } = spec;
        let norm = |vb: &mut WeightsView<'_>, c: usize| -> Result<MaybeNorm> {
            spec.norm
                .then(|| GroupNorm::load(vb, config.norm_groups, c, device))
                .transpose()
        };
        let conv_tr = ConvTranspose::load(
            &mut vb.pp("conv_tr"),
            cin,
            cout,
            spec.kernel,
            spec.stride,
            freq,
            device,
        )?;
        let norm2 = norm(&mut vb.pp("norm2"), cout)?;
        let body = if spec.empty {
            None
        } else {
            let rewrite = if config.rewrite {
                let ctx = config.context;
                let conv = if freq {
                    Conv::square(
                        &mut vb.pp("rewrite"),
                        cin,
                        2 * cin,
                        1 + 2 * ctx,
                        ctx,
                        device,
                    )?
                } else {
                    Conv::time(
                        &mut vb.pp("rewrite"),
                        cin,
                        2 * cin,
                        1 + 2 * ctx,
                        1,
                        ctx,
                        1,
                        device,
                    )?
                };
                Some((conv, norm(&mut vb.pp("norm1"), 2 * cin)?))
            } else {
                None
            };
            let dconv = spec
                .dconv
                .then(|| {
                    DConv::load(
                        &mut vb.pp("dconv"),
                        cin,
                        config.dconv_hidden(cin),
                        config.dconv_depth as usize,
                        device,
                    )
                })
                .transpose()?;
            Some(Body { rewrite, dconv })
        };
        Ok(Self {
            freq,
            pad: spec.pad,
            last: spec.last,
            conv_tr,
            norm2,
            body,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_none()
    }

    /// Returns the layer's output and `pre`, its input to the transposed convolution (which
    /// feeds the time branch where the branches separate). `length`: the time length to trim
    /// a time layer's output to.
    pub fn forward(
        &self,
        x: &Tensor,
        skip: Option<&Tensor>,
        length: usize,
    ) -> CResult<(Tensor, Tensor)> {
        let y = match (&self.body, skip) {
            (Some(body), Some(skip)) => {
                let x = (x + skip)?;
                let mut y = match &body.rewrite {
                    Some((conv, norm)) => glu(&group_norm::apply(norm, conv.forward(&x)?)?)?,
                    None => x,
                };
                if let Some(dconv) = &body.dconv {
                    y = if self.freq {
                        dconv.forward_freq(&y)?
                    } else {
                        dconv.forward(&y)?
                    };
                }
                y
            }
            (None, None) => x.clone(),
            _ => candle_core::bail!("an HT Demucs decoder layer got a skip it does not take"),
        };
        let z = group_norm::apply(&self.norm2, self.conv_tr.forward(&y)?)?;
        let z = if self.freq {
            let f = z.dim(2)?;
            z.narrow(2, self.pad, f - 2 * self.pad)?
        } else {
            z.narrow(2, self.pad, length)?
        };
        let z = if self.last { z } else { z.gelu_erf()? };
        Ok((z, y))
    }
}
