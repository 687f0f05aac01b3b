//! End-to-end tests of the `roformer` binary: separation against MSST's PyTorch `demix` output,
//! output handling, and every kind of bad input.

mod common;
use common::{p, roformer, snr_db, stderr, tree_bytes};
use std::path::{Path, PathBuf};
use std::process::Output;

use roformer::weights::load_state_dict;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// `model.ckpt`, `config.yaml` and `mixture.wav` in the fixture folder `dir`.
fn fixture_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("model.ckpt"),
        dir.join("config.yaml"),
        dir.join("mixture.wav"),
    )
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

/// Separates `dir/mixture.wav` with `dir/model.ckpt` and `dir/config.yaml` into float WAVs.
fn separate_fixture(dir: &Path, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let (model, config, mix) = fixture_files(dir);
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
    assert_matches(&dir.join("reference.safetensors"), out, label);
}

/// Every stem of `out/mixture` (and the instrumental, when written) against MSST's result in
/// `reference` (tensors `separated` and `separated_instrumental`).
fn assert_matches(reference: &Path, out: &Path, label: &str) {
    let reference = load_state_dict(reference).unwrap();
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
    for (name, theirs) in pairs {
        let snr = snr_db(&theirs, &stem(out, &name));
        println!("{label} {name}: {snr:.1} dB");
        assert!(snr >= 60.0, "{label} {name}: {snr:.1} dB");
    }
}

