//! roformer: music source separation with BS-RoFormer and Mel-Band RoFormer, compatible with
//! the checkpoints and YAML configs of ZFTurbo's Music-Source-Separation-Training (MSST).
//!
//! [`Separator`] is the front door: it loads a model (or an ensemble of models) once and
//! separates audio with it, in memory ([`Separator::separate`] on an [`Audio`], giving named
//! [`Stems`]) or file to files with flat memory ([`Separator::separate_file`]), with progress,
//! notices and cancellation through [`Hooks`]. One `Separator` can serve several threads at once.
//! The `roformer` binary (crate `roformer-cli`), `eval` and the Python package all go through it,
//! so its behaviour is MSST's inference whoever calls it.
//!
//! ```no_run
//! # fn main() -> roformer::Result<()> {
//! use roformer::{FileOptions, Hooks, Separator};
//!
//! let separator = Separator::builder("model_bs_roformer.ckpt")
//!     .config("model_bs_roformer.yaml")
//!     .open()?;
//! println!("{} Hz, stems {:?}", separator.sample_rate(), separator.stems());
//! let song = std::path::Path::new("song.flac");
//! separator.separate_file(song, "out".as_ref(), &FileOptions::default(), &mut Hooks::new())?;
//! # Ok(())
//! # }
//! ```
//!
//! [`audio`] decodes, resamples, adapts channels and writes WAV/FLAC (cargo feature `audio`, on
//! by default); [`error`] holds the typed errors. The `internals` feature makes the building
//! blocks (model, kernels, checkpoints, training, metrics) public for the CLI and the tests;
//! they are not a stable API.

#![cfg_attr(not(feature = "internals"), warn(missing_docs))]

/// Declares modules that are public with the `internals` feature and crate-private without it.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        pub mod $name;
        // Without `internals`, code (and re-exports) that only the CLI and the tests use is
        // unused here.
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        pub(crate) mod $name;
    )*};
}

internal_modules!(
    atomic_file,
    bag,
    config,
    cpu,
    device,
    dsp,
    engine,
    loaded_model,
    metrics,
    model,
    separate,
    train,
    weights,
);
#[cfg(feature = "audio")]
internal_modules!(evaluation);

pub mod audio;
pub mod error;
mod separator;

pub use audio::Audio;
#[cfg(feature = "internals")]
pub use candle_core::{Device, Tensor};
pub use cpu::Precision;
pub use error::{Error, Result};
pub use separate::EnsembleAlgorithm;
pub use separator::{
    CancelToken, Hooks, ModelInfo, Notice, Progress, Separator, SeparatorBuilder, Stems,
};
#[cfg(feature = "audio")]
pub use separator::{FileOptions, FileOutcome};
