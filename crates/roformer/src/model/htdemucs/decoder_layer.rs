//! Demucs' `HDecLayer`, for both branches: skip connection added, the context "rewrite"
//! convolution with GLU (3x3 in the spectrogram branch with `context` 1), the DConv residual
//! branch, then a transposed convolution whose padding is trimmed, GroupNorm and GELU (but
//! for the last layer).

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::ConvTranspose;
use super::dconv::DConv;
use super::group_norm::{self, GroupNorm, MaybeNorm};
use super::rewrite::Rewrite;
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
    pub(crate) freq: bool,
    pub(crate) pad: usize,
    pub(crate) last: bool,
    pub(crate) conv_tr: ConvTranspose,
    pub(crate) norm2: MaybeNorm,
    /// `None` for an `empty` layer.
    pub(crate) body: Option<Body>,
}

#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) dconv: Option<DConv>,
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
        let groups = spec.norm.then_some(config.norm_groups);
        let conv_tr = ConvTranspose::load(
            &mut vb.pp("conv_tr"),
            cin,
            cout,
            spec.kernel,
            spec.stride,
            freq,
            device,
        )?;
        let norm2 = GroupNorm::load_if(&mut vb.pp("norm2"), groups, cout, device)?;
        let body = if spec.empty {
            None
        } else {
            let rewrite = config
                .rewrite
                .then(|| Rewrite::load(vb, "norm1", freq, cin, config.context, groups, device))
                .transpose()?;
            let dconv = DConv::load_if(vb, spec.dconv, cin, config, device)?;
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
                    Some(rewrite) => rewrite.forward(&x)?,
                    None => x,
                };
                if let Some(dconv) = &body.dconv {
                    y = dconv.forward_layer(&y, self.freq)?;
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
