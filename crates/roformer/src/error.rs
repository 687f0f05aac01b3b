//! The library's error type: every failure names what went wrong and, where there is one, the file.

use std::path::PathBuf;

pub use crate::audio::AudioError;
pub use crate::weights::WeightsError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way the library can fail; the message names the file or the value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A failure inside the tensor framework (out of memory on a GPU, an unsupported op, ...).
    #[error("tensor computation failed: {0}")]
    Tensor(#[source] TensorError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    ArchitectureMismatch(String),
    #[error("training: {0}")]
    Train(String),
    /// A checkpoint without an embedded config was opened without a config file.
    #[error(
        "{} carries no config: pass the model's YAML config with --config (or `config` in the API)",
        .model.display()
    )]
    MissingConfig { model: PathBuf },
    /// Chunk size, overlap or batch size that cannot separate.
    #[error("invalid chunking: {0}")]
    InvalidChunking(String),
    /// Audio with another channel count than the model takes.
    #[error("the model expects {expected} channel(s), the audio has {found}")]
    ChannelMismatch { expected: usize, found: usize },
    /// Audio at another sample rate than the model's, where it cannot be resampled.
    #[error("the model runs at {expected} Hz, the audio is at {found} Hz (resampling needs the `audio` feature)")]
    SampleRateMismatch { expected: u32, found: u32 },
    /// Audio without samples, or with channels of different lengths.
    #[error("the audio is empty or its channels differ in length")]
    EmptyAudio,
    /// A streamed input that gave fewer frames than it announced.
    #[error("the audio ended after {read} of {expected} frames, or its channels differ in length")]
    TrackEnded { read: usize, expected: usize },
    /// Models that cannot form an ensemble, or ensemble inputs that do not fit together.
    #[error("{0}")]
    Ensemble(String),
    /// An option value outside its range.
    #[error("{0}")]
    InvalidOption(String),
    /// A reduced precision where the fused CPU engine does not run.
    #[error("precision {precision} needs the fused CPU engine, but {reason}")]
    UnsupportedPrecision {
        precision: crate::cpu::Precision,
        reason: &'static str,
    },
    /// The separation was stopped through its [`CancelToken`](crate::CancelToken).
    #[error("the separation was cancelled")]
    Cancelled,
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The tensor framework's error, kept opaque so that the framework is not part of the API.
#[derive(Debug)]
pub struct TensorError(candle_core::Error);

impl std::fmt::Display for TensorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TensorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Tensor(TensorError(e))
    }
}
