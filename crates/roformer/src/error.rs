//! The library's error type: every failure names what went wrong and, where there is one, the file.

use std::path::PathBuf;

use crate::audio::AudioError;
use crate::weights::WeightsError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config {path}: {source}")]
    ConfigIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    ConfigParse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    ConfigInvalid { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("device `{0}` is not available: {1}")]
    Device(String, String),
    /// Audio that cannot be read, converted or written, or a signal of the wrong shape.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// A training dataset that cannot be read or sampled as asked.
    #[error("training data: {0}")]
    Data(String),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    ArchitectureMismatch(String),
    #[error("training: {0}")]
    Train(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
