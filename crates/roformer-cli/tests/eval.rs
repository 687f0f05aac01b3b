//! `roformer eval` against the reference implementations (museval 0.4.1 and MSST's metric
//! functions, through tests/fixtures/metrics written by tools/gen_metric_fixtures.py), and its
//! handling of folders, mismatched files and `--model`.

mod common;
use common::{p, roformer, stderr};

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::Value;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Agreement required with the Python references, in dB (and in points for fullness/bleedless).
const TOLERANCE: f64 = 0.01;
const SR: u32 = 44100;
const STEMS: [&str; 4] = ["vocals", "drums", "bass", "other"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Planar samples of any audio file symphonia reads (the fixtures are 16-bit FLAC).
fn read_audio(path: &Path) -> Vec<Vec<f32>> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .unwrap();
    let track = format.default_track(TrackType::Audio).unwrap();
    let id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .unwrap()
        .audio()
        .unwrap()
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .unwrap();
    let mut out: Vec<Vec<f32>> = Vec::new();
    while let Ok(Some(packet)) = format.next_packet() {
        if packet.track_id != id {
            continue;
        }
        let buf = decoder.decode(&packet).unwrap();
        let mut planes: Vec<Vec<f32>> = Vec::new();
        buf.copy_to_vecs_planar::<f32>(&mut planes);
        if out.is_empty() {
            out = vec![Vec::new(); planes.len()];
        }
        for (o, p) in out.iter_mut().zip(planes) {
            o.extend(p);
        }
    }
    out
}

