//! Helpers shared by the parity tests (`parity.rs`, `mel_parity.rs`): fixture paths, fixture
//! models with their PyTorch reference tensors, and comparing outputs.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use roformer::cpu::Precision;
use roformer::dsp::Stft;
use roformer::engine::Engine;
use roformer::loaded_model::LoadedModel;
use roformer::model::bs_roformer::pack_spectrograms;
use roformer::separate::Separator;
use roformer::weights::{load_state_dict, StateDict};

/// `tests/fixtures/models` at the workspace root (made by `tools/gen_fixtures.py`).
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

/// SNR of `ours` against `reference` in dB.
pub fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len(), "length mismatch");
    let signal: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(ours)
        .map(|(&r, &o)| (r as f64 - o as f64).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// A fixture model (on the CPU) and the tensors PyTorch computed with it.
pub struct Fixture {
    pub model: LoadedModel,
    pub reference: StateDict,
}

/// Loads `models_dir()/name`: `model.ckpt`, `config.yaml` and `reference.safetensors`.
pub fn load(name: &str) -> Fixture {
    load_with(name, Engine::FusedCpu(Precision::F32))
}

/// [`load`] on a chosen engine and precision.
pub fn load_with(name: &str, engine: Engine) -> Fixture {
    let dir = models_dir().join(name);
    let model = LoadedModel::open(
        &dir.join("model.ckpt"),
        Some(&dir.join("config.yaml")),
        &Device::Cpu,
        engine,
    )
    .unwrap();
    let reference = load_state_dict(&dir.join("reference.safetensors")).unwrap();
    Fixture { model, reference }
}

pub fn reference(f: &Fixture, key: &str) -> Tensor {
    f.reference
        .get(key)
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .clone()
}

/// The reference spectrogram `[1, (f s), t, 2]` as our packed input `[1, t, (f s 2)]`.
pub fn packed_input(f: &Fixture) -> Tensor {
    let x = reference(f, "stft_input").permute((0, 2, 1, 3)).unwrap();
    let (b, t, fs, c) = x.dims4().unwrap();
    x.reshape((b, t, fs * c)).unwrap()
}

/// Our packed STFT of each model's `chunk_input` matches PyTorch's model input.
pub fn check_chunk_stft(models: &[&str]) {
    for name in models {
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
        let snr = snr_db(&flat(&packed_input(&f)), &flat(&ours));
        println!("{name}: packed STFT SNR {snr:.1} dB");
        assert!(snr > 100.0, "{name}: STFT SNR {snr:.1} dB");
    }
}

/// The model's separation of the fixture's `chunk_input` (`[1][stem][ch][len]` flattened), and
/// the chunk length `len`.
pub fn separate_chunk(f: &Fixture) -> (Vec<f32>, usize) {
    let chunk = reference(f, "chunk_input");
    let (_, _, len) = chunk.dims3().unwrap();
    let ours = f
        .model
        .network
        .separate_batch(&flat(&chunk), 1, len)
        .unwrap();
    (ours, len)
}

/// The plain framework engine and the fused CPU engine (the default) both match PyTorch on each
/// fixture's chunk; the fused engine's reduced precisions stay close to its f32 output.
pub fn check_engines_and_precisions(models: &[&str]) {
    for name in models {
        let fused = load(name);
        let (fused_out, len) = separate_chunk(&fused);
        let plain = load_with(name, Engine::Reference);
        let (plain_out, _) = separate_chunk(&plain);
        let snr = chunk_output_snr(&plain, &plain_out, len);
        println!("{name}: reference engine vs PyTorch {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: reference engine {snr:.1} dB");
        let snr = snr_db(&plain_out, &fused_out);
        println!("{name}: fused f32 vs reference engine {snr:.1} dB");
        assert!(
            snr >= 60.0,
            "{name}: fused f32 vs reference engine {snr:.1} dB"
        );
        // bf16 keeps 8 bits of mantissa per weight; int8 about 7 bits per weight and activation.
        for (precision, floor) in [(Precision::Bf16, 45.0), (Precision::Int8, 30.0)] {
            let f = load_with(name, Engine::FusedCpu(precision));
            let (out, _) = separate_chunk(&f);
            let snr = snr_db(&fused_out, &out);
            println!("{name}: fused {precision} vs fused f32 {snr:.1} dB");
            assert!(snr >= floor, "{name}: {precision} at {snr:.1} dB");
        }
    }
}

/// SNR of our separation of `chunk_input` (`[stem][ch][len]` rows) against PyTorch's
/// `chunk_output`, which has torch.istft's natural length when the model does not ask for the
/// input's length: our rows are compared on that head and must be zero past it.
pub fn chunk_output_snr(f: &Fixture, ours: &[f32], len: usize) -> f64 {
    let theirs = reference(f, "chunk_output");
    let natural = *theirs.dims().last().unwrap();
    let theirs = flat(&theirs);
    let mut head = Vec::with_capacity(theirs.len());
    for row in ours.chunks(len) {
        head.extend_from_slice(&row[..natural]);
        assert!(
            row[natural..].iter().all(|&v| v == 0.0),
            "samples past the iSTFT length are zero"
        );
    }
    snr_db(&theirs, &head)
}
