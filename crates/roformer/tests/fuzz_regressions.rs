//! Inputs the fuzzers (fuzz/, tools/fuzz.sh) once crashed on, run through the same paths as
//! their fuzz targets; each must now give a result or an error, never a panic.
//! tests/fixtures/fuzz/<target>/ holds them as libFuzzer wrote them.

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/inputs/eval_folders.rs"]
mod eval_folders;

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

/// fuzz/fuzz_targets/eval.rs (input format: fuzz/inputs/eval_folders.rs). Inputs here were
/// slow (a timeout under the fuzzer's sanitizers: identical channels send BSSEval to its SVD
/// fallback), not wrong.
#[test]
fn eval_inputs_that_timed_out_score_or_fail_cleanly() {
    for input in inputs("eval") {
        let data = std::fs::read(&input).unwrap();
        let root = tempfile::tempdir().unwrap();
        if let Some(folders) = eval_folders::write(&data, root.path()) {
            eval_folders::score(&folders);
        }
    }
}
