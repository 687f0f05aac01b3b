//! `roformer separate` and `eval` with HT Demucs checkpoints: the MSST fixture separated by the
//! binary must give MSST's demix output (tests/fixtures/htdemucs, made by
//! tools/gen_htdemucs_fixtures.py).

mod common;

use common::{p, repo, roformer, snr_db, stderr, tree_bytes};

use std::path::{Path, PathBuf};
use std::process::Output;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/htdemucs").join(name)
}

/// `roformer separate FIXTURE/mixture.wav ARGS... -o OUT`.
fn separate(fixture: &Path, args: &[&str], out: &Path) -> Output {
    let mixture = fixture.join("mixture.wav");
    let mut all = vec!["separate", p(&mixture)];
    all.extend_from_slice(args);
    all.extend(["-o", p(out)]);
    roformer(&all)
}

/// `--model FIXTURE/model.ckpt --config FIXTURE/config.yaml`.
fn ckpt_args(fixture: &Path) -> [String; 4] {
    [
        "--model".into(),
        p(&fixture.join("model.ckpt")).into(),
        "--config".into(),
        p(&fixture.join("config.yaml")).into(),
    ]
}

/// The planar samples of `OUT/mixture/STEM.wav`, flattened.
fn stem(out: &Path, stem: &str) -> Vec<f32> {
    let file = out.join("mixture").join(format!("{stem}.wav"));
    let audio = roformer::audio::decode_file(&file).unwrap();
    audio.channels().iter().flatten().copied().collect()
}

/// Every stem written to `out` is at least `min_db` from MSST's `separated` of the fixture.
fn assert_msst_stems(fixture: &Path, out: &Path, stems: &[&str], min_db: f64) {
    let reference =
        roformer::weights::load_state_dict(&fixture.join("reference.safetensors")).unwrap();
    let theirs = reference.get("separated").unwrap();
    for (i, name) in stems.iter().enumerate() {
        let theirs: Vec<f32> = theirs
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let snr = snr_db(&theirs, &stem(out, name));
        println!("{name}: {snr:.1} dB");
        assert!(snr >= min_db, "{name}: SNR {snr:.1} dB against MSST");
    }
}

const FOUR: [&str; 4] = ["drums", "bass", "other", "vocals"];

