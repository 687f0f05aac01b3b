//! `nn.Linear` with the PyTorch `[out, in]` weight layout.

use candle_core::{Device, Module, Result as CResult, Tensor};

use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    pub fn load(
        vb: &mut WeightsView<'_>,
        dim_in: usize,
        dim_out: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let weight = vb.take("weight", &[dim_out, dim_in])?.to_device(device)?;
        let bias = if bias {
            Some(vb.take("bias", &[dim_out])?.to_device(device)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    pub fn dim_out(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Projects `[b, n, dim]` and splits the output into `[b, n, groups, heads, dim_head]`
    /// (the `(qkv h d)` layout of the attention projections).
    pub fn forward_heads(&self, x: &Tensor, groups: usize, heads: usize) -> CResult<Tensor> {
        let (b, n, _) = x.dims3()?;
        let dim_head = self.dim_out() / (groups * heads);
        self.forward(x)?.reshape((b, n, groups, heads, dim_head))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        // Flatten leading dims into one matrix: one large matmul instead of a batched loop.
        let dims = x.dims();
        let (lead, dim_in) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, dim_in[0]))?;
        let mut y = x2.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_shape = lead.to_vec();
        out_shape.push(self.dim_out());
        y.reshape(out_shape)
    }
}
