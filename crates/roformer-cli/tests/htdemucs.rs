//! `roformer separate` and `eval` with HT Demucs checkpoints: the MSST fixture separated by the
//! binary must give MSST's demix output (tests/fixtures/htdemucs, made by
//! tools/gen_htdemucs_fixtures.py).

mod common;

use common::{p, repo, roformer, snr_db, stderr};

#[test]
fn separate_writes_msst_stems_for_an_msst_checkpoint() {
    let fixture = repo().join("tests/fixtures/htdemucs/htdemucs_6stem_merge");
    let out = tempfile::tempdir().unwrap();
    let o = roformer(&[
        "separate",
        p(&fixture.join("mixture.wav")),
        "--model",
        p(&fixture.join("model.ckpt")),
        "--config",
        p(&fixture.join("config.yaml")),
        "--pcm",
        "f32",
        "-q",
        "-o",
        p(out.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference =
        roformer::weights::load_state_dict(&fixture.join("reference.safetensors")).unwrap();
    let theirs = reference.get("separated").unwrap();
    let stems = ["drums", "bass", "other", "vocals", "guitar", "piano"];
    for (i, stem) in stems.iter().enumerate() {
        let file = out.path().join("mixture").join(format!("{stem}.wav"));
        let ours = roformer::audio::decode_file(&file).unwrap();
        let ours: Vec<f32> = ours.channels().iter().flatten().copied().collect();
        let theirs: Vec<f32> = theirs
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let snr = snr_db(&theirs, &ours);
        assert!(snr >= 60.0, "{stem}: SNR {snr:.1} dB against MSST");
    }
}

#[test]
fn reduced_precision_is_refused_for_htdemucs_with_a_reason() {
    let fixture = repo().join("tests/fixtures/htdemucs/htdemucs_4stem");
    let out = tempfile::tempdir().unwrap();
    let o = roformer(&[
        "separate",
        p(&fixture.join("mixture.wav")),
        "--model",
        p(&fixture.join("model.ckpt")),
        "--config",
        p(&fixture.join("config.yaml")),
        "--precision",
        "int8",
        "-o",
        p(out.path()),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("HT Demucs runs in f32 only"), "{err}");
}

/// A Facebook `.th` package needs no config: it comes from the class's keyword arguments. Its
/// weights are the MSST checkpoint's rounded to fp16, so the stems stay close to MSST's f32
/// output (the rounding bounds the agreement), with the same chunking (segment 1 s, 4 chunks).
#[test]
fn a_facebook_th_package_separates_without_a_config() {
    let fixture = repo().join("tests/fixtures/htdemucs/htdemucs_4stem");
    let out = tempfile::tempdir().unwrap();
    let o = roformer(&[
        "separate",
        p(&fixture.join("mixture.wav")),
        "--model",
        p(&fixture.join("model.th")),
        "--pcm",
        "f32",
        "-o",
        p(out.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference =
        roformer::weights::load_state_dict(&fixture.join("reference.safetensors")).unwrap();
    let theirs = reference.get("separated").unwrap();
    for (i, stem) in ["drums", "bass", "other", "vocals"].iter().enumerate() {
        let file = out.path().join("mixture").join(format!("{stem}.wav"));
        let ours = roformer::audio::decode_file(&file).unwrap();
        let ours: Vec<f32> = ours.channels().iter().flatten().copied().collect();
        let theirs: Vec<f32> = theirs
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let snr = snr_db(&theirs, &ours);
        println!("{stem}: {snr:.1} dB");
        assert!(
            snr >= 50.0,
            "{stem}: SNR {snr:.1} dB against MSST's f32 model"
        );
    }
}

/// `convert` writes a `.th` package as one safetensors file with its config: separating with
/// it gives the bytes separating with the package gives.
#[test]
fn a_converted_package_separates_like_the_package() {
    let fixture = repo().join("tests/fixtures/htdemucs/htdemucs_4stem");
    let scratch = tempfile::tempdir().unwrap();
    let converted = scratch.path().join("htdemucs.safetensors");
    let o = roformer(&["convert", p(&fixture.join("model.th")), "-o", p(&converted)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let separate = |model: &std::path::Path, out: &std::path::Path| {
        let o = roformer(&[
            "separate",
            p(&fixture.join("mixture.wav")),
            "--model",
            p(model),
            "-q",
            "-o",
            p(out),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        common::tree_bytes(out)
    };
    let from_package = separate(&fixture.join("model.th"), &scratch.path().join("a"));
    let from_converted = separate(&converted, &scratch.path().join("b"));
    assert_eq!(from_package.len(), 4);
    assert_eq!(from_package, from_converted);
}

/// HT Demucs goes through the same separator as the RoFormers: `--tta --instrumental` (the
/// instrumental is mixture - vocals, MSST's `--extract_instrumental`), and an ensemble with a
/// BS-RoFormer (the stems of both, `vocals` and `other` averaged).
#[test]
fn tta_instrumental_and_an_ensemble_with_a_roformer() {
    let ht = repo().join("tests/fixtures/htdemucs/htdemucs_4stem");
    let bs = repo().join("tests/fixtures/models/bs_stereo_2stem_hop512");
    let out = tempfile::tempdir().unwrap();
    let mixture = ht.join("mixture.wav");
    let o = roformer(&[
        "separate",
        p(&mixture),
        "--model",
        p(&ht.join("model.ckpt")),
        "--config",
        p(&ht.join("config.yaml")),
        "--tta",
        "--instrumental",
        "--pcm",
        "f32",
        "-q",
        "-o",
        p(out.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |stem: &str| {
        let a =
            roformer::audio::decode_file(&out.path().join("mixture").join(format!("{stem}.wav")))
                .unwrap();
        a.channels().iter().flatten().copied().collect::<Vec<f32>>()
    };
    let mix: Vec<f32> = roformer::audio::decode_file(&mixture)
        .unwrap()
        .channels()
        .iter()
        .flatten()
        .copied()
        .collect();
    let (vocals, instrumental) = (read("vocals"), read("instrumental"));
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
    let o = roformer(&[
        "separate",
        p(&mixture),
        "--model",
        p(&ht.join("model.ckpt")),
        "--config",
        p(&ht.join("config.yaml")),
        "--model",
        p(&bs.join("model.ckpt")),
        "--config",
        p(&bs.join("config.yaml")),
        "-q",
        "-o",
        p(out.path()),
    ]);
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
    let fixture = repo().join("tests/fixtures/htdemucs/htdemucs_4stem");
    let scratch = tempfile::tempdir().unwrap();
    let track = scratch.path().join("refs").join("song");
    std::fs::create_dir_all(&track).unwrap();
    std::fs::copy(fixture.join("mixture.wav"), track.join("mixture.wav")).unwrap();
    let reference =
        roformer::weights::load_state_dict(&fixture.join("reference.safetensors")).unwrap();
    let separated = reference.get("separated").unwrap();
    for (i, stem) in ["drums", "bass", "other", "vocals"].iter().enumerate() {
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
    for stem in ["drums", "bass", "other", "vocals"] {
        let sdr = scores["tracks"][0]["stems"][stem]["sdr"].as_f64().unwrap();
        assert!(sdr > 60.0, "{stem}: SDR {sdr:.1} dB");
    }
}