fn write_wav(path: &Path, channels: &[Vec<f32>], rate: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..channels[0].len() {
        for c in channels {
            w.write_sample(c[n]).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// The fixture track's references as float64, plus `instrumental` and `mixture`.
fn references(dir: &Path) -> BTreeMap<String, Vec<Vec<f64>>> {
    let mut refs: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for s in STEMS {
        let audio = read_audio(&dir.join(format!("{s}.flac")));
        assert_eq!(audio.len(), 2);
        // 16-bit samples: the decoder's floats are the integers / 32768, as soundfile reads them.
        assert!(audio[0]
            .iter()
            .take(100_000)
            .all(|x| (x * 32768.0).fract() == 0.0));
        refs.insert(
            s.to_string(),
            audio
                .iter()
                .map(|c| c.iter().map(|&x| f64::from(x)).collect())
                .collect(),
        );
    }
    let add = |names: &[&str]| -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = refs[names[0]].clone();
        for n in &names[1..] {
            for (o, c) in out.iter_mut().zip(&refs[*n]) {
                for (o, x) in o.iter_mut().zip(c) {
                    *o += x;
                }
            }
        }
        out
    };
    let instrumental = add(&["drums", "bass", "other"]);
    let mixture = add(&STEMS);
    refs.insert("instrumental".into(), instrumental);
    refs.insert("mixture".into(), mixture);
    refs
}

/// tools/gen_metric_fixtures.py's noise: splitmix64 of `seed + (i + 1) * golden`, uniform in [-1, 1).
fn splitmix_noise(seed: u64, count: usize) -> Vec<f64> {
    (1..=count as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            2.0 * ((z >> 11) as f64 / 9_007_199_254_740_992.0) - 1.0
        })
        .collect()
}

/// tools/gen_metric_fixtures.py's `build_estimate`, operation for operation.
fn build_estimate(
    refs: &BTreeMap<String, Vec<Vec<f64>>>,
    stem: &str,
    recipe: &Value,
) -> Vec<Vec<f32>> {
    let gain = recipe.get("gain").and_then(Value::as_f64).unwrap_or(1.0);
    let base = &refs[recipe["base"].as_str().unwrap()];
    let mut x: Vec<Vec<f64>> = base
        .iter()
        .map(|c| c.iter().map(|v| gain * v).collect())
        .collect();
    if let Some(fir) = recipe.get("fir") {
        let h: Vec<f64> = fir
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        x = x
            .iter()
            .map(|c| {
                (0..c.len())
                    .map(|n| {
                        h.iter()
                            .enumerate()
                            .filter(|(k, _)| *k <= n)
                            .map(|(k, hk)| hk * c[n - k])
                            .sum()
                    })
                    .collect()
            })
            .collect();
    }
    for leak in recipe
        .get("leaks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = leak["gain"].as_f64().unwrap();
        let other = &refs[leak["stem"].as_str().unwrap()];
        for (c, o) in x.iter_mut().zip(other) {
            for (v, o) in c.iter_mut().zip(o) {
                *v += g * o;
            }
        }
    }
    if let Some(noise) = recipe.get("noise") {
        let target = &refs[stem];
        let n = target[0].len();
        let values = splitmix_noise(noise["seed"].as_u64().unwrap(), x.len() * n);
        let energy: f64 = target.iter().flatten().map(|v| v * v).sum();
        let noise_energy: f64 = values.iter().map(|v| v * v).sum();
        let snr = noise["snr_db"].as_f64().unwrap();
        let scale = (energy / (noise_energy * 10f64.powf(snr / 10.0))).sqrt();
        for (c, chan) in x.iter_mut().enumerate() {
            for (i, v) in chan.iter_mut().enumerate() {
                *v += scale * values[c * n + i];
            }
        }
    }
    for span in recipe
        .get("zero")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = (span[0].as_f64().unwrap() * f64::from(SR)).round() as usize;
        let e = (span[1].as_f64().unwrap() * f64::from(SR)).round() as usize;
        for c in &mut x {
            let end = e.min(c.len());
            for v in &mut c[s..end] {
                *v = 0.0;
            }
        }
    }
    x.iter()
        .map(|c| c.iter().map(|&v| v as f32).collect())
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// |a - b| for two JSON numbers, with null (NaN) equal only to null.
fn diff(ours: &Value, want: &Value, what: &str) -> f64 {
    match (ours.as_f64(), want.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs(),
        (None, None) => 0.0,
        _ => panic!("{what}: ours {ours}, reference {want}"),
    }
}

#[test]
fn metrics_match_museval_and_msst() {
    let root = fixtures().join("metrics");
    let expected = read_json(&root.join("expected.json"));
    let track = expected["track"].as_str().unwrap();
    let ref_root = root.join("references");
    let refs = references(&ref_root.join(track));
    let tmp = tempfile::tempdir().unwrap();
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    let mut worst_frame = 0.0f64;
    for case in expected["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let est_root = tmp.path().join(name);
        for (stem, recipe) in case["estimates"].as_object().unwrap() {
            let est = build_estimate(&refs, stem, recipe);
            write_wav(&est_root.join(track).join(format!("{stem}.wav")), &est, SR);
        }
        let json = tmp.path().join(format!("{name}.json"));
        let out = roformer(&[
            "eval",
            "--references",
            p(&ref_root),
            "--estimates",
            p(&est_root),
            "--json",
            p(&json),
            "--frames",
            "-q",
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let ours = read_json(&json);
        let tracks = ours["tracks"].as_array().unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0]["name"], track);
        let stems = tracks[0]["stems"].as_object().unwrap();
        let want_stems = case["stems"].as_object().unwrap();
        assert_eq!(stems.len(), want_stems.len(), "{name}: stems scored");
        for (stem, want) in want_stems {
            let got = &stems[stem];
            for metric in [
                "sdr",
                "si_sdr",
                "bss_sdr",
                "bss_isr",
                "bss_sir",
                "bss_sar",
                "fullness",
                "bleedless",
            ] {
                let d = diff(
                    &got[metric],
                    &want[metric],
                    &format!("{name}/{stem}/{metric}"),
                );
                assert!(
                    d <= TOLERANCE,
                    "{name}/{stem}/{metric}: ours {} vs reference {} (|diff| {d})",
                    got[metric],
                    want[metric]
                );
                let w = worst.entry(metric).or_default();
                *w = w.max(d);
            }
            for m in ["sdr", "isr", "sir", "sar"] {
                let ours_f = got["bss_frames"][m].as_array().unwrap();
                let want_f = want["bss_frames"][m].as_array().unwrap();
                assert_eq!(ours_f.len(), want_f.len(), "{name}/{stem}: window count");
                for (t, (a, b)) in ours_f.iter().zip(want_f).enumerate() {
                    let d = diff(a, b, &format!("{name}/{stem}/{m} window {t}"));
                    assert!(
                        d <= TOLERANCE,
                        "{name}/{stem}/{m} window {t}: ours {a} vs museval {b}"
                    );
                    worst_frame = worst_frame.max(d);
                }
            }
        }
        // The silent windows: the vocals reference is silent in window 0 (every case), the
        // `other` estimate in window 5 (four_stems).
        let frames = &stems["vocals"]["bss_frames"]["sdr"];
        assert!(frames[0].is_null(), "{name}: window 0 should be NaN");
        if name == "four_stems" {
            assert!(frames[5].is_null(), "window 5 should be NaN");
        }
        // The summary of a single track is that track.
        let summary = &ours["summary"]["vocals"]["sdr"];
        assert_eq!(summary["mean"], stems["vocals"]["sdr"]);
        assert_eq!(summary["median"], stems["vocals"]["sdr"]);
    }
    eprintln!("largest |ours - reference| per metric: {worst:?}; per window: {worst_frame:e}");
}

/// A two-stem track (`vocals`, `other`) of `len` samples in `root/REF/song` and estimates in
/// `root/EST/song`, from the fixture mixture of the tiny model.
fn small_track(root: &Path, est_len: usize) -> (PathBuf, PathBuf) {
    let mix = read_audio(&fixtures().join("models/bs_stereo_2stem_hop512/mixture.wav"));
    let scaled = |g: f32, len: usize| -> Vec<Vec<f32>> {
        mix.iter()
            .map(|c| {
                c.iter()
                    .take(len)
                    .enumerate()
                    .map(|(i, v)| v * g + 0.01 * ((i % 7) as f32 - 3.0) / 3.0)
                    .collect()
            })
            .collect()
    };
    let n = mix[0].len();
    let (reference, estimates) = (root.join("REF"), root.join("EST"));
    write_wav(&reference.join("song/mixture.wav"), &mix, SR);
    write_wav(&reference.join("song/vocals.wav"), &scaled(0.4, n), SR);
    write_wav(&reference.join("song/other.wav"), &scaled(0.6, n), SR);
    write_wav(
        &estimates.join("song/vocals.wav"),
        &scaled(0.45, est_len),
        SR,
    );
    write_wav(&estimates.join("song/other.wav"), &scaled(0.55, n), SR);
    (reference, estimates)
}

#[test]
fn different_lengths_are_errors_unless_trimmed() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, estimates) = small_track(tmp.path(), 88200 - 300);
    let out = roformer(&["eval", "-r", p(&reference), "-e", p(&estimates), "-q"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("lengths differ"), "{err}");
    assert!(err.contains(p(&estimates.join("song/vocals.wav"))), "{err}");
    assert!(err.contains("--trim"), "{err}");

    let csv = tmp.path().join("scores.csv");
    let out = roformer(&[
        "eval",
        "-r",
        p(&reference),
        "-e",
        p(&estimates),
        "--trim",
        "--csv",
        p(&csv),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "track,stem,sdr,si_sdr,bss_sdr,bss_isr,bss_sir,bss_sar,fullness,bleedless"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("song,vocals,"), "{text}");
    let table = String::from_utf8_lossy(&out.stdout);
    for label in ["mean", "median", "bss_sdr", "global SDR", "BSSEval v4"] {
        assert!(table.contains(label), "{label} missing from\n{table}");
    }
}

#[test]
fn different_rates_or_channels_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, estimates) = small_track(tmp.path(), 88200);
    let mono = vec![vec![0.1f32; 88200]];
    write_wav(&estimates.join("song/other.wav"), &mono, SR);
    let out = roformer(&["eval", "-r", p(&reference), "-e", p(&estimates), "--trim"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("channel counts differ"), "{err}");
    assert!(err.contains(p(&estimates.join("song/other.wav"))), "{err}");

    write_wav(
        &estimates.join("song/other.wav"),
        &[vec![0.1f32; 88200], vec![0.1f32; 88200]],
        48000,
    );
    let out = roformer(&["eval", "-r", p(&reference), "-e", p(&estimates), "--trim"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("sample rates differ"), "{err}");
    assert!(err.contains("48000 Hz"), "{err}");
}

#[test]
fn model_mode_scores_what_separate_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, _) = small_track(tmp.path(), 88200);
    let model_dir = fixtures().join("models/bs_stereo_2stem_hop512");
    let separated = tmp.path().join("separated");
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    let out = roformer(&[
        "eval",
        "-r",
        p(&reference),
        "--model",
        p(&model_dir.join("model.ckpt")),
        "--config",
        p(&model_dir.join("config.yaml")),
        "--instrumental",
        "--separated",
        p(&separated),
        "--json",
        p(&a),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for stem in ["vocals", "other", "instrumental"] {
        assert!(
            separated.join(format!("song/{stem}.wav")).exists(),
            "{stem}"
        );
    }
    let out = roformer(&[
        "eval",
        "-r",
        p(&reference),
        "-e",
        p(&separated),
        "--json",
        p(&b),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (read_json(&a), read_json(&b));
    assert_eq!(a, b);
    let stems = a["tracks"][0]["stems"].as_object().unwrap();
    let names: Vec<&String> = stems.keys().collect();
    assert_eq!(names, ["instrumental", "other", "vocals"]);
    assert!(stems["vocals"]["bss_sdr"].is_number());
    assert!(stems["instrumental"]["sdr"].is_number());
}
