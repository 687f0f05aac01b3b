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
pub mod engine;
pub mod error;
pub mod loaded_model;
pub mod metrics;
pub mod model;
pub mod separate;
mod separator;
pub mod train;
pub mod weights;

pub use audio::Audio;
pub use candle_core::{Device, Tensor};
pub use cpu::Precision;
pub use error::{Error, Result};
pub use separate::EnsembleAlgorithm;
pub use separator::{
    CancelToken, Hooks, ModelInfo, Notice, Progress, Separator, SeparatorBuilder, Stems,
};
#[cfg(feature = "audio")]
pub use separator::{FileOptions, FileOutcome};
