//! The fused CPU engine: the transformer stacks on plain `f32` buffers with our own kernels
//! (row-tiled matmuls through `gemm`, blocked attention, fused norms and activations), and
//! quantised matrix products. The candle path in [`crate::model`] stays the reference it is
//! tested against.

pub(crate) mod attention;
pub mod gemm;
pub mod htdemucs;
pub mod int8;
pub(crate) mod kernels;
pub mod mask_estimator;
pub mod precision;
mod simd;
pub mod transformer;
pub mod weight;

pub use precision::Precision;
pub use weight::Weight;
