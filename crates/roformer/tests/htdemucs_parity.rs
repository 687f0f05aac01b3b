//! Parity with MSST's HT Demucs (`models/demucs4ht.py` over the `demucs` package) on fixtures
//! made by `tools/gen_htdemucs_fixtures.py` (random weights; see
//! tests/fixtures/htdemucs/*/config.yaml).

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::snr_db;
use roformer::model::htdemucs::config::MsstHtDemucsConfig;
use roformer::model::htdemucs::HtDemucs;
use roformer::weights::load_state_dict;

/// The committed fixtures, and `HTDEMUCS_FIXTURE_DIR` when set (the released shape, made by
/// `tools/gen_htdemucs_fixtures.py --real-shape`: too big to commit).
fn fixtures() -> Vec<PathBuf> {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/htdemucs");
    let mut dirs: Vec<PathBuf> = ["htdemucs_4stem", "htdemucs_6stem_merge"]
        .iter()
        .map(|n| committed.join(n))
        .collect();
    dirs.extend(std::env::var_os("HTDEMUCS_FIXTURE_DIR").map(PathBuf::from));
    dirs
}

fn name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

fn open(d: &Path) -> (MsstHtDemucsConfig, HtDemucs) {
    let path = d.join("config.yaml");
    let config =
        MsstHtDemucsConfig::from_yaml(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let mut state = load_state_dict(&d.join("model.ckpt")).unwrap();
    let model = HtDemucs::load(
        &config.htdemucs,
        config.training.instruments.len(),
        config.training.channels,
        &mut state.root(),
        &Device::Cpu,
    )
    .unwrap();
    state.finish().unwrap();
    (config, model)
}

#[test]
fn one_chunk_separates_like_msst() {
    for dir in fixtures() {
        let name = name(&dir);
        let (config, model) = open(&dir);
        let reference = load_state_dict(&dir.join("reference.safetensors")).unwrap();
        let get = |k: &str| -> Vec<f32> {
            reference
                .get(k)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let input = get("chunk_input");
        let len = config.chunk_size();
        let ours = model.separate_batch(&input, 1, len).unwrap();
        let snr = snr_db(&get("chunk_output"), &ours);
        println!("{name}: chunk output SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: chunk output SNR {snr:.1} dB");
    }
}

#[test]
fn a_track_demixes_like_msst_in_demucs_mode() {
    use roformer::separate::{demix, ChunkMode, DemixOptions};
    for dir in fixtures() {
        let name = name(&dir);
        let (config, model) = open(&dir);
        let mix = roformer::audio::decode_file(&dir.join("mixture.wav"))
            .unwrap()
            .into_channels();
        let reference = load_state_dict(&dir.join("reference.safetensors")).unwrap();
        let theirs: Vec<f32> = reference
            .get("separated")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for batch_size in [1, 3] {
            let options = DemixOptions {
                chunk_size: config.chunk_size(),
                num_overlap: config.inference.num_overlap,
                batch_size,
                mode: ChunkMode::Demucs,
            };
            let ours: Vec<f32> = demix(&model, &mix, &options, &mut |_| {})
                .unwrap()
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            let snr = snr_db(&theirs, &ours);
            println!("{name}: demix SNR {snr:.1} dB (batch {batch_size})");
            assert!(snr >= 60.0, "{name}: demix SNR {snr:.1} dB");
        }
    }
}
