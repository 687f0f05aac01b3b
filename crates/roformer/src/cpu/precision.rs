//! How the CPU engine stores weights and multiplies matrices.

use std::fmt;
use std::str::FromStr;

/// Storage and arithmetic of the transformer's matrix products on the fused CPU engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// `f32` weights and products: the reference's numbers.
    #[default]
    F32,
    /// `bf16` weight storage (half the memory), widened to `f32` for the products.
    Bf16,
    /// `int8` weights (per output channel) and activations (per row), `i32` accumulation.
    Int8,
}

impl Precision {
    /// Every precision, in the order the CLI lists them.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// The name the CLI and configs use (`f32`, `bf16`, `int8`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision `{s}` (expected f32, bf16 or int8)"))
    }
}
