//! Parity with MSST's PyTorch `MelBandRoformer` on fixtures made by `tools/gen_fixtures.py`
//! (randomly initialised models; see tests/fixtures/models/mel_*/config.yaml), and of the mel band
//! layout with librosa's filterbank (tests/fixtures/models/mel_bands).

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::{
    check_chunk_stft, check_engines_and_precisions, chunk_output_snr, flat, load, models_dir,
    packed_input, reference, separate_chunk, snr_db, Fixture,
};
use roformer::engine::Engine;
use roformer::loaded_model::LoadedModel;
use roformer::model::mel_bands::{mel_filterbank, MelBands};
use roformer::model::{MelBandRoformer, Network};
use roformer::weights::load_state_dict;

fn as_usize(t: &Tensor) -> Vec<usize> {
    flat(t).into_iter().map(|v| v as usize).collect()
}

const MODELS: &[&str] = &["mel_tiny_stereo", "mel_tiny_mono"];

fn mel(f: &Fixture) -> &MelBandRoformer {
    match &f.model.network {
        Network::Mel(m) => m,
        _ => panic!("not a Mel-Band RoFormer fixture"),
    }
}

#[test]
fn band_layout_matches_librosa() {
    let r = load_state_dict(&models_dir().join("mel_bands/reference.safetensors")).unwrap();
    let cases = r.metadata["cases"].clone();
    for case in cases.split(';') {
        let v: Vec<usize> = case.split(',').map(|x| x.parse().unwrap()).collect();
        let (sr, n_fft, n_mels) = (v[0], v[1], v[2]);
        let key = format!("sr{sr}_nfft{n_fft}_mels{n_mels}");
        let bands = MelBands::new(sr as u32, n_fft, n_mels).unwrap();
        let get = |k: &str| as_usize(r.get(&format!("{key}.{k}")).unwrap());
        assert_eq!(
            bands.bands.iter().map(Vec::len).collect::<Vec<_>>(),
            get("num_freqs_per_band"),
            "{key}: bins per band"
        );
        assert_eq!(bands.freq_indices(1), get("freq_indices"), "{key}");
        assert_eq!(
            bands.bands_per_freq,
            get("num_bands_per_freq"),
            "{key}: bands per bin"
        );
        println!("{key}: {} memberships match", bands.freq_indices(1).len());
    }
    // Filterbank values: librosa's arithmetic repeated, so equal up to the last bit of exp/log.
    let theirs = flat(r.get("sr32000_nfft1024_mels40.filterbank").unwrap());
    let ours: Vec<f32> = mel_filterbank(32000.0, 1024, 40).concat();
    assert_eq!(theirs.len(), ours.len());
    let mut exact = 0;
    for (i, (&t, &o)) in theirs.iter().zip(&ours).enumerate() {
        assert!(
            (t - o).abs() <= 4.0 * f32::EPSILON * t.abs(),
            "filterbank value {i}: librosa {t:e}, ours {o:e}"
        );
        assert_eq!(t > 0.0, o > 0.0, "filterbank value {i}: {t:e} vs {o:e}");
        exact += usize::from(t == o);
    }
    println!("filterbank: {exact} of {} values bit-identical", ours.len());
}

#[test]
fn models_gather_the_bins_msst_gathers() {
    for name in MODELS {
        let f = load(name);
        let m = mel(&f);
        let theirs = as_usize(&reference(&f, "freq_indices"));
        assert_eq!(m.bands().freq_indices(m.channels()), theirs, "{name}");
    }
}

#[test]
fn stft_of_a_chunk_matches_the_model_input() {
    check_chunk_stft(MODELS);
}

#[test]
fn band_masks_on_a_fixed_spectrogram_match_pytorch() {
    for name in MODELS {
        let f = load(name);
        let ours = mel(&f).band_masks(&packed_input(&f)).unwrap();
        let theirs = reference(&f, "band_masks"); // [1, n, t, sum(band widths)]
        assert_eq!(ours.dims(), theirs.dims());
        let snr = snr_db(&flat(&theirs), &flat(&ours));
        println!("{name}: band mask SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: band mask SNR {snr:.1} dB");
    }
}

#[test]
fn averaged_masks_on_a_fixed_spectrogram_match_pytorch() {
    for name in MODELS {
        let f = load(name);
        let x = packed_input(&f);
        let ours = mel(&f).masks(&x).unwrap();
        // reference [1, n, (f s), t, 2] -> [1, n, t, (f s 2)]
        let theirs = reference(&f, "masks").permute((0, 1, 3, 2, 4)).unwrap();
        let (_, t, width) = x.dims3().unwrap();
        assert_eq!(
            ours.dims(),
            &[1, f.model.config.model.num_stems, t, width][..]
        );
        let snr = snr_db(&flat(&theirs), &flat(&ours));
        println!("{name}: averaged mask SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: averaged mask SNR {snr:.1} dB");
    }
}

#[test]
fn one_chunk_separates_like_pytorch() {
    for name in MODELS {
        let f = load(name);
        let (ours, len) = separate_chunk(&f);
        // [1, n, s, natural]: torch.istft's natural length unless match_input_audio_length.
        let theirs = reference(&f, "chunk_output");
        let natural = theirs.dims4().unwrap().3;
        let expected = if f.model.config.model.match_input_audio_length {
            len
        } else {
            len / f.model.config.model.stft_hop_length * f.model.config.model.stft_hop_length
        };
        assert_eq!(natural, expected, "{name}: reference length");
        let snr = chunk_output_snr(&f, &ours, len);
        println!("{name}: chunk output SNR {snr:.1} dB (natural length {natural} of {len})");
        assert!(snr >= 60.0, "{name}: chunk output SNR {snr:.1} dB");
    }
}

#[test]
fn uncoverable_band_layout_is_a_clear_error() {
    let dir = models_dir().join("mel_tiny_mono");
    let text = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    let text = text.replace("  num_bands: 10\n", "  num_bands: 600\n");
    let config =
        roformer::config::MsstConfig::from_yaml(&text, Path::new("too_many_bands.yaml")).unwrap();
    let state = load_state_dict(&dir.join("model.ckpt")).unwrap();
    let err = LoadedModel::from_state_dict(config, state, &Device::Cpu, Engine::Reference)
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_bands") && err.contains("600"), "{err}");
}

#[test]
fn every_engine_and_precision_tracks_the_reference() {
    check_engines_and_precisions(MODELS);
}
