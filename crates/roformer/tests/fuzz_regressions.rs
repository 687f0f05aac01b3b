//! Inputs the fuzzers (fuzz/, tools/fuzz.sh) once crashed on, run through the same paths as
//! their fuzz targets; each must now give a result or an error, never a panic.
//! tests/fixtures/fuzz/<target>/ holds them as libFuzzer wrote them.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// fuzz/fuzz_targets/audio.rs: the first byte picks the container, then decode, resample to
/// 44.1 kHz and adapt to stereo.
#[test]
fn audio_inputs_that_crashed_decode_or_fail_cleanly() {
    const EXTENSIONS: [&str; 6] = ["wav", "flac", "mp3", "ogg", "aiff", "m4a"];
    let files = inputs("audio");
    assert!(!files.is_empty(), "no regression inputs found");
    let scratch = tempfile::tempdir().unwrap();
    for input in files {
        let data = std::fs::read(&input).unwrap();
        let Some((&which, bytes)) = data.split_first() else {
            continue;
        };
        let path = scratch.path().join(format!(
            "input.{}",
            EXTENSIONS[usize::from(which) % EXTENSIONS.len()]
        ));
        std::fs::write(&path, bytes).unwrap();
        if let Ok(audio) = roformer::audio::decode_file(&path) {
            if let Ok(audio) = roformer::audio::resample(&audio, 44_100) {
                let (audio, _) = roformer::audio::to_channels(audio, 2);
                assert!(audio.channels().iter().flatten().all(|x| x.is_finite()));
            }
        }
    }
}

/// fuzz/fuzz_targets/eval.rs: a flags byte (bit 0: trim), then up to 6 files (kind byte: bit 0
/// estimate, bits 1-3 stem, bits 4-5 extension; u32 length; bytes) laid out as a references
/// folder and an estimates folder, then listed and scored. Inputs here were slow (a timeout under
/// the fuzzer's sanitizers: identical channels send BSSEval to its SVD fallback), not wrong.
#[test]
fn eval_inputs_that_timed_out_score_or_fail_cleanly() {
    const STEMS: [&str; 5] = ["vocals", "other", "mixture", "instrumental", "bass"];
    const EXTENSIONS: [&str; 3] = ["wav", "flac", "mp3"];
    for input in inputs("eval") {
        let data = std::fs::read(&input).unwrap();
        let Some((&flags, mut rest)) = data.split_first() else {
            continue;
        };
        let root = tempfile::tempdir().unwrap();
        let (refs, ests) = (root.path().join("ref"), root.path().join("est"));
        std::fs::create_dir_all(refs.join("track")).unwrap();
        std::fs::create_dir_all(ests.join("track")).unwrap();
        for _ in 0..6 {
            let [kind, a, b, c, d, tail @ ..] = rest else {
                break;
            };
            let len = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(tail.len());
            let (bytes, after) = tail.split_at(len);
            rest = after;
            let dir = if kind & 1 == 0 { &refs } else { &ests };
            let stem = STEMS[usize::from(kind >> 1 & 7) % STEMS.len()];
            let ext = EXTENSIONS[usize::from(kind >> 4 & 3) % EXTENSIONS.len()];
            std::fs::write(dir.join("track").join(format!("{stem}.{ext}")), bytes).unwrap();
        }
        if let Ok(listing) = roformer::evaluation::list_reference_tracks(&refs) {
            for track in &listing.tracks {
                let _ = roformer::evaluation::score_track(
                    track,
                    &ests.join(&track.name),
                    flags & 1 == 1,
                );
            }
        }
    }
}