#[test]
fn separate_writes_msst_stems_for_an_msst_checkpoint() {
    let fixture = fixture("htdemucs_6stem_merge");
    let out = tempfile::tempdir().unwrap();
    let args = ckpt_args(&fixture);
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--pcm", "f32", "-q"]);
    let o = separate(&fixture, &all, out.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let stems = ["drums", "bass", "other", "vocals", "guitar", "piano"];
    assert_msst_stems(&fixture, out.path(), &stems, 60.0);
}

/// The fused engine's reduced precisions stay within 30 dB of MSST's f32 stems.
#[test]
fn reduced_precisions_separate_close_to_msst() {
    let fixture = fixture("htdemucs_4stem");
    for precision in ["bf16", "int8"] {
        let out = tempfile::tempdir().unwrap();
        let args = ckpt_args(&fixture);
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--precision", precision, "--pcm", "f32", "-q"]);
        let o = separate(&fixture, &all, out.path());
        assert!(o.status.success(), "{precision}: {}", stderr(&o));
        assert_msst_stems(&fixture, out.path(), &FOUR, 30.0);
    }
}

/// A Facebook `.th` package needs no config: it comes from the class's keyword arguments. Its
/// weights are the MSST checkpoint's rounded to fp16, so the stems stay close to MSST's f32
/// output (the rounding bounds the agreement), with the same chunking (segment 1 s, 4 chunks).
#[test]
fn a_facebook_th_package_separates_without_a_config() {
    assert_model_separates_like_msst(&fixture("htdemucs_4stem"), "model.th", 50.0);
}

/// `separate --model FIXTURE/MODEL` succeeds and writes MSST's four stems within `min_db`;
/// returns what it printed on stderr.
fn assert_model_separates_like_msst(fixture: &Path, model: &str, min_db: f64) -> String {
    let out = tempfile::tempdir().unwrap();
    let model = fixture.join(model);
    let o = separate(fixture, &["--model", p(&model), "--pcm", "f32"], out.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_msst_stems(fixture, out.path(), &FOUR, min_db);
    stderr(&o)
}

/// `convert` writes a `.th` package as one safetensors file with its config: separating with
/// it gives the bytes separating with the package gives.
#[test]
fn a_converted_package_separates_like_the_package() {
    let fixture = fixture("htdemucs_4stem");
    let scratch = tempfile::tempdir().unwrap();
    let converted = scratch.path().join("htdemucs.safetensors");
    let o = roformer(&["convert", p(&fixture.join("model.th")), "-o", p(&converted)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |model: &Path, out: &Path| {
        let o = separate(&fixture, &["--model", p(model), "-q"], out);
        assert!(o.status.success(), "{}", stderr(&o));
        tree_bytes(out)
    };
    let from_package = run(&fixture.join("model.th"), &scratch.path().join("a"));
    let from_converted = run(&converted, &scratch.path().join("b"));
    assert_eq!(from_package.len(), 4);
    assert_eq!(from_package, from_converted);
}

/// HT Demucs goes through the same separator as the RoFormers: `--tta --instrumental` (the
/// instrumental is mixture - vocals, MSST's `--extract_instrumental`), and an ensemble with a
/// BS-RoFormer (the stems of both, `vocals` and `other` averaged).
#[test]
fn tta_instrumental_and_an_ensemble_with_a_roformer() {
    let ht = fixture("htdemucs_4stem");
    let bs = repo().join("tests/fixtures/models/bs_stereo_2stem_hop512");
    let out = tempfile::tempdir().unwrap();
    let args = ckpt_args(&ht);
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--tta", "--instrumental", "--pcm", "f32", "-q"]);
    let o = separate(&ht, &all, out.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let mix: Vec<f32> = roformer::audio::decode_file(&ht.join("mixture.wav"))
        .unwrap()
        .channels()
        .iter()
        .flatten()
        .copied()
        .collect();
    let (vocals, instrumental) = (stem(out.path(), "vocals"), stem(out.path(), "instrumental"));
    let worst = mix
        .iter()
        .zip(&vocals)
        .zip(&instrumental)
        .map(|((m, v), i)| (m - v - i).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-6,
        "instrumental is not mixture - vocals: {worst}"
    );

    let out = tempfile::tempdir().unwrap();
    let (ht_args, bs_args) = (ckpt_args(&ht), ckpt_args(&bs));
    let mut all: Vec<&str> = ht_args.iter().chain(&bs_args).map(String::as_str).collect();
    all.push("-q");
    let o = separate(&ht, &all, out.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(out.path().join("mixture"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]);
}

/// `eval --model` with HT Demucs: with MSST's own separation of the fixture as the references,
/// every stem's global SDR is far above any real model's (only float rounding differs).
#[test]
fn eval_scores_an_htdemucs_model_against_msst_output() {
    use roformer::audio::{write_audio_atomic, Audio, OutputFormat, PcmFormat};
    let fixture = fixture("htdemucs_4stem");
    let scratch = tempfile::tempdir().unwrap();
    let track = scratch.path().join("refs").join("song");
    std::fs::create_dir_all(&track).unwrap();
    std::fs::copy(fixture.join("mixture.wav"), track.join("mixture.wav")).unwrap();
    let reference =
        roformer::weights::load_state_dict(&fixture.join("reference.safetensors")).unwrap();
    let separated = reference.get("separated").unwrap();
    for (i, stem) in FOUR.iter().enumerate() {
        let channels: Vec<Vec<f32>> = separated.get(i).unwrap().to_vec2().unwrap();
        let audio = Audio::new(44100, channels).unwrap();
        let format = OutputFormat::Wav(PcmFormat::Float32);
        write_audio_atomic(&track.join(format!("{stem}.wav")), &audio, format).unwrap();
    }
    let json = scratch.path().join("scores.json");
    let o = roformer(&[
        "eval",
        "-r",
        p(&scratch.path().join("refs")),
        "--model",
        p(&fixture.join("model.ckpt")),
        "--config",
        p(&fixture.join("config.yaml")),
        "--json",
        p(&json),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for stem in FOUR {
        let sdr = scores["tracks"][0]["stems"][stem]["sdr"].as_f64().unwrap();
        assert!(sdr > 60.0, "{stem}: SDR {sdr:.1} dB");
    }
}

/// `inspect` names the family, the shape the fixture's config gives (channels, depth, nfft,
/// transformer layers and heads, from tools/gen_htdemucs_fixtures.py) and the stems, for a
/// `.th` package and for an MSST checkpoint with its YAML.
#[test]
fn inspect_names_the_family_and_the_shape() {
    let four = fixture("htdemucs_4stem");
    let o = roformer(&["inspect", p(&four.join("model.th"))]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}{}", stderr(&o));
    for want in [
        "HT Demucs",
        "Facebook demucs package (demucs.htdemucs.HTDemucs)",
        "channels 8 (growth 2), depth 4, nfft 4096",
        "transformer 3 layers x 2 heads at 32 channels",
        "stems      4 (drums, bass, other, vocals)",
        "Weights      match the config",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
    let six = fixture("htdemucs_6stem_merge");
    let args = ckpt_args(&six);
    let o = roformer(&["inspect", &args[1], "--config", &args[3]]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}{}", stderr(&o));
    for want in [
        "depth 3, nfft 256, DConv in the encoder",
        "stems      6 (drums, bass, other, vocals, guitar, piano)",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
}

/// A bag of models (tests/fixtures/htdemucs/bag: demucs' `BagOfModels` of three `.th` packages
/// with a weights matrix and a segment, made by `gen_htdemucs_fixtures.py --only bag`): the
/// binary writes the bag's four stems, matching demucs' weighting of MSST's demixes.
#[test]
fn separate_with_a_bag_yaml_writes_the_bags_stems() {
    let err = assert_model_separates_like_msst(&fixture("bag"), "bag.yaml", 60.0);
    assert!(err.contains("bag of 3 models"), "{err}");
}

/// `convert` writes the bag as one safetensors file, which separates to the bytes the YAML
/// gives; `inspect` names the bag's models, their family and the weights, for both.
#[test]
fn convert_and_inspect_a_bag() {
    let fixture = fixture("bag");
    let scratch = tempfile::tempdir().unwrap();
    let bag = fixture.join("bag.yaml");
    let converted = scratch.path().join("bag.safetensors");
    let o = roformer(&["convert", p(&bag), "-o", p(&converted)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |model: &Path, out: &Path| {
        let o = separate(&fixture, &["--model", p(model), "-q"], out);
        assert!(o.status.success(), "{}", stderr(&o));
        tree_bytes(out)
    };
    let from_yaml = run(&bag, &scratch.path().join("a"));
    assert_eq!(from_yaml.len(), 4);
    assert_eq!(from_yaml, run(&converted, &scratch.path().join("b")));

    for model in [&bag, &converted] {
        let o = roformer(&["inspect", p(model)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(text.contains(": 3 models"), "{text}");
        assert_eq!(text.matches("family     HT Demucs").count(), 3, "{text}");
        assert!(text.contains("segment    2 s"), "{text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|l| !l.starts_with("Weights"))
            .skip(1)
            .map(|l| l.split_whitespace().skip(2).collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["1", "0.5", "0", "1"],
                ["0", "1", "1", "1"],
                ["0.25", "0", "1", "0"]
            ],
            "{text}"
        );
    }
}

/// A wrong bag is an error naming the YAML, not a panic.
#[test]
fn a_bag_with_a_wrong_weights_row_is_refused() {
    let fixture = fixture("bag");
    let scratch = tempfile::tempdir().unwrap();
    let bag = scratch.path().join("bad.yaml");
    let model = fixture.join("5e6f7a8b.th");
    std::fs::write(
        &bag,
        format!("models: ['{}']\nweights: [[1, 1]]\n", model.display()),
    )
    .unwrap();
    let o = separate(&fixture, &["--model", p(&bag)], &scratch.path().join("out"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&bag.display().to_string()), "{err}");
    assert!(err.contains("weight row 1 has 2 weights"), "{err}");
}
