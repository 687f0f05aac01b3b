//! The input format of the `eval` fuzz target, shared with the regression test that replays
//! its findings (crates/roformer/tests/fuzz_regressions.rs).
//!
//! One flags byte (bit 0: trim to the shortest), then up to 6 files, each a kind byte (bit 0:
//! estimate or reference; bits 1-3: the stem name; bits 4-5: the extension), a little-endian
//! u32 length and the file's bytes.

use std::path::{Path, PathBuf};

const STEMS: [&str; 5] = ["vocals", "other", "mixture", "instrumental", "bass"];
const EXTENSIONS: [&str; 3] = ["wav", "flac", "mp3"];

/// The folders an input describes, written under `root`.
pub struct Folders {
    pub references: PathBuf,
    pub estimates: PathBuf,
    pub trim: bool,
}

/// Writes `root/ref/track/*` and `root/est/track/*` from `data` (`root` is emptied first);
/// `None` for an empty input.
pub fn write(data: &[u8], root: &Path) -> Option<Folders> {
    let (&flags, mut rest) = data.split_first()?;
    let _ = std::fs::remove_dir_all(root);
    let (references, estimates) = (root.join("ref"), root.join("est"));
    std::fs::create_dir_all(references.join("track")).ok()?;
    std::fs::create_dir_all(estimates.join("track")).ok()?;
    for _ in 0..6 {
        let [kind, a, b, c, d, tail @ ..] = rest else {
            break;
        };
        let len = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        let dir = if kind & 1 == 0 {
            &references
        } else {
            &estimates
        };
        let stem = STEMS[usize::from(kind >> 1 & 7) % STEMS.len()];
        let ext = EXTENSIONS[usize::from(kind >> 4 & 3) % EXTENSIONS.len()];
        std::fs::write(dir.join("track").join(format!("{stem}.{ext}")), bytes).ok()?;
    }
    Some(Folders {
        references,
        estimates,
        trim: flags & 1 == 1,
    })
}

/// What `eval` does with the folders: list the tracks, then decode, check and score each.
pub fn score(folders: &Folders) {
    if let Ok(listing) = roformer::evaluation::list_reference_tracks(&folders.references) {
        for track in &listing.tracks {
            let estimates = folders.estimates.join(&track.name);
            let _ = roformer::evaluation::score_track(track, &estimates, folders.trim);
        }
    }
}
