//! `--resume` continues a run exactly: N batches in one go give the same weights (and EMA, and
//! log) as N/2 batches, a stop, and N/2 more after resuming from the checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use roformer::config::MsstConfig;
use roformer::train::data::{ChunkSampler, InMemorySource, SamplerOptions, StemSource};
use roformer::train::loss::LossKind;
use roformer::train::trainer::{TrainSetup, Trainer};
use roformer::weights::{load_state_dict, SplitMix64};

const FIXTURE: &str = "../../tests/fixtures/models/bs_stereo_2stem_hop512";

/// The fixture model's config with 2 batches per epoch, clipping, EMA and augmentations on.
fn config_yaml() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURE)
        .join("config.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .replace("num_steps: 1000", "num_steps: 2")
        .replace("grad_clip: 0", "grad_clip: 0.5")
        .replace("ema_momentum: 0.999", "ema_momentum: 0.9")
        .replace("lr: 1.0e-05", "lr: 1.0e-03");
    format!(
        "{text}\naugmentations:\n  enable: true\n  loudness: true\n  loudness_min: 0.5\n  \
         loudness_max: 1.5\n  all:\n    channel_shuffle: 0.5\n    random_polarity: 0.5\n"
    )
}

fn noise_tracks(seed: u64, tracks: usize, frames: usize) -> InMemorySource {
    let mut rng = SplitMix64::new(seed);
    let data = (0..tracks)
        .map(|_| {
            (0..2)
                .map(|_| {
                    (0..2 * frames)
                        .map(|_| (rng.next_f64() as f32 - 0.5) * 0.2)
                        .collect()
                })
                .collect()
        })
        .collect();
    InMemorySource::new(2, data).unwrap()
}

fn setup() -> TrainSetup {
    let yaml = config_yaml();
    let config = MsstConfig::from_yaml(&yaml, Path::new("resume-test.yaml")).unwrap();
    TrainSetup {
        config,
        config_yaml: yaml,
        loss: LossKind::Model,
        seed: 7,
        device: Device::Cpu,
        data_threads: 2,
    }
}

fn run_to(trainer: &mut Trainer, epochs: usize) {
    let config = trainer.config().clone();
    let options = SamplerOptions::from_config(&config, config.training.batch_size).unwrap();
    let source: Arc<dyn StemSource> = Arc::new(noise_tracks(1, 3, 40_000));
    let sampler = Arc::new(ChunkSampler::new(source, options, trainer.seed()).unwrap());
    let valid = noise_tracks(2, 1, 30_000);
    trainer
        .run(sampler, Some(&valid), epochs, &mut |_| {})
        .unwrap();
}

fn tensors(path: &Path) -> BTreeMap<String, Tensor> {
    load_state_dict(path).unwrap().tensors
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn resuming_gives_the_same_run_as_training_in_one_go() {
    let init = load_state_dict(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(FIXTURE)
            .join("model.ckpt"),
    )
    .unwrap()
    .tensors;
    let dir = tempfile::tempdir().unwrap();
    let (whole, halves) = (dir.path().join("whole"), dir.path().join("halves"));

    let mut t = Trainer::start(setup(), &whole, Some(init.clone())).unwrap();
    run_to(&mut t, 2);

    let mut t = Trainer::start(setup(), &halves, Some(init.clone())).unwrap();
    run_to(&mut t, 1);
    drop(t);
    // The run directory refuses a second start.
    assert!(Trainer::start(setup(), &halves, Some(init.clone())).is_err());
    let mut t = Trainer::resume(&halves, &Device::Cpu, 1).unwrap();
    assert_eq!(t.epochs_done(), 1);
    run_to(&mut t, 2);

    for file in ["last.safetensors", "state.safetensors"] {
        let a = tensors(&whole.join(file));
        let b = tensors(&halves.join(file));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (name, ta) in &a {
            let (va, vb) = (values(ta), values(&b[name]));
            let scale = va.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let diff = va
                .iter()
                .zip(&vb)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-6 * scale,
                "{file} {name}: differs by {diff:e} (scale {scale:e})"
            );
        }
    }
    // Training moved the weights (the comparison above is not between two untouched copies).
    let last = tensors(&whole.join("last.safetensors"));
    let moved = last
        .iter()
        .filter(|(k, v)| values(v) != values(&init[k.as_str()]))
        .count();
    assert!(moved > last.len() / 2, "only {moved} tensors changed");
    // Both logs hold the header and two epochs, the same but for the timing column.
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("log.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(strip(&whole).len(), 3);
    assert_eq!(strip(&whole), strip(&halves));
}
