//! End-to-end tests of the `roformer` binary: separation against MSST's PyTorch `demix` output,
//! output handling, and every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use roformer::weights::load_state_dict;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn roformer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roformer"))
        .args(args)
        .output()
        .expect("the roformer binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Planar samples of a WAV file.
fn read_wav(path: &Path) -> Vec<Vec<f32>> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let ch = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.unwrap() as f32 / scale)
                .collect()
        }
    };
    (0..ch)
        .map(|c| samples.iter().skip(c).step_by(ch).copied().collect())
        .collect()
}

fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len(), "length mismatch");
    let s: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let n: f64 = reference
        .iter()
        .zip(ours)
        .map(|(&r, &o)| (r as f64 - o as f64).powi(2))
        .sum();
    10.0 * (s / n.max(1e-30)).log10()
}

/// Separates `dir/mixture.wav` with `dir/model.ckpt` and `dir/config.yaml` into float WAVs.
fn separate_fixture(dir: &Path, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let (mix, model, config) = (
        dir.join("mixture.wav"),
        dir.join("model.ckpt"),
        dir.join("config.yaml"),
    );
    let mut args = vec![
        "separate",
        p(&mix),
        "--model",
        p(&model),
        "--config",
        p(&config),
    ];
    args.extend(["-o", p(out.path()), "--pcm", "f32", "-q"]);
    args.extend(extra);
    let o = roformer(&args);
    assert!(o.status.success(), "{}: {}", dir.display(), stderr(&o));
    out
}

fn reference_tensor(reference: &roformer::weights::StateDict, key: &str) -> Vec<f32> {
    reference
        .get(key)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Every stem (and the instrumental, when written) against MSST's `demix` result.
fn assert_matches_reference(dir: &Path, out: &Path, label: &str) {
    let reference = load_state_dict(&dir.join("reference.safetensors")).unwrap();
    let separated = reference.get("separated").unwrap();
    let mut pairs = Vec::new();
    for (i, stem) in reference.metadata["instruments"].split(',').enumerate() {
        let theirs: Vec<f32> = separated
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        pairs.push((stem.to_string(), theirs));
    }
    let instrumental = out.join("mixture/instrumental.wav");
    if instrumental.exists() {
        pairs.push((
            "instrumental".into(),
            reference_tensor(&reference, "separated_instrumental"),
        ));
    }
    for (stem, theirs) in pairs {
        let ours = read_wav(&out.join("mixture").join(format!("{stem}.wav"))).concat();
        let snr = snr_db(&theirs, &ours);
        println!("{label} {stem}: {snr:.1} dB");
        assert!(snr >= 60.0, "{label} {stem}: {snr:.1} dB");
    }
}

fn check_separation(name: &str, extra: &[&str]) {
    let dir = model_dir(name);
    let out = separate_fixture(&dir, extra);
    assert_matches_reference(&dir, out.path(), &format!("{name} {extra:?}"));
}

#[test]
fn stereo_two_stem_model_matches_msst_at_every_batch_size() {
    for batch in ["1", "2", "3"] {
        check_separation("bs_stereo_2stem_hop512", &["--batch-size", batch]);
    }
}

#[test]
fn mono_single_stem_model_matches_msst_with_instrumental() {
    let dir = model_dir("bs_mono_hop441");
    let out = separate_fixture(&dir, &["--instrumental"]);
    assert!(out.path().join("mixture/instrumental.wav").exists());
    assert_matches_reference(&dir, out.path(), "mono --instrumental");
}

#[test]
fn four_stem_linear_skip_model_matches_msst() {
    check_separation("bs_4stem_linear_skip", &["--batch-size", "2"]);
}

fn base_args<'a>(model: &'a Path, config: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--model",
        p(model),
        "--config",
        p(config),
        "-o",
        p(out),
        "-q",
    ]
}

fn tiny() -> (PathBuf, PathBuf, PathBuf) {
    let dir = model_dir("bs_stereo_2stem_hop512");
    (
        dir.join("model.ckpt"),
        dir.join("config.yaml"),
        dir.join("mixture.wav"),
    )
}

#[test]
fn existing_outputs_are_skipped_unless_overwrite() {
    let (model, config, mix) = tiny();
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["separate", p(&mix)];
    args.extend(base_args(&model, &config, out.path()));
    assert!(roformer(&args).status.success());
    let vocals = out.path().join("mixture/vocals.wav");
    std::fs::write(&vocals, b"marker").unwrap();
    let o = roformer(&args);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(&vocals).unwrap(),
        b"marker",
        "kept without --overwrite"
    );
    args.push("--overwrite");
    assert!(roformer(&args).status.success());
    assert_ne!(
        std::fs::read(&vocals).unwrap(),
        b"marker",
        "replaced with --overwrite"
    );
}

