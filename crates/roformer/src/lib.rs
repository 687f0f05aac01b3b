//! roformer: music source separation with BS-RoFormer, compatible with the checkpoints and YAML
//! configs of ZFTurbo's Music-Source-Separation-Training (MSST).
//!
//! The library has no terminal code: the `roformer` binary (crate `roformer-cli`) sits on top.

pub mod atomic_file;
pub mod audio;
pub mod config;
pub mod cpu;
pub mod device;
pub mod dsp;
pub mod error;
pub mod metrics;
pub mod model;
pub mod separate;
pub mod train;
pub mod weights;

pub use candle_core::{Device, Tensor};
pub use error::{Error, Result};
