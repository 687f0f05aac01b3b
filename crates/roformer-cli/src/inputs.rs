//! Expanding the command line's files and folders into a list of audio files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read folder {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if roformer::audio::has_audio_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Files stay as given, folders are searched recursively (sorted); a path that does not exist is
/// reported as its own failure rather than stopping the others.
pub fn expand(paths: &[PathBuf]) -> Vec<Result<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            match walk(path, &mut found) {
                Ok(()) if found.is_empty() => out.push(Err(anyhow::anyhow!(
                    "no audio files found in folder {}",
                    path.display()
                ))),
                Ok(()) => out.extend(found.into_iter().map(Ok)),
                Err(e) => out.push(Err(e)),
            }
        } else if path.exists() {
            out.push(Ok(path.clone()));
        } else {
            out.push(Err(anyhow::anyhow!(
                "input {} does not exist",
                path.display()
            )));
        }
    }
    out
}

/// The output folder name for an input: its file name without extension.
pub fn track_name(path: &Path) -> Result<String> {
    match path.file_stem().and_then(|s| s.to_str()) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => bail!("cannot name an output folder after {}", path.display()),
    }
}