/// No temporary or partial files anywhere under `dir`.
fn assert_no_partial_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_partial_files(&path);
        } else {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                !name.starts_with('.'),
                "leftover temporary file {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_batch_with_bad_inputs_processes_the_rest_and_fails() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    let corrupt = scratch.path().join("corrupt.wav");
    std::fs::write(
        &corrupt,
        b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio",
    )
    .unwrap();
    let empty = scratch.path().join("empty.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&empty, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let text = scratch.path().join("notes.mp3");
    std::fs::write(&text, "this is not an mp3").unwrap();
    let missing = scratch.path().join("missing.flac");
    let out = scratch.path().join("out");
    let mut args = vec![
        "separate",
        p(&corrupt),
        p(&empty),
        p(&text),
        p(&missing),
        p(&mix),
    ];
    args.extend(base_args(&model, &config, &out));
    let o = roformer(&args);
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "exit code must say that some inputs failed"
    );
    assert!(err.contains("corrupt.wav"), "{err}");
    assert!(err.contains("empty.wav"), "{err}");
    assert!(err.contains("notes.mp3"), "{err}");
    assert!(
        err.contains("missing.flac") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        err.contains("1 separated") && err.contains("4 failed"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.join("mixture/vocals.wav").exists());
    assert!(!out.join("corrupt").exists() && !out.join("empty").exists());
    assert_no_partial_files(&out);
}

#[test]
fn truncated_checkpoint_is_a_clear_error() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let truncated = scratch.path().join("truncated.ckpt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = scratch.path().join("out");
    let mut args = vec!["separate", p(&mix)];
    args.extend(base_args(&truncated, &config, &out));
    let o = roformer(&args);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("truncated.ckpt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn config_that_does_not_fit_the_weights_names_the_tensor() {
    let (model, _, mix) = tiny();
    let other = model_dir("bs_4stem_linear_skip").join("config.yaml");
    let scratch = tempfile::tempdir().unwrap();
    let mut args = vec!["separate", p(&mix)];
    let out = scratch.path().join("out");
    args.extend(base_args(&model, &other, &out));
    let o = roformer(&args);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("model.ckpt"), "{err}");
    assert!(err.contains("shape") || err.contains("missing"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // inspect says the same and exits non-zero.
    let o = roformer(&["inspect", p(&model), "--config", p(&other)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("DO NOT match"));
}

#[test]
fn missing_config_key_is_named() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let broken = scratch.path().join("broken.yaml");
    let without_depth: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("depth:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&broken, without_depth).unwrap();
    let mut args = vec!["separate", p(&mix)];
    let out = scratch.path().join("out");
    args.extend(base_args(&model, &broken, &out));
    let o = roformer(&args);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("broken.yaml") && err.contains("depth"),
        "{err}"
    );
}

#[test]
fn unwritable_output_folder_is_a_clear_error() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    // A regular file where a folder is needed: fails even for root.
    let blocker = scratch.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("out");
    let mut args = vec!["separate", p(&mix)];
    args.extend(base_args(&model, &config, &out));
    let o = roformer(&args);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("blocker"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn inspect_describes_a_checkpoint() {
    let (model, config, _) = tiny();
    let o = roformer(&["inspect", p(&model), "--config", p(&config)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text.contains("BS-RoFormer"), "{text}");
    assert!(text.contains("bands      62"), "{text}");
    assert!(text.contains("stems      2"), "{text}");
    assert!(text.contains("match the config"), "{text}");
}

/// Acceptance check with a real-size model, too big to commit: generate it with
/// `tools/gen_fixtures.py --real-shape --depth 2 --seconds 30 --out DIR`, then run
/// `ROFORMER_REAL_SHAPE_DIR=DIR cargo test --release -p roformer-cli -- --ignored real_shape`.
#[test]
#[ignore = "needs a generated real-shape model (see the doc comment)"]
fn real_shape_model_matches_msst() {
    let dir = PathBuf::from(
        std::env::var("ROFORMER_REAL_SHAPE_DIR").expect("set ROFORMER_REAL_SHAPE_DIR"),
    );
    let out = separate_fixture(&dir, &[]);
    assert_matches_reference(&dir, out.path(), "real shape");
}

#[test]
fn checkpoint_that_asks_pickle_to_run_code_is_refused() {
    let (_, config, mix) = tiny();
    let evil = fixtures().join("weights/evil_os_system.pt");
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    let mut args = vec!["separate", p(&mix)];
    args.extend(base_args(&evil, &config, &out));
    let o = roformer(&args);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("evil_os_system.pt") && err.contains("system"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
}
