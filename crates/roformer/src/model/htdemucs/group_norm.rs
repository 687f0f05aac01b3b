//! `nn.GroupNorm` on `[b, c, ...]`: statistics over each group of channels and every position,
//! population variance, `eps` 1e-5, then a per-channel affine map.

use candle_core::{Device, Result as CResult, Tensor, D};

use crate::error::Result;
use crate::weights::WeightsView;

const EPS: f64 = 1e-5;

#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub(crate) groups: usize,
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
}

impl GroupNorm {
    pub fn load(
        vb: &mut WeightsView<'_>,
        groups: usize,
        channels: usize,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            groups,
            weight: vb.take("weight", &[channels])?.to_device(device)?,
            bias: vb.take("bias", &[channels])?.to_device(device)?,
        })
    }

    /// `nn.GroupNorm(groups, channels)` when the layer has one (`groups` given), else `None`.
    pub fn load_if(
        vb: &mut WeightsView<'_>,
        groups: Option<usize>,
        channels: usize,
        device: &Device,
    ) -> Result<MaybeNorm> {
        groups
            .map(|g| Self::load(vb, g, channels, device))
            .transpose()
    }

    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let dims = x.dims().to_vec();
        let b = dims[0];
        let grouped = x.reshape((b, self.groups, ()))?;
        let mean = grouped.mean_keepdim(D::Minus1)?;
        let centred = grouped.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred
            .broadcast_div(&(var + EPS)?.sqrt()?)?
            .reshape(dims.as_slice())?;
        let mut shape = vec![1; dims.len()];
        shape[1] = dims[1];
        normed
            .broadcast_mul(&self.weight.reshape(shape.as_slice())?)?
            .broadcast_add(&self.bias.reshape(shape)?)
    }
}

/// `nn.GroupNorm(groups, c)` or, when the layer has none, the identity.
pub type MaybeNorm = Option<GroupNorm>;

pub fn apply(norm: &MaybeNorm, x: Tensor) -> CResult<Tensor> {
    match norm {
        Some(n) => n.forward(&x),
        None => Ok(x),
    }
}
