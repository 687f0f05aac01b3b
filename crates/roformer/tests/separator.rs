//! The library façade, used as an embedding program would: MSST parity through
//! `Separator::separate`, the streamed file form against the in-memory one, cancellation,
//! concurrent use of one separator, and typed errors (never panics) for bad input.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use roformer::audio::{decode_file, OutputFormat, PcmFormat};
use roformer::{Audio, CancelToken, Error, FileOptions, FileOutcome, Hooks, Separator};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

fn open(name: &str, instrumental: bool) -> Separator {
    let dir = fixture(name);
    Separator::builder(dir.join("model.ckpt"))
        .config(dir.join("config.yaml"))
        .instrumental(instrumental)
        .open()
        .unwrap()
}

/// MSST's result for the fixture mixture: `(stem, [channel][sample] flattened)`, with the
/// instrumental last where the fixture has it (single-stem models).
fn msst_reference(name: &str) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(fixture(name).join("reference.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let names = meta.metadata().as_ref().unwrap()["instruments"].clone();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        let t = tensors.tensor(key).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32);
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let separated = floats("separated");
    let stems: Vec<&str> = names.split(',').collect();
    let per_stem = separated.len() / stems.len();
    let mut out: Vec<(String, Vec<f32>)> = stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.to_string(),
                separated[i * per_stem..(i + 1) * per_stem].to_vec(),
            )
        })
        .collect();
    if tensors.names().contains(&"separated_instrumental") {
        out.push(("instrumental".into(), floats("separated_instrumental")));
    }
    out
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

fn bits(a: &Audio) -> Vec<u32> {
    a.channels().iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn separate_matches_msst_with_named_stems_and_the_instrumental() {
    for name in [
        "bs_stereo_2stem_hop512",
        "mel_tiny_stereo",
        "bs_mono_hop441",
    ] {
        let reference = msst_reference(name);
        let instrumental = reference.iter().any(|(s, _)| s == "instrumental");
        let separator = open(name, instrumental);
        let mix = decode_file(&fixture(name).join("mixture.wav")).unwrap();
        let mut done = 0;
        let stems = {
            let mut hooks = Hooks::new().progress(|p| done = p.chunks_done.max(done));
            separator.separate_with(&mix, &mut hooks).unwrap()
        };
        assert!(done > 0, "{name}: progress was reported");
        let names: Vec<&str> = stems.names().collect();
        let wanted: Vec<&str> = reference.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, wanted, "{name}");
        assert_eq!(separator.stems(), wanted.as_slice());
        for (stem, theirs) in &reference {
            let ours = stems.get(stem).unwrap();
            assert_eq!(ours.sample_rate(), separator.sample_rate());
            assert_eq!(ours.num_channels(), separator.channels());
            let ours: Vec<f32> = ours.channels().iter().flatten().copied().collect();
            let snr = snr_db(theirs, &ours);
            println!("{name} {stem}: {snr:.1} dB");
            assert!(snr >= 60.0, "{name} {stem}: {snr:.1} dB");
        }
    }
}

