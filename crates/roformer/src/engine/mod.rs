//! Which implementation runs a network, chosen once when a model is opened.
//!
//! The parameter structs in [`crate::model`] hold the weights and the reference forward; this
//! module decides whether the reference runs them (any device, the path training and the GPU
//! backends use) or the fused CPU engine of [`crate::cpu`] (f32, bf16 or int8 products), and
//! refuses combinations that cannot run. A new backend is one [`Engine`] arm here plus its
//! implementation of the traits in [`crate::model::backend`].

use std::fmt;

use candle_core::Device;

use crate::cpu::mask_estimator::FusedMaskEstimators;
use crate::cpu::transformer::FusedAxialStack;
use crate::cpu::Precision;
use crate::error::{Error, Result};
use crate::model::backend::{self, Backend, RunMaskHeads, RunStack};
use crate::model::mask_estimator::MaskHeads;
use crate::model::transformer::AxialStack;

/// The implementation that runs a network's transformer stack and mask heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Framework (candle) ops on the model's device, in `f32`.
    Reference,
    /// The fused CPU engine, with its matrix products at this precision.
    FusedCpu(Precision),
}

impl Engine {
    /// The engine for a model on `device`: the fused CPU engine on the CPU, the reference
    /// elsewhere or when `reference` is asked for. Only the fused engine has reduced
    /// precisions, so asking for one anywhere else is an [`Error::UnsupportedPrecision`].
    pub fn select(device: &Device, reference: bool, precision: Precision) -> Result<Self> {
        let engine = match device {
            Device::Cpu if !reference => Engine::FusedCpu(precision),
            _ => Engine::Reference,
        };
        if engine == Engine::Reference && precision != Precision::F32 {
            return Err(Error::UnsupportedPrecision {
                precision,
                reason: if reference {
                    "the reference engine was asked for"
                } else {
                    "the device is not the CPU"
                },
            });
        }
        Ok(engine)
    }

    /// The default engine on `device` (full precision; never refused).
    pub fn default_for(device: &Device) -> Self {
        match device {
            Device::Cpu => Engine::FusedCpu(Precision::F32),
            _ => Engine::Reference,
        }
    }

    /// The precision of the matrix products.
    pub fn precision(self) -> Precision {
        match self {
            Engine::Reference => Precision::F32,
            Engine::FusedCpu(p) => p,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Reference => f.write_str("reference engine"),
            Engine::FusedCpu(p) => write!(f, "fused CPU engine, {p}"),
        }
    }
}

impl Backend for Engine {
    fn stack(&self, stack: AxialStack) -> Result<Box<dyn RunStack>> {
        match *self {
            Engine::Reference => backend::Reference.stack(stack),
            Engine::FusedCpu(p) => Ok(Box::new(FusedAxialStack::new(stack, p)?)),
        }
    }

    fn mask_heads(&self, heads: MaskHeads) -> Result<Box<dyn RunMaskHeads>> {
        match *self {
            Engine::Reference => backend::Reference.mask_heads(heads),
            Engine::FusedCpu(p) => Ok(Box::new(FusedMaskEstimators::new(heads, p)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_precision_needs_the_fused_cpu_engine() {
        let cpu = Device::Cpu;
        assert_eq!(
            Engine::select(&cpu, false, Precision::Int8).unwrap(),
            Engine::FusedCpu(Precision::Int8)
        );
        assert_eq!(
            Engine::select(&cpu, true, Precision::F32).unwrap(),
            Engine::Reference
        );
        for precision in [Precision::Bf16, Precision::Int8] {
            let err = Engine::select(&cpu, true, precision).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedPrecision { precision: p, .. } if p == precision),
                "{err}"
            );
        }
    }
}
