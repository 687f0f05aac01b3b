//! Helpers shared by the CLI test binaries.
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// All files under `dir`, relative, with their bytes.
pub fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Runs the `roformer` binary with `args`.
pub fn roformer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roformer"))
        .args(args)
        .output()
        .expect("the roformer binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A stereo 16-bit WAV of a tone at `freq` Hz.
pub fn write_tone(path: &Path, freq: f64, frames: usize) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        let v = (0.2 * (std::f64::consts::TAU * freq * i as f64 / 44100.0).sin() * 32767.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v / 2).unwrap();
    }
    w.finalize().unwrap();
}

/// A tiny training set, `root/data/{train,valid}/<track>/{vocals,other}.wav`, and
/// `root/config.yaml`: the fixture config with 2 batches per epoch and the `(from, to)`
/// replacements in `edits` applied. Returns the config's path.
pub fn train_dataset(root: &Path, edits: &[(&str, &str)]) -> PathBuf {
    for (split, tracks) in [("train", 3), ("valid", 1)] {
        for t in 0..tracks {
            let dir = root.join("data").join(split).join(format!("track{t}"));
            std::fs::create_dir_all(&dir).unwrap();
            write_tone(&dir.join("vocals.wav"), 440.0 + 50.0 * t as f64, 20_000);
            write_tone(&dir.join("other.wav"), 110.0 + 20.0 * t as f64, 20_000);
        }
    }
    let mut config = std::fs::read_to_string(
        repo().join("tests/fixtures/models/bs_stereo_2stem_hop512/config.yaml"),
    )
    .unwrap()
    .replace("num_steps: 1000", "num_steps: 2");
    for (from, to) in edits {
        assert!(config.contains(from), "the fixture config has no `{from}`");
        config = config.replace(from, to);
    }
    let path = root.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// SNR of `ours` against `reference` in dB.
pub fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len(), "length mismatch");
    let s: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let n: f64 = reference
        .iter()
        .zip(ours)
        .map(|(&r, &o)| (r as f64 - o as f64).powi(2))
        .sum();
    10.0 * (s / n.max(1e-30)).log10()
}

/// The files of `dir` under their final names (temporary files start with a dot).
pub fn final_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    if !dir.exists() {
        return BTreeMap::new();
    }
    tree_bytes(dir)
        .into_iter()
        .filter(|(rel, _)| {
            !rel.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}
