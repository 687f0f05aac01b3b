//! `F.glu(x, dim=1)`, the gate of every rewrite and DConv layer.

use candle_core::{Result as CResult, Tensor};

/// The first half of the channels times the sigmoid of the second half.
pub fn glu(x: &Tensor) -> CResult<Tensor> {
    let c = x.dim(1)? / 2;
    let a = x.narrow(1, 0, c)?;
    let gate = x.narrow(1, c, c)?;
    a * candle_nn::ops::sigmoid(&gate)?
}