#[test]
fn streamed_file_separation_gives_the_in_memory_samples() {
    let name = "bs_stereo_2stem_hop512";
    let separator = open(name, true);
    let input = fixture(name).join("mixture.wav");
    let stems = separator.separate(&decode_file(&input).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let options = FileOptions::with_format(OutputFormat::Wav(PcmFormat::Float32));
    let outcome = separator
        .separate_file(&input, out.path(), &options, &mut Hooks::new())
        .unwrap();
    let FileOutcome::Written(files) = outcome else {
        panic!("nothing written")
    };
    assert_eq!(files.len(), stems.len());
    for (stem, audio) in stems.iter() {
        let file = decode_file(&out.path().join(format!("{stem}.wav"))).unwrap();
        assert_eq!(bits(&file), bits(audio), "{stem}");
    }
    // A second run leaves the complete outputs alone.
    let again = separator
        .separate_file(&input, out.path(), &options, &mut Hooks::new())
        .unwrap();
    assert_eq!(again, FileOutcome::Skipped);
}

#[test]
fn interleaved_audio_at_another_rate_is_resampled_and_adapted() {
    let separator = open("bs_stereo_2stem_hop512", false);
    // Mono, at half the model's rate: resampled, then duplicated to stereo.
    let rate = separator.sample_rate() / 2;
    let mono: Vec<f32> = (0..rate).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
    let audio = Audio::from_interleaved(rate, 1, &mono).unwrap();
    let mut notices = Vec::new();
    let stems = {
        let mut hooks = Hooks::new().notice(|n| notices.push(n.to_string()));
        separator.separate_with(&audio, &mut hooks).unwrap()
    };
    assert_eq!(notices.len(), 2, "{notices:?}");
    for (_, stem) in stems.iter() {
        assert_eq!(stem.num_channels(), 2);
        assert_eq!(stem.sample_rate(), separator.sample_rate());
        assert_eq!(stem.frames(), 2 * mono.len());
    }
}

#[test]
fn non_finite_input_samples_are_reported_with_their_count() {
    let separator = open("bs_stereo_2stem_hop512", false);
    let rate = separator.sample_rate();
    let mut channels = vec![vec![0.1f32; rate as usize]; 2];
    channels[0][10] = f32::NAN;
    channels[1][20] = f32::INFINITY;
    channels[1][30] = f32::NEG_INFINITY;
    let audio = Audio::new(rate, channels).unwrap();
    let nan_notices = |notices: &[roformer::Notice]| {
        notices
            .iter()
            .filter(|n| matches!(n, roformer::Notice::NonFinite { samples: 3 }))
            .count()
    };
    let mut notices = Vec::new();
    separator
        .separate_with(
            &audio,
            &mut Hooks::new().notice(|n| notices.push(n.clone())),
        )
        .unwrap();
    assert_eq!(nan_notices(&notices), 1, "{notices:?}");
    // The same from a file, streamed.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("broken.wav");
    roformer::audio::write_audio_atomic(&input, &audio, OutputFormat::Wav(PcmFormat::Float32))
        .unwrap();
    let mut notices = Vec::new();
    separator
        .separate_file(
            &input,
            &dir.path().join("out"),
            &FileOptions::default(),
            &mut Hooks::new().notice(|n| notices.push(n.clone())),
        )
        .unwrap();
    assert_eq!(nan_notices(&notices), 1, "{notices:?}");
    assert!(notices[0].to_string().contains("3 NaN or infinite"));
}

#[test]
fn a_cancelled_separation_stops_and_writes_nothing() {
    let name = "bs_stereo_2stem_hop512";
    let dir = fixture(name);
    // Small chunks, so the track takes many model calls.
    let separator = Separator::builder(dir.join("model.ckpt"))
        .config(dir.join("config.yaml"))
        .chunk_size(Some(4096))
        .open()
        .unwrap();
    let token = CancelToken::new();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("stems");
    let mut calls = 0;
    let result = {
        let canceller = token.clone();
        let mut hooks = Hooks::new()
            .progress(|_| {
                calls += 1;
                canceller.cancel();
            })
            .cancel(token.clone());
        separator.separate_file(
            &dir.join("mixture.wav"),
            &target,
            &FileOptions::default(),
            &mut hooks,
        )
    };
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(calls, 1, "stopped before the next model call");
    assert!(!target.exists(), "no output folder or partial file is left");
}

#[test]
fn one_separator_serves_two_threads_at_once_with_sequential_results() {
    let separator = Arc::new(open("bs_stereo_2stem_hop512", false));
    let mix = decode_file(&fixture("bs_stereo_2stem_hop512").join("mixture.wav")).unwrap();
    let inputs: Vec<Audio> = [0.5f32, -0.8]
        .iter()
        .map(|g| {
            let channels = mix
                .channels()
                .iter()
                .map(|c| c.iter().map(|x| x * g).collect())
                .collect();
            Audio::new(mix.sample_rate(), channels).unwrap()
        })
        .collect();
    let sequential: Vec<Vec<Vec<u32>>> = inputs
        .iter()
        .map(|a| {
            separator
                .separate(a)
                .unwrap()
                .iter()
                .map(|(_, s)| bits(s))
                .collect()
        })
        .collect();
    let barrier = Barrier::new(inputs.len());
    let concurrent: Vec<Vec<Vec<u32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|a| {
                let (separator, barrier) = (&separator, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    separator
                        .separate(a)
                        .unwrap()
                        .iter()
                        .map(|(_, s)| bits(s))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(concurrent, sequential);
}

#[test]
fn bad_inputs_are_typed_errors_naming_the_problem() {
    let dir = fixture("bs_stereo_2stem_hop512");
    let tmp = tempfile::tempdir().unwrap();
    let message = |r: roformer::Result<Separator>| r.map(|_| ()).unwrap_err().to_string();

    // A truncated checkpoint names the file.
    let bytes = std::fs::read(dir.join("model.ckpt")).unwrap();
    let truncated = tmp.path().join("truncated.ckpt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = message(
        Separator::builder(&truncated)
            .config(dir.join("config.yaml"))
            .open(),
    );
    assert!(err.contains("truncated.ckpt"), "{err}");

    // A missing file, and a checkpoint without a config.
    let err = message(Separator::builder(tmp.path().join("nothing.ckpt")).open());
    assert!(err.contains("nothing.ckpt"), "{err}");
    let r = Separator::builder(dir.join("model.ckpt")).open();
    assert!(matches!(r, Err(Error::MissingConfig { .. })), "{r:?}");

    // Chunking that cannot separate.
    let r = Separator::builder(dir.join("model.ckpt"))
        .config(dir.join("config.yaml"))
        .chunk_size(Some(10))
        .open();
    assert!(matches!(r, Err(Error::InvalidChunking(_))), "{r:?}");
    let r = Separator::builder(dir.join("model.ckpt"))
        .config(dir.join("config.yaml"))
        .overlap(Some(0))
        .open();
    assert!(matches!(r, Err(Error::InvalidChunking(_))), "{r:?}");

    // An unknown device, and weights that do not fit an ensemble.
    let err = message(
        Separator::builder(dir.join("model.ckpt"))
            .device("tpu")
            .open(),
    );
    assert!(err.contains("tpu"), "{err}");
    let r = Separator::builder(dir.join("model.ckpt"))
        .config(dir.join("config.yaml"))
        .weights(vec![1.0, 2.0])
        .open();
    assert!(matches!(r, Err(Error::Ensemble(_))), "{r:?}");

    // Audio: ragged channels, empty audio, interleaved samples that do not divide.
    assert!(Audio::new(44100, vec![vec![0.0; 3], vec![0.0; 2]]).is_err());
    assert!(Audio::new(0, vec![vec![0.0; 3]]).is_err());
    assert!(Audio::from_interleaved(44100, 2, &[0.0; 3]).is_err());
    assert!(Audio::from_interleaved(44100, 0, &[]).is_err());
    let separator = open("bs_stereo_2stem_hop512", false);
    let empty = Audio::new(44100, vec![Vec::new(), Vec::new()]).unwrap();
    assert!(matches!(separator.separate(&empty), Err(Error::EmptyAudio)));

    // Files that are not audio name themselves; nothing is written.
    let text = tmp.path().join("notes.mp3");
    std::fs::write(&text, "not audio").unwrap();
    let out = tmp.path().join("out");
    let err = separator
        .separate_file(&text, &out, &FileOptions::default(), &mut Hooks::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("notes.mp3"), "{err}");
    assert!(!out.exists());
}
