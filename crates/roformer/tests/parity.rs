//! Parity with MSST's PyTorch BSRoformer on fixtures made by `tools/gen_fixtures.py`
//! (randomly initialised models of several shapes; see tests/fixtures/models/*/config.yaml).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use roformer::dsp::Stft;
use roformer::model::{bs_roformer::pack_spectrograms, BsRoformer, LoadedModel, Network};
use roformer::separate::Separator;
use roformer::weights::load_state_dict;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// SNR of `ours` against `reference` in dB.
fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len(), "length mismatch");
    let signal: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(ours)
        .map(|(&r, &o)| (r as f64 - o as f64).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

const MODELS: &[&str] = &[
    "bs_stereo_2stem_hop512",
    "bs_mono_hop441",
    "bs_4stem_linear_skip",
];

struct Fixture {
    model: LoadedModel,
    reference: roformer::weights::StateDict,
}

fn load(name: &str) -> Fixture {
    let dir = fixtures().join("models").join(name);
    let model = LoadedModel::open(
        &dir.join("model.ckpt"),
        Some(&dir.join("config.yaml")),
        &Device::Cpu,
    )
    .unwrap();
    let reference = load_state_dict(&dir.join("reference.safetensors")).unwrap();
    Fixture { model, reference }
}

fn bs(f: &Fixture) -> &BsRoformer {
    match &f.model.network {
        Network::Bs(m) => m,
        _ => panic!("not a BS-RoFormer fixture"),
    }
}

fn reference(f: &Fixture, key: &str) -> Tensor {
    f.reference
        .get(key)
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .clone()
}

#[test]
fn stft_of_a_chunk_matches_the_model_input() {
    for name in MODELS {
        let f = load(name);
        let m = &f.model.config.model;
        let chunk = reference(&f, "chunk_input"); // [1, s, L]
        let (_, channels, len) = chunk.dims3().unwrap();
        let stft = Stft::new(m.stft_n_fft, m.stft_hop_length, m.stft_win_length).unwrap();
        let specs: Vec<_> = flat(&chunk)
            .chunks(len)
            .map(|c| stft.forward(c).unwrap())
            .collect();
        let ours = pack_spectrograms(&specs, 1, channels, &Device::Cpu).unwrap();
        // reference [1, (f s), t, 2] -> [1, t, (f s 2)]
        let theirs = reference(&f, "stft_input").permute((0, 2, 1, 3)).unwrap();
        let snr = snr_db(&flat(&theirs), &flat(&ours));
        println!("{name}: packed STFT SNR {snr:.1} dB");
        assert!(snr > 100.0, "{name}: STFT SNR {snr:.1} dB");
    }
}

#[test]
fn masks_on_a_fixed_spectrogram_match_pytorch() {
    for name in MODELS {
        let f = load(name);
        let x = reference(&f, "stft_input").permute((0, 2, 1, 3)).unwrap();
        let (b, t, fs, c) = x.dims4().unwrap();
        let x = x.reshape((b, t, fs * c)).unwrap();
        let ours = bs(&f).masks(&x).unwrap();
        // reference [1, n, (f s), t, 2] -> [1, n, t, (f s 2)]
        let theirs = reference(&f, "masks").permute((0, 1, 3, 2, 4)).unwrap();
        assert_eq!(
            ours.dims(),
            &[b, f.model.config.model.num_stems, t, fs * c][..]
        );
        let snr = snr_db(&flat(&theirs), &flat(&ours));
        println!("{name}: mask SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: mask SNR {snr:.1} dB");
    }
}

#[test]
fn one_chunk_separates_like_pytorch() {
    for name in MODELS {
        let f = load(name);
        let chunk = reference(&f, "chunk_input");
        let (_, _, len) = chunk.dims3().unwrap();
        let ours = f
            .model
            .network
            .separate_batch(&flat(&chunk), 1, len)
            .unwrap();
        let theirs = flat(&reference(&f, "chunk_output"));
        let snr = snr_db(&theirs, &ours);
        println!("{name}: chunk output SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: chunk output SNR {snr:.1} dB");
    }
}

#[test]
fn stft_and_istft_match_torch() {
    let r = load_state_dict(&fixtures().join("models/stft/reference.safetensors")).unwrap();
    let signal = r.get("signal").unwrap();
    let (channels, len) = signal.dims2().unwrap();
    let signal = flat(signal);
    for hop in [441, 512] {
        let stft = Stft::new(2048, hop, 2048).unwrap();
        let theirs = flat(r.get(&format!("stft_hop{hop}")).unwrap()); // [2, f, t, 2]
        let mut ours_packed = Vec::new();
        let mut specs = Vec::new();
        for ch in signal.chunks(len) {
            let spec = stft.forward(ch).unwrap();
            // frame-major [t][f] -> [f][t][re, im]
            for f in 0..spec.bins {
                for t in 0..spec.frames {
                    let v = spec.data[t * spec.bins + f];
                    ours_packed.extend([v.re, v.im]);
                }
            }
            specs.push(spec);
        }
        let snr = snr_db(&theirs, &ours_packed);
        assert!(snr > 100.0, "stft hop {hop}: {snr:.1} dB");

        let mut lengths = vec![(len, format!("istft_hop{hop}"))];
        if hop == 441 {
            lengths.push((19000, "istft_hop441_len19000".into()));
            lengths.push((20868, "istft_hop441_len20868".into()));
        }
        for (length, key) in lengths {
            let theirs = flat(r.get(&key).unwrap());
            let ours: Vec<f32> = specs
                .iter()
                .flat_map(|s| stft.inverse(s, length).unwrap())
                .collect();
            assert_eq!(ours.len(), channels * length);
            let snr = snr_db(&theirs, &ours);
            println!("{key}: {snr:.1} dB");
            // Past the natural end the window envelope tends to zero and dividing by it magnifies
            // rounding, in torch as in ours: there the bar is the project's 60 dB.
            let bar = if length > len { 60.0 } else { 100.0 };
            assert!(snr > bar, "{key}: {snr:.1} dB");
        }
    }
}
