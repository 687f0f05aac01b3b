//! MSST's `RMSNorm`: `F.normalize(x, dim=-1) * sqrt(dim) * gamma`.
//!
//! That is an L2 normalisation, equal to `x / sqrt(mean(x^2)) * gamma`; we use the fused RMS kernel
//! with a vanishing epsilon so an all-zero vector stays zero, as `F.normalize` keeps it.

use candle_core::{Device, Module, Result as CResult, Tensor};

use crate::error::Result;
use crate::weights::WeightsView;

const EPS: f32 = 1e-30;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub(crate) gamma: Tensor,
}

impl RmsNorm {
    pub fn load(vb: &mut WeightsView<'_>, dim: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            gamma: vb.take("gamma", &[dim])?.to_device(device)?,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if x.track_op() || self.gamma.track_op() {
            // Training: the fused kernel has no backward pass; the same formula in plain ops has.
            candle_nn::ops::rms_norm_slow(x, &self.gamma, EPS)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.gamma, EPS)
        }
    }
}
