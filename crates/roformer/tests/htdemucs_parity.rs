//! Parity with MSST's HT Demucs (`models/demucs4ht.py` over the `demucs` package) on fixtures
//! made by `tools/gen_htdemucs_fixtures.py` (random weights; see
//! tests/fixtures/htdemucs/*/config.yaml).

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::snr_db;
use roformer::cpu::Precision;
use roformer::engine::Engine;
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

/// Each engine and the SNR it must reach against MSST: both engines in f32 60 dB (the issue's
/// bar), the fused engine's reduced precisions 30 dB.
const ENGINES: [(Engine, f64); 4] = [
    (Engine::Reference, 60.0),
    (Engine::FusedCpu(Precision::F32), 60.0),
    (Engine::FusedCpu(Precision::Bf16), 30.0),
    (Engine::FusedCpu(Precision::Int8), 30.0),
];

/// Every fixture on every engine, with the engine's bar.
fn cases() -> Vec<(PathBuf, Engine, f64)> {
    fixtures()
        .iter()
        .flat_map(|d| ENGINES.map(|(e, min_db)| (d.clone(), e, min_db)))
        .collect()
}

fn open(d: &Path, engine: Engine) -> (MsstHtDemucsConfig, HtDemucs) {
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
    .unwrap()
    .with_engine(engine)
    .unwrap();
    state.finish().unwrap();
    (config, model)
}

#[test]
fn one_chunk_separates_like_msst() {
    for (dir, engine, min_db) in cases() {
        let name = format!("{} ({engine})", name(&dir));
        let (config, model) = open(&dir, engine);
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
        assert!(snr >= min_db, "{name}: chunk output SNR {snr:.1} dB");
    }
}

#[test]
fn a_track_demixes_like_msst_in_demucs_mode() {
    use roformer::separate::{demix, ChunkMode, DemixOptions};
    for (dir, engine, min_db) in cases() {
        let name = format!("{} ({engine})", name(&dir));
        let (config, model) = open(&dir, engine);
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
            assert!(snr >= min_db, "{name}: demix SNR {snr:.1} dB");
        }
    }
}
