//! `roformer bench-train`: time training steps (forward, loss, backward, optimiser step) of a
//! config's model on a synthetic batch, as `tools/bench_train_pytorch.py` times PyTorch's.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use roformer::config::MsstConfig;
use roformer::train::data::Batch;
use roformer::train::loss::LossKind;
use roformer::train::trainer::{TrainSetup, Trainer};
use roformer::weights::SplitMix64;
use serde_json::json;

use crate::bench::{median, peak_rss_bytes};
use crate::separate::configure_threads;

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// The model's MSST YAML config.
    #[arg(short, long)]
    config: PathBuf,
    /// Examples per batch (default: training.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Samples per example (default: audio.chunk_size).
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// `model` or `masked`.
    #[arg(long, default_value = "model")]
    loss: LossKind,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchTrainArgs) -> Result<()> {
    configure_threads(args.threads)?;
    let yaml = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config = MsstConfig::from_yaml(&yaml, &args.config)?;
    let batch = args.batch_size.unwrap_or(config.training.batch_size);
    let len = args.chunk_size.unwrap_or(config.audio.chunk_size);
    let (stems, channels) = (config.model.num_stems, config.model.audio_channels());
    let setup = TrainSetup {
        config,
        config_yaml: yaml,
        loss: args.loss,
        seed: 0,
        device: roformer::Device::Cpu,
        data_threads: 1,
    };
    let run_dir = std::env::temp_dir().join(format!("roformer-bench-train-{}", std::process::id()));
    let mut trainer = Trainer::start(setup, &run_dir, None)?;
    let parameters = trainer.params().num_trainable();
    // Uniform noise for the stems; the mixture is their sum.
    let mut rng = SplitMix64::new(1);
    let targets: Vec<f32> = (0..batch * stems * channels * len)
        .map(|_| (rng.next_f64() as f32 - 0.5) * 0.2)
        .collect();
    let mut mixture = vec![0.0f32; batch * channels * len];
    for (i, m) in mixture.iter_mut().enumerate() {
        let (b, rest) = (i / (channels * len), i % (channels * len));
        *m = (0..stems)
            .map(|n| targets[(b * stems + n) * channels * len + rest])
            .sum();
    }
    let data = Batch {
        mixture,
        targets,
        batch,
        channels,
        len,
        stems,
    };
    let mut times = Vec::with_capacity(args.steps);
    let mut loss = f64::NAN;
    for i in 0..args.warmup + args.steps {
        let t = Instant::now();
        loss = trainer.train_batch(&data, true)?;
        if i >= args.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    let per_step = median(&times);
    let rss = peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0));
    if args.json {
        println!(
            "{}",
            json!({
                "parameters": parameters,
                "batch": batch,
                "chunk": len,
                "loss": args.loss.to_string(),
                "median_s_per_step": per_step,
                "steps_per_s": 1.0 / per_step,
                "times": times,
                "last_loss": loss,
                "peak_rss_mb": rss,
            })
        );
    } else {
        println!(
            "{parameters} parameters, batch {batch} x {len} samples, {} loss: median {per_step:.3} s/step \
             ({:.3} steps/s) over {} steps, last loss {loss:.5}, peak RSS {}",
            args.loss,
            1.0 / per_step,
            times.len(),
            rss.map_or("unknown".into(), |r| format!("{r:.0} MiB"))
        );
    }
    Ok(())
}
