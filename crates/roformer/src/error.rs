//! The library's error type: every failure names what went wrong and, where there is one, the file.

use std::path::PathBuf;

pub use crate::audio::AudioError;
pub use crate::bag::BagError;
pub use crate::weights::WeightsError;

/// The library's `Result`, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way the library can fail; the message names the file or the value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file cannot be read.
    #[error("cannot read config {path}: {source}")]
    ConfigIo {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config is not valid YAML of the expected form.
    #[error("config {path}: {message}")]
    ConfigParse {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The config parses but its values cannot describe a model.
    #[error("config {path}: {message}")]
    ConfigInvalid {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint that cannot be read, or does not fit the model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A compute device that cannot be opened: the name and why.
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
    /// A model feature or value this implementation does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A checkpoint of another architecture than its config describes.
    #[error("{0}")]
    ArchitectureMismatch(String),
    /// Training that cannot go on as configured.
    #[error("training: {0}")]
    Train(String),
    /// A checkpoint without an embedded config was opened without a config file.
    #[error(
        "{} carries no config: pass the model's YAML config with --config (or `config` in the API)",
        .model.display()
    )]
    MissingConfig {
        /// The weights file.
        model: PathBuf,
    },
    /// Chunk size, overlap or batch size that cannot separate.
    #[error("invalid chunking: {0}")]
    InvalidChunking(String),
    /// Audio with another channel count than the model takes.
    #[error("the model expects {expected} channel(s), the audio has {found}")]
    ChannelMismatch {
        /// What was expected.
        expected: usize,
        /// What was found.
        found: usize,
    },
    /// Audio at another sample rate than the model's, where it cannot be resampled.
    #[error("the model runs at {expected} Hz, the audio is at {found} Hz (resampling needs the `audio` feature)")]
    SampleRateMismatch {
        /// What was expected.
        expected: u32,
        /// What was found.
        found: u32,
    },
    /// Audio without samples, or with channels of different lengths.
    #[error("the audio is empty or its channels differ in length")]
    EmptyAudio,
    /// A streamed input that gave fewer frames than it announced.
    #[error("the audio ended after {read} of {expected} frames, or its channels differ in length")]
    TrackEnded {
        /// Frames read.
        read: usize,
        /// What was expected.
        expected: usize,
    },
    /// A bag of models that cannot be read or whose models do not fit together.
    #[error(transparent)]
    Bag(#[from] BagError),
    /// Models that cannot form an ensemble, or ensemble inputs that do not fit together.
    #[error("{0}")]
    Ensemble(String),
    /// An option value outside its range.
    #[error("{0}")]
    InvalidOption(String),
    /// A reduced precision where the fused CPU engine does not run.
    #[error("precision {precision} needs the fused CPU engine, but {reason}")]
    UnsupportedPrecision {
        /// The precision asked for.
        precision: crate::cpu::Precision,
        /// What is wrong.
        reason: &'static str,
    },
    /// The separation was stopped through its [`CancelToken`](crate::CancelToken).
    #[error("the separation was cancelled")]
    Cancelled,
    /// A file that cannot be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
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

/// `error`'s message followed by those of its sources, separated by `": "`: the whole story
/// in one line, as the CLI prints it.
///
/// ```
/// let err = roformer::Separator::builder("missing.ckpt").config("missing.yaml").open().unwrap_err();
/// assert!(roformer::error::full_message(&err).contains("missing"));
/// ```
pub fn full_message(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
