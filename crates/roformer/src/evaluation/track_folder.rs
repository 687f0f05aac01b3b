//! The folders `eval` reads: a references folder of track folders (MUSDB18's layout,
//! `REF/<track>/mixture.wav` plus one file per stem) and, per track, a folder of estimates.

use std::path::{Path, PathBuf};

use super::EvalError;
use crate::audio::has_audio_extension;

/// One track folder of the references.
#[derive(Debug, Clone)]
pub struct ReferenceTrack {
    /// The folder's name, which is also the name of the track's estimates folder.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// `mixture.*`, if there is one.
    pub mixture: Option<PathBuf>,
    /// `(stem, file)` of every other audio file, sorted by file name.
    pub stems: Vec<(String, PathBuf)>,
}

/// The tracks of a references folder.
#[derive(Debug, Clone)]
pub struct ReferenceTracks {
    /// The track folders with reference stems, sorted by name.
    pub tracks: Vec<ReferenceTrack>,
    /// Track folders without reference stems (only a mixture, or no audio), left out.
    pub skipped: Vec<PathBuf>,
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let error = |source| EvalError::ReadFolder {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = std::fs::read_dir(dir)
        .map_err(error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    paths.sort();
    Ok(paths)
}

/// The audio files directly in `dir` (by extension, sorted), by stem name (the file name without
/// its extension); two files with one stem name are an error.
pub fn audio_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, EvalError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for file in read_dir_sorted(dir)? {
        if file.is_dir() || !has_audio_extension(&file) {
            continue;
        }
        let stem = match file.file_stem().and_then(|s| s.to_str()) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return Err(EvalError::BadFileName(file)),
        };
        if let Some((_, first)) = files.iter().find(|(s, _)| *s == stem) {
            return Err(EvalError::DuplicateStem {
                stem,
                first: first.clone(),
                second: file,
            });
        }
        files.push((stem, file));
    }
    Ok(files)
}

/// The track folders of `references` (hidden ones ignored); an error when none has reference
/// stems.
pub fn list_reference_tracks(references: &Path) -> Result<ReferenceTracks, EvalError> {
    let mut tracks = Vec::new();
    let mut skipped = Vec::new();
    for dir in read_dir_sorted(references)? {
        if !dir.is_dir() {
            continue;
        }
        let name = match dir.file_name().and_then(|n| n.to_str()) {
            Some(n) if !n.starts_with('.') => n.to_string(),
            _ => continue,
        };
        let mut stems = audio_files(&dir)?;
        let mixture = stems
            .iter()
            .position(|(s, _)| s == "mixture")
            .map(|i| stems.remove(i).1);
        if stems.is_empty() {
            skipped.push(dir);
            continue;
        }
        tracks.push(ReferenceTrack {
            name,
            dir,
            mixture,
            stems,
        });
    }
    if tracks.is_empty() {
        return Err(EvalError::NoTracks(references.to_path_buf()));
    }
    Ok(ReferenceTracks { tracks, skipped })
}
