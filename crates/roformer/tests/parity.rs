//! Parity with MSST's PyTorch BSRoformer on fixtures made by `tools/gen_fixtures.py`
//! (randomly initialised models of several shapes; see tests/fixtures/models/*/config.yaml).

mod common;

use common::{
    check_chunk_stft, check_engines_and_precisions, chunk_output_snr, flat, load, models_dir,
    packed_input, reference, separate_chunk, snr_db, Fixture,
};
use roformer::dsp::Stft;
use roformer::model::{BsRoformer, Network};
use roformer::weights::load_state_dict;

const MODELS: &[&str] = &[
    "bs_stereo_2stem_hop512",
    "bs_mono_hop441",
    "bs_4stem_linear_skip",
];

fn bs(f: &Fixture) -> &BsRoformer {
    match &f.model.network {
        Network::Bs(m) => m,
        _ => panic!("not a BS-RoFormer fixture"),
    }
}

#[test]
fn stft_of_a_chunk_matches_the_model_input() {
    check_chunk_stft(MODELS);
}

#[test]
fn masks_on_a_fixed_spectrogram_match_pytorch() {
    for name in MODELS {
        let f = load(name);
        let x = packed_input(&f);
        let (b, t, width) = x.dims3().unwrap();
        let ours = bs(&f).masks(&x).unwrap();
        // reference [1, n, (f s), t, 2] -> [1, n, t, (f s 2)]
        let theirs = reference(&f, "masks").permute((0, 1, 3, 2, 4)).unwrap();
        assert_eq!(
            ours.dims(),
            &[b, f.model.config.model.num_stems, t, width][..]
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
        let (ours, len) = separate_chunk(&f);
        let snr = chunk_output_snr(&f, &ours, len);
        println!("{name}: chunk output SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: chunk output SNR {snr:.1} dB");
    }
}

#[test]
fn stft_and_istft_match_torch() {
    let r = load_state_dict(&models_dir().join("stft/reference.safetensors")).unwrap();
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

#[test]
fn every_engine_and_precision_tracks_the_reference() {
    check_engines_and_precisions(MODELS);
}