/// The samples of stem `name` in `out/mixture`, channels one after the other.
fn stem(out: &Path, name: &str) -> Vec<f32> {
    read_wav(&out.join("mixture").join(format!("{name}.wav"))).concat()
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

/// The files of the small stereo BS-RoFormer fixture: model, config, mixture.
fn tiny() -> (PathBuf, PathBuf, PathBuf) {
    fixture_files(&model_dir("bs_stereo_2stem_hop512"))
}

/// Runs `roformer separate` on `inputs` with `model` and `config` into `out` (quiet).
fn separate_into(inputs: &[&Path], model: &Path, config: &Path, out: &Path) -> Output {
    let mut args = vec!["separate"];
    args.extend(inputs.iter().map(|input| p(input)));
    args.extend(base_args(model, config, out));
    roformer(&args)
}

/// Like [`separate_into`] with one input, for a run that must fail; returns its stderr.
fn separate_fails(input: &Path, model: &Path, config: &Path, out: &Path) -> String {
    let o = separate_into(&[input], model, config, out);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    err
}

/// `roformer inspect MODEL --config CONFIG`: whether it succeeded, and its stdout (its stderr
/// goes to the test's captured output).
fn inspect(model: &Path, config: &Path) -> (bool, String) {
    let o = roformer(&["inspect", p(model), "--config", p(config)]);
    eprint!("{}", stderr(&o));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
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
    let zero = scratch.path().join("zero.flac");
    std::fs::write(&zero, b"").unwrap();
    let out = scratch.path().join("out");
    let inputs = [&corrupt, &empty, &text, &missing, &zero, &mix].map(PathBuf::as_path);
    let o = separate_into(&inputs, &model, &config, &out);
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
        err.contains("1 separated") && err.contains("5 failed"),
        "{err}"
    );
    assert!(err.contains("zero.flac"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Only our messages: no decoder log lines ("probe reached EOF"), no colours into a pipe.
    assert!(
        !err.contains("probe reached") && !err.contains("ERROR") && !err.contains('\u{1b}'),
        "{err}"
    );
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
    let err = separate_fails(&mix, &truncated, &config, &out);
    assert!(err.contains("truncated.ckpt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "nothing written");
}

/// Separates with the tiny model and the config of the fixture model `name`, which does not fit;
/// returns stderr.
fn separate_tiny_with_config_of(name: &str) -> String {
    let (model, _, mix) = tiny();
    let config = model_dir(name).join("config.yaml");
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    separate_fails(&mix, &model, &config, &out)
}

#[test]
fn config_that_does_not_fit_the_weights_names_the_tensor() {
    let err = separate_tiny_with_config_of("bs_4stem_linear_skip");
    assert!(err.contains("model.ckpt"), "{err}");
    assert!(err.contains("shape") || err.contains("missing"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // inspect says the same and exits non-zero.
    let (model, _, _) = tiny();
    let other = model_dir("bs_4stem_linear_skip").join("config.yaml");
    let (ok, text) = inspect(&model, &other);
    assert!(!ok);
    assert!(text.contains("DO NOT match"));
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
    let out = scratch.path().join("out");
    let err = separate_fails(&mix, &model, &broken, &out);
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
    let err = separate_fails(&mix, &model, &config, &out);
    assert!(err.contains("blocker"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn inspect_describes_a_checkpoint() {
    let (model, config, _) = tiny();
    let (ok, text) = inspect(&model, &config);
    assert!(ok, "{text}");
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
    let err = separate_fails(&mix, &evil, &config, &out);
    assert!(
        err.contains("evil_os_system.pt") && err.contains("system"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn converted_safetensors_separates_bit_identically_without_config() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    let st = scratch.path().join("tiny.safetensors");
    let o = roformer(&["convert", p(&model), "--config", p(&config), "-o", p(&st)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("tiny.safetensors") && text.contains("tensors"),
        "{text}"
    );

    // Same tensors under the same names, the config verbatim in the metadata.
    let original = load_state_dict(&model).unwrap();
    let converted = load_state_dict(&st).unwrap();
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        converted.keys().collect::<Vec<_>>()
    );
    for (name, t) in &original.tensors {
        let c = converted.get(name).unwrap();
        assert_eq!((t.dtype(), t.dims()), (c.dtype(), c.dims()), "{name}");
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = c.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}"
        );
    }
    assert_eq!(
        converted.metadata["msst_config"],
        std::fs::read_to_string(&config).unwrap()
    );
    assert_eq!(converted.metadata["format"], "pt");
    assert!(converted.metadata.contains_key("roformer_version"));

    let run = |model_args: &[&str], out: &Path| {
        let mut args = vec!["separate", p(&mix)];
        args.extend(model_args);
        args.extend(["-o", p(out), "--pcm", "f32", "-q"]);
        let o = roformer(&args);
        assert!(o.status.success(), "{model_args:?}: {}", stderr(&o));
    };
    let from_ckpt = scratch.path().join("from_ckpt");
    let from_st = scratch.path().join("from_st");
    run(&["--model", p(&model), "--config", p(&config)], &from_ckpt);
    run(&["--model", p(&st)], &from_st);
    let (a, b) = (tree_bytes(&from_ckpt), tree_bytes(&from_st));
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a == b, "the outputs differ");

    // Existing output: refused without --overwrite, replaced with it.
    let o = roformer(&["convert", p(&model), "--config", p(&config), "-o", p(&st)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));

    // Re-embedding: a converted file converts again without --config, same tensors and config.
    let again = scratch.path().join("again.safetensors");
    let o = roformer(&["convert", p(&st), "-o", p(&again)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&st).unwrap());
    let o = roformer(&["convert", p(&st), "-o", p(&st), "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&st).unwrap());
    assert_no_partial_files(scratch.path());
}

#[test]
fn convert_with_a_config_that_does_not_fit_writes_nothing() {
    let (model, _, _) = tiny();
    let other = model_dir("bs_4stem_linear_skip").join("config.yaml");
    let scratch = tempfile::tempdir().unwrap();
    let st = scratch.path().join("bad.safetensors");
    let o = roformer(&["convert", p(&model), "--config", p(&other), "-o", p(&st)]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("do not fit") && err.contains("nothing written"),
        "{err}"
    );
    assert!(err.contains("shape") || err.contains("missing"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn safetensors_without_embedded_config_needs_config() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    let bare = scratch.path().join("bare.safetensors");
    let state = load_state_dict(&model).unwrap();
    roformer::weights::save_safetensors(&state.tensors, &Default::default(), &bare).unwrap();

    let out = scratch.path().join("out");
    let o = roformer(&[
        "separate",
        p(&mix),
        "--model",
        p(&bare),
        "-o",
        p(&out),
        "-q",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("bare.safetensors") && err.contains("--config"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");

    let o = roformer(&[
        "convert",
        p(&bare),
        "-o",
        p(&scratch.path().join("x.safetensors")),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("carries no config") && err.contains("--config"),
        "{err}"
    );

    // With --config it separates.
    let o = roformer(&[
        "separate",
        p(&mix),
        "--model",
        p(&bare),
        "--config",
        p(&config),
        "-o",
        p(&out),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn mel_band_stereo_model_matches_msst_with_instrumental() {
    let dir = model_dir("mel_tiny_stereo");
    for batch in ["1", "2"] {
        let out = separate_fixture(&dir, &["--instrumental", "--batch-size", batch]);
        assert!(out.path().join("mixture/instrumental.wav").exists());
        assert_matches_reference(&dir, out.path(), &format!("mel stereo batch {batch}"));
    }
}

#[test]
fn mel_band_mono_two_stem_model_matches_msst() {
    check_separation("mel_tiny_mono", &["--batch-size", "3"]);
}

#[test]
fn inspect_describes_a_mel_band_checkpoint() {
    let (model, config, _) = fixture_files(&model_dir("mel_tiny_stereo"));
    let (ok, text) = inspect(&model, &config);
    assert!(ok, "{text}");
    assert!(text.contains("Mel-Band RoFormer"), "{text}");
    assert!(text.contains("12 bands"), "{text}");
    assert!(text.contains("match the config"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// --tta and ensembles (fixtures: tools/gen_tta_ensemble_fixtures.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn tta_matches_msst_apply_tta_with_instrumental() {
    let dir = model_dir("bs_stereo_2stem_hop512");
    let out = separate_fixture(&dir, &["--tta", "--instrumental"]);
    assert!(out.path().join("mixture/instrumental.wav").exists());
    let reference = fixtures().join("tta/reference.safetensors");
    assert_matches(&reference, out.path(), "--tta");
}

/// Runs `roformer separate` on the tiny model's mixture with `args` (models, configs, flags) into
/// float WAVs; returns the output folder and stderr.
fn separate_with(args: &[&str]) -> (tempfile::TempDir, String) {
    let (_, _, mix) = tiny();
    let out = tempfile::tempdir().unwrap();
    let mut all = vec!["separate", p(&mix), "-o", p(out.path()), "--pcm", "f32"];
    all.extend(args);
    let o = roformer(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    (out, stderr(&o))
}

/// `-m MODEL -c CONFIG` for each pair, in order.
fn model_args<'a>(models: &[(&'a PathBuf, &'a PathBuf)]) -> Vec<&'a str> {
    models
        .iter()
        .flat_map(|(model, config)| ["-m", p(model), "-c", p(config)])
        .collect()
}

#[test]
fn ensemble_avg_wave_is_the_weighted_mean_of_the_single_model_outputs() {
    let (model, config, _) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    // The same weights with other chunking give a second, different model.
    let text = std::fs::read_to_string(&config).unwrap();
    let overlap4 = scratch.path().join("overlap4.yaml");
    std::fs::write(&overlap4, text.replace("num_overlap: 2", "num_overlap: 4")).unwrap();
    let four = model_dir("bs_4stem_linear_skip");
    let (four_model, four_config) = (four.join("model.ckpt"), four.join("config.yaml"));

    let (a, _) = separate_with(&["-q", "-m", p(&model), "-c", p(&config)]);
    let (b, _) = separate_with(&["-q", "-m", p(&model), "-c", p(&overlap4)]);
    let (c, _) = separate_with(&["-q", "-m", p(&four_model), "-c", p(&four_config)]);
    let mut args = model_args(&[
        (&model, &config),
        (&model, &overlap4),
        (&four_model, &four_config),
    ]);
    args.extend([
        "--ensemble",
        "avg_wave",
        "--weights",
        "1,3,2",
        "--instrumental",
    ]);
    let (ens, log) = separate_with(&args);
    assert!(
        log.contains("Ensemble of 3 models") && log.contains("bs_4stem_linear_skip/model.ckpt"),
        "{log}"
    );
    for name in ["vocals", "other"] {
        let (x, y, z) = (
            stem(a.path(), name),
            stem(b.path(), name),
            stem(c.path(), name),
        );
        assert_ne!(x, y, "the two chunkings must differ");
        let want: Vec<f32> = (0..x.len())
            .map(|i| ((x[i] + 3.0 * y[i] + 2.0 * z[i]) as f64 / 6.0) as f32)
            .collect();
        let snr = snr_db(&want, &stem(ens.path(), name));
        println!("ensemble avg_wave {name}: {snr:.1} dB");
        assert!(snr >= 100.0, "{name}: {snr:.1} dB");
    }
    // Stems of one model only are that model's output.
    for name in ["bass", "drums"] {
        assert_eq!(stem(ens.path(), name), stem(c.path(), name), "{name}");
    }
    // The instrumental is the mixture minus the combined vocals.
    let mix = read_wav(&tiny().2).concat();
    let vocals = stem(ens.path(), "vocals");
    let want: Vec<f32> = mix.iter().zip(&vocals).map(|(m, v)| m - v).collect();
    assert_eq!(stem(ens.path(), "instrumental"), want);
}

#[test]
fn ensemble_with_tta_and_fft_algorithm_runs() {
    let (model, config, _) = tiny();
    let (single, _) = separate_with(&["-q", "-m", p(&model), "-c", p(&config), "--tta"]);
    // Two identical models: every algorithm gives back the single model's stems.
    for alg in ["median_fft", "max_wave"] {
        let (ens, _) = separate_with(&[
            "-q",
            "-m",
            p(&model),
            "-m",
            p(&model),
            "-c",
            p(&config),
            "-c",
            p(&config),
            "--tta",
            "--ensemble",
            alg,
        ]);
        for name in ["vocals", "other"] {
            let snr = snr_db(&stem(single.path(), name), &stem(ens.path(), name));
            println!("2 x same model, {alg}, {name}: {snr:.1} dB");
            assert!(snr >= 60.0, "{alg} {name}: {snr:.1} dB");
        }
    }
}

#[test]
fn ensemble_argument_errors_are_clear() {
    let (model, config, mix) = tiny();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    let text = std::fs::read_to_string(&config).unwrap();
    let other_rate = scratch.path().join("48k.yaml");
    std::fs::write(
        &other_rate,
        text.replace("sample_rate: 44100", "sample_rate: 48000"),
    )
    .unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["-m", p(&model), "-m", p(&model), "-c", p(&config)],
            "--config",
        ),
        (
            &["-m", p(&model), "-c", p(&config), "--weights", "1,2"],
            "--weights",
        ),
        (
            &model_args(&[(&model, &config), (&model, &other_rate)]),
            "sample rate",
        ),
        (
            &["-m", p(&model), "-c", p(&config), "--ensemble", "mean"],
            "avg_wave",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["separate", p(&mix), "-o", p(&out), "-q"];
        all.extend(args);
        let o = roformer(&all);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "nothing written");
    }
}

#[test]
fn checkpoint_of_the_other_architecture_is_named_as_such() {
    let err = separate_tiny_with_config_of("mel_tiny_stereo");
    assert!(
        err.contains("holds a BS-RoFormer checkpoint")
            && err.contains("describes a Mel-Band RoFormer"),
        "{err}"
    );
}

#[test]
fn reference_engine_and_int8_run_from_the_command_line() {
    // The plain framework path still matches MSST end to end.
    check_separation("bs_stereo_2stem_hop512", &["--reference-engine"]);
    // int8 stays within 30 dB of MSST's f32 result (the bound against f32).
    let dir = model_dir("bs_stereo_2stem_hop512");
    let out = separate_fixture(&dir, &["--precision", "int8"]);
    let reference = load_state_dict(&dir.join("reference.safetensors")).unwrap();
    let theirs = reference_tensor(&reference, "separated");
    let ours: Vec<f32> = reference.metadata["instruments"]
        .split(',')
        .flat_map(|name| stem(out.path(), name))
        .collect();
    let snr = snr_db(&theirs, &ours);
    println!("int8 separation vs MSST f32: {snr:.1} dB");
    assert!(snr >= 30.0, "int8 separation at {snr:.1} dB");
}

#[test]
fn reduced_precision_needs_the_fused_cpu_engine() {
    let (model, config, mix) = tiny();
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["separate", p(&mix)];
    args.extend(base_args(&model, &config, out.path()));
    args.extend(["--precision", "int8", "--reference-engine"]);
    let o = roformer(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("precision int8 needs the fused CPU engine"),
        "{}",
        stderr(&o)
    );
    let o = roformer(&["separate", p(&mix), "--precision", "int4"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown precision `int4`"),
        "{}",
        stderr(&o)
    );
}
