//! Scoring separated stems against reference tracks, as `roformer eval` does: reference folders
//! in MUSDB18's layout (`REF/<track>/mixture.wav` and one file per stem), estimates in the layout
//! `separate` writes (`EST/<track>/<stem>.wav`), and per stem the leaderboards' global SDR and
//! SI-SDR, museval's BSSEval v4 and MSST's fullness/bleedless.
//!
//! Everything here reads files from strangers (downloaded datasets, other tools' outputs), so
//! every failure is a typed [`EvalError`] that names the file.

mod scoring;
mod track_folder;

use std::path::PathBuf;

pub use scoring::{score_track, stem_rank, StemScores, TrackScores, METRICS};
pub use track_folder::{audio_files, list_reference_tracks, ReferenceTrack, ReferenceTracks};

use crate::audio::AudioError;
use crate::metrics::MetricsError;

/// Why a references folder or a track could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A folder cannot be listed.
    #[error("cannot read folder {}", .path.display())]
    ReadFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Two files in one folder name the same stem (`vocals.wav` and `vocals.flac`).
    #[error("two files for `{stem}`: {} and {}", .first.display(), .second.display())]
    DuplicateStem {
        /// The stem.
        stem: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A file name that cannot name a stem (no UTF-8 stem).
    #[error("cannot name a stem after {}", .0.display())]
    BadFileName(PathBuf),
    /// The references folder has no track folder with reference stems.
    #[error("no track folders with reference stems in {} (expected REF/<track>/<stem>.wav)", .0.display())]
    NoTracks(PathBuf),
    /// The track has no estimates folder.
    #[error("no estimates: {} is not a folder", .0.display())]
    NoEstimatesFolder(PathBuf),
    /// The estimates folder has no audio files.
    #[error("no estimate files in {}", .0.display())]
    NoEstimateFiles(PathBuf),
    /// No estimate has a reference to be scored against.
    #[error("none of the estimates in {} has a reference stem in {}", .estimates.display(), .references.display())]
    NothingToScore {
        /// The estimates folder.
        estimates: PathBuf,
        /// The track's reference folder.
        references: PathBuf,
    },
    /// A file cannot be decoded.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The files of a track differ in sample rate.
    #[error("sample rates differ: {} is {first_rate} Hz, {} is {other_rate} Hz", .first.display(), .other.display())]
    SampleRates {
        /// The track's first file.
        first: PathBuf,
        /// Its rate.
        first_rate: u32,
        /// A file with another rate.
        other: PathBuf,
        /// That rate.
        other_rate: u32,
    },
    /// The files of a track differ in channel count.
    #[error("channel counts differ: {} has {first_channels}, {} has {other_channels}", .first.display(), .other.display())]
    Channels {
        /// The track's first file.
        first: PathBuf,
        /// Its channel count.
        first_channels: usize,
        /// A file with another count.
        other: PathBuf,
        /// That count.
        other_channels: usize,
    },
    /// The files of a track differ in length (and trimming was not asked for).
    #[error("lengths differ: {} has {longer_frames} samples, {} has {shortest_frames} (use --trim to cut every file to the shortest)", .longer.display(), .shortest.display())]
    Lengths {
        /// A longer file.
        longer: PathBuf,
        /// Its length in samples per channel.
        longer_frames: usize,
        /// The shortest file.
        shortest: PathBuf,
        /// Its length.
        shortest_frames: usize,
    },
    /// A metric cannot be computed (shapes the checks above let through).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}
