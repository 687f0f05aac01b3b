//! `roformer separate` streams a one-model separation through the model; these tests check that
//! its files are byte for byte those of the whole-track path (`--whole-track`, which runs the
//! library's in-memory `separate_track_with_tta`/`demix`), on inputs of many chunks, with
//! resampling, channel adaptation, normalisation, test-time augmentation, the instrumental, and
//! WAV and FLAC output.

mod common;
use common::{p, tree_bytes};
use std::path::{Path, PathBuf};
use std::process::Command;

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

/// A `seconds` long WAV at `rate` Hz with `channels` channels: tones and a little noise, with
/// a DC offset (so that normalisation has a mean to remove).
fn write_input(path: &Path, rate: u32, channels: u16, seconds: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (seconds * f64::from(rate)) as usize;
    let mut noise = 0x2545_f491u32;
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        for c in 0..channels {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let tone = 0.3
                * (2.0 * std::f64::consts::PI * (220.0 + 110.0 * f64::from(c)) * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 3520.0 * t).sin() * (t * 3.0).sin();
            let v = tone + 0.05 * (f64::from(noise % 2001) / 1000.0 - 1.0) + 0.02;
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// `config` with `inference.normalize: true`, written under `dir`.
fn normalizing_config(config: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("\ninference:\n"));
    let text = text.replace("\ninference:\n", "\ninference:\n  normalize: true\n");
    let out = dir.join("normalize.yaml");
    std::fs::write(&out, text).unwrap();
    out
}

/// Separates `inputs` streamed and with `--whole-track`; asserts identical output trees.
fn assert_streamed_equals_whole(inputs: &[&Path], model: &Path, config: &Path, extra: &[&str]) {
    let scratch = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for whole in [false, true] {
        let out = scratch
            .path()
            .join(if whole { "whole" } else { "streamed" });
        let mut args = vec!["separate"];
        args.extend(inputs.iter().map(|i| p(i)));
        args.extend([
            "--model",
            p(model),
            "--config",
            p(config),
            "-o",
            p(&out),
            "-q",
        ]);
        args.extend(extra);
        if whole {
            args.push("--whole-track");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_roformer"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        trees.push(tree_bytes(&out));
    }
    let (streamed, whole) = (&trees[0], &trees[1]);
    assert!(!whole.is_empty());
    assert_eq!(
        streamed.keys().collect::<Vec<_>>(),
        whole.keys().collect::<Vec<_>>(),
        "{extra:?}"
    );
    for (name, bytes) in whole {
        assert!(
            streamed[name] == *bytes,
            "{extra:?}: {} differs from the whole-track result",
            name.display()
        );
    }
}

#[test]
fn streamed_stereo_separation_is_bit_identical_with_normalize_resampling_and_flac() {
    let dir = model_dir("bs_stereo_2stem_hop512");
    let scratch = tempfile::tempdir().unwrap();
    let config = normalizing_config(&dir.join("config.yaml"), scratch.path());
    // 48 kHz (resampled to 44.1 kHz), 3 s: 18 chunks of 16384 frames at overlap 2; mono at
    // 22.05 kHz (resampled, duplicated to stereo); and a short lossy file (too short for the
    // reflect padding).
    let long = scratch.path().join("long.wav");
    write_input(&long, 48000, 2, 3.0);
    let mono = scratch.path().join("mono.wav");
    write_input(&mono, 22050, 1, 2.0);
    let mp3 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/audio/sine.mp3");
    let inputs = [long.as_path(), mono.as_path(), mp3.as_path()];
    let model = dir.join("model.ckpt");
    assert_streamed_equals_whole(
        &inputs,
        &model,
        &config,
        &["--instrumental", "--format", "flac", "--batch-size", "3"],
    );
    assert_streamed_equals_whole(&inputs[1..2], &model, &config, &["--tta", "--pcm", "f32"]);
    // Without normalisation, with the fixture's own config.
    assert_streamed_equals_whole(
        &inputs[..1],
        &model,
        &dir.join("config.yaml"),
        &["--pcm", "16", "--overlap", "4"],
    );
}

#[test]
fn streamed_mono_model_with_many_overlaps_is_bit_identical() {
    // overlap 4: the reflect padding (3/4 chunk) reaches past the first chunk's own span.
    let dir = model_dir("bs_mono_hop441");
    let scratch = tempfile::tempdir().unwrap();
    let config = normalizing_config(&dir.join("config.yaml"), scratch.path());
    let stereo = scratch.path().join("stereo.wav");
    write_input(&stereo, 44100, 2, 2.0);
    assert_streamed_equals_whole(
        &[&stereo],
        &dir.join("model.ckpt"),
        &config,
        &["--instrumental", "--tta", "--pcm", "24"],
    );
}
