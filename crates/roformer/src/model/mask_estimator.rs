//! `MaskEstimator`: per band an MLP `dim -> hidden -> ... -> 2 * dim_in` with tanh between layers,
//! then a GLU back to `dim_in`; the band masks are concatenated along the feature axis.

use candle_core::{Device, Module, Result as CResult, Tensor, D};

use super::backend::RunMaskHeads;
use super::linear::Linear;
use crate::error::Result;
use crate::weights::WeightsView;

/// How many Linear layers an MLP of a given `depth` has differs between the two models:
/// BS-RoFormer's `MLP` builds `depth` Linears, Mel-Band RoFormer's builds `depth + 1`.
#[derive(Debug, Clone, Copy)]
pub struct MlpShape {
    pub dim: usize,
    pub hidden: usize,
    pub linears: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct BandMlp {
    pub(crate) layers: Vec<Linear>,
}

impl BandMlp {
    fn load(
        vb: &mut WeightsView<'_>,
        shape: MlpShape,
        dim_in: usize,
        device: &Device,
    ) -> Result<Self> {
        // Sequential(MLP, GLU): the MLP is child 0; its Linears sit at even indices (tanh between).
        let mut mlp = vb.pp("0");
        let mut layers = Vec::with_capacity(shape.linears);
        for l in 0..shape.linears {
            let d_in = if l == 0 { shape.dim } else { shape.hidden };
            let d_out = if l + 1 == shape.linears {
                dim_in * 2
            } else {
                shape.hidden
            };
            layers.push(Linear::load(&mut mlp.pp(2 * l), d_in, d_out, true, device)?);
        }
        Ok(Self { layers })
    }
}

impl Module for BandMlp {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let mut h = x.clone();
        for (l, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if l + 1 < self.layers.len() {
                h = h.tanh()?;
            }
        }
        // GLU over the last dim: first half * sigmoid(second half).
        let half = h.dim(D::Minus1)? / 2;
        let a = h.narrow(D::Minus1, 0, half)?;
        let g = h.narrow(D::Minus1, half, half)?;
        a * candle_nn::ops::sigmoid(&g)?
    }
}

#[derive(Debug, Clone)]
pub struct MaskEstimator {
    pub(crate) bands: Vec<BandMlp>,
}

impl MaskEstimator {
    pub fn load(
        vb: &mut WeightsView<'_>,
        shape: MlpShape,
        dim_inputs: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let mut to_freqs = vb.pp("to_freqs");
        let bands = dim_inputs
            .iter()
            .enumerate()
            .map(|(i, &dim_in)| BandMlp::load(&mut to_freqs.pp(i), shape, dim_in, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { bands })
    }
}

impl Module for MaskEstimator {
    /// `x: [b, t, bands, dim]` -> `[b, t, sum(dim_inputs)]`.
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let outs = self
            .bands
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(&x.narrow(2, i, 1)?.squeeze(2)?))
            .collect::<CResult<Vec<_>>>()?;
        Tensor::cat(&outs, D::Minus1)
    }
}

/// Every stem's estimator: the reference mask heads.
#[derive(Debug, Clone)]
pub struct MaskHeads(pub(crate) Vec<MaskEstimator>);

impl MaskHeads {
    /// One estimator per stem, from `mask_estimators.<stem>` under `vb`.
    pub fn load(
        vb: &mut WeightsView<'_>,
        stems: usize,
        shape: MlpShape,
        dim_inputs: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let mut estimators = vb.pp("mask_estimators");
        (0..stems)
            .map(|s| MaskEstimator::load(&mut estimators.pp(s), shape, dim_inputs, device))
            .collect::<Result<Vec<_>>>()
            .map(Self)
    }
}

impl RunMaskHeads for MaskHeads {
    fn forward(&self, x: Tensor) -> CResult<Tensor> {
        let masks = self
            .0
            .iter()
            .map(|m| m.forward(&x))
            .collect::<CResult<Vec<_>>>()?;
        Tensor::stack(&masks, 1)
    }
}
