//! The error type of [`roformer::audio`](super).

use std::io;
use std::path::PathBuf;

/// What went wrong reading, converting or writing audio; every variant about a file names it.
///
/// The message ([`Display`](std::fmt::Display)) is the outermost one; the underlying cause, where
/// there is one (the operating system's error, or the error inside [`AudioError::Write`]), is its
/// [`source`](std::error::Error::source). Print the whole chain (e.g. anyhow's `{:#}`) to see
/// both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The file cannot be opened: it does not exist, is not readable or is a directory.
    #[error("cannot open {}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not audio, or its container has no audio track.
    #[error("{} is not a supported audio file: {reason}", .path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Why (the demuxer's message).
        reason: String,
    },
    /// The file's audio track uses a codec that cannot be decoded.
    #[error("{} is not a supported audio file (unsupported codec): {reason}", .path.display())]
    UnsupportedCodec {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The file's stream is corrupt before any audio could be decoded.
    #[error("{} is corrupt: {reason}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Decoding failed in a way that skipping a packet cannot mend (e.g. the stream changes its
    /// sample rate or channel count part way).
    #[error("cannot decode {}: {reason}", .path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file decodes to no samples at all.
    #[error("{} contains no audio samples", .path.display())]
    NoSamples {
        /// The file.
        path: PathBuf,
    },
    /// Samples that break the invariants of [`Audio`](super::Audio): a sample rate of 0 Hz, no
    /// channels, channels of different lengths.
    #[error("invalid audio: {0}")]
    Invalid(String),
    /// Sample-rate conversion failed (the message says from and to what).
    #[error("{0}")]
    Resample(String),
    /// The output format cannot hold the audio (too many channels), or its encoder failed.
    #[error("{0}")]
    Encode(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Writing the file at `path` failed; `source` says why.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        source: Box<AudioError>,
    },
    /// The file gave other samples on a later pass than on the first (it changed on disk).
    #[error("{} changed while it was being read", .path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// Any other problem with a signal given to the library (shapes and lengths that do not fit
    /// what a computation needs).
    #[error("audio: {0}")]
    Other(String),
}

impl AudioError {
    /// This error as the cause of failing to write `path`.
    pub fn writing(self, path: &std::path::Path) -> Self {
        AudioError::Write {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}
