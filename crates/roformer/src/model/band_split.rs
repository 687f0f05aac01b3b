//! `BandSplit`: each band's slice of the packed spectrogram goes through `RMSNorm -> Linear(-> dim)`;
//! the band features are stacked into `[b, t, bands, dim]`.

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::linear::Linear;
use super::rms_norm::RmsNorm;
use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug, Clone)]
pub struct BandSplit {
    /// Input width of each band (`2 * freqs * channels`), in order.
    dim_inputs: Vec<usize>,
    nets: Vec<(RmsNorm, Linear)>,
}

impl BandSplit {
    pub fn load(
        vb: &mut WeightsView<'_>,
        dim: usize,
        dim_inputs: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let mut to_features = vb.pp("to_features");
        let mut nets = Vec::with_capacity(dim_inputs.len());
        for (i, &dim_in) in dim_inputs.iter().enumerate() {
            let mut band = to_features.pp(i);
            let norm = RmsNorm::load(&mut band.pp("0"), dim_in, device)?;
            let linear = Linear::load(&mut band.pp("1"), dim_in, dim, true, device)?;
            nets.push((norm, linear));
        }
        Ok(Self {
            dim_inputs: dim_inputs.to_vec(),
            nets,
        })
    }
}

impl Module for BandSplit {
    /// `x: [b, t, sum(dim_inputs)]` -> `[b, t, bands, dim]`.
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut offset = 0;
        let mut outs = Vec::with_capacity(self.nets.len());
        for ((norm, linear), &width) in self.nets.iter().zip(&self.dim_inputs) {
            let band = x.narrow(2, offset, width)?;
            outs.push(linear.forward(&norm.forward(&band)?)?);
            offset += width;
        }
        Tensor::stack(&outs, 2)
    }
}
