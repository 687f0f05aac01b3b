//! The seam between a network's parameters and what runs its two heavy parts (the axial
//! transformer stack and the mask heads). Model code loads the parameters and owns the reference
//! forward; a [`Backend`] may convert them once, at load time, into a faster form. The model
//! code never names an implementation: [`crate::engine`] chooses one.

use std::fmt;

use candle_core::{Result as CResult, Tensor};

use super::mask_estimator::MaskHeads;
use super::transformer::AxialStack;
use crate::error::Result;

/// Runs an axial stack: `x: [b, t, bands, dim]` -> same shape (consumed, so an implementation
/// can reuse or free its buffer).
pub trait RunStack: fmt::Debug + Send + Sync {
    fn forward(&self, x: Tensor) -> CResult<Tensor>;
}

/// Runs every stem's mask estimator: `x: [b, t, bands, dim]` -> masks
/// `[b, stems, t, sum(dim_inputs)]`.
pub trait RunMaskHeads: fmt::Debug + Send + Sync {
    fn forward(&self, x: Tensor) -> CResult<Tensor>;
}

/// Turns freshly loaded parameters into what runs them.
pub trait Backend {
    fn stack(&self, stack: AxialStack) -> Result<Box<dyn RunStack>>;
    fn mask_heads(&self, heads: MaskHeads) -> Result<Box<dyn RunMaskHeads>>;
}

/// The parameters run as they are, with framework ops on the model's device: differentiable
/// (what training uses) and the reference every faster implementation is tested against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference;

impl Backend for Reference {
    fn stack(&self, stack: AxialStack) -> Result<Box<dyn RunStack>> {
        Ok(Box::new(stack))
    }

    fn mask_heads(&self, heads: MaskHeads) -> Result<Box<dyn RunMaskHeads>> {
        Ok(Box::new(heads))
    }
}
