//! `FeedForward`: `RMSNorm -> Linear(dim, 4 dim) -> GELU (exact erf) -> Linear(4 dim, dim)`.

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::linear::Linear;
use super::rms_norm::RmsNorm;
use crate::error::Result;
use crate::weights::WeightsView;

/// MSST's `Transformer` always builds its feed-forward with `mult=4`.
const MULT: usize = 4;

#[derive(Debug, Clone)]
pub struct FeedForward {
    pub(crate) norm: RmsNorm,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

impl FeedForward {
    /// `vb` points at the `nn.Sequential` named `net`.
    pub fn load(vb: &mut WeightsView<'_>, dim: usize, device: &Device) -> Result<Self> {
        let mut net = vb.pp("net");
        Ok(Self {
            norm: RmsNorm::load(&mut net.pp("0"), dim, device)?,
            up: Linear::load(&mut net.pp("1"), dim, dim * MULT, true, device)?,
            down: Linear::load(&mut net.pp("4"), dim * MULT, dim, true, device)?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let h = self.up.forward(&self.norm.forward(x)?)?.gelu_erf()?;
        self.down.forward(&h)
    }
}
