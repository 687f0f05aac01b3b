//! `roformer train`: train or fine-tune a model on a MUSDB18-style folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use roformer::config::MsstConfig;
use roformer::train::data::{ChunkSampler, SamplerOptions, StemSource};
use roformer::train::loss::LossKind;
use roformer::train::trainer::{Event, TrainSetup, Trainer};
use roformer::weights::load_state_dict;

use crate::train_data::FolderSource;

#[derive(Args)]
pub struct TrainArgs {
    /// MSST YAML config (model, audio, training, augmentations). Not needed with --resume.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training data: a folder of track folders (`<track>/<stem>.wav`), or a dataset root with
    /// `train/` (and `valid/`) inside, as MUSDB18-HQ and `tools/render-dataset` lay it out.
    #[arg(long)]
    data: PathBuf,
    /// Validation tracks (default: `valid/` next to `train/` when --data is a dataset root).
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Start from these weights (an MSST `.ckpt` or a `.safetensors` of the same architecture).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Run directory: checkpoints, optimiser state and log.csv.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// Continue the run in --out where its last checkpoint left it.
    #[arg(long)]
    resume: bool,
    /// `model` (L1 + multi-resolution STFT, MSST's default for RoFormers) or `masked`.
    #[arg(long, default_value = "model")]
    loss: LossKind,
    /// Total epochs (default: training.num_epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seeds the initial weights and the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Threads preparing batches in the background.
    #[arg(long, default_value_t = 2)]
    data_threads: usize,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// `DIR/train` when DIR is a dataset root, else DIR.
fn train_dir(data: &Path) -> PathBuf {
    let sub = data.join("train");
    if sub.is_dir() {
        sub
    } else {
        data.to_path_buf()
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let device = roformer::device::open_device(&args.device)?;
    let mut trainer = if args.resume {
        if args.config.is_some() || args.init.is_some() {
            bail!(
                "--resume continues with the run's saved config and weights: drop --config/--init"
            );
        }
        Trainer::resume(&args.out, &device, args.data_threads)
            .with_context(|| format!("cannot resume the run in {}", args.out.display()))?
    } else {
        let Some(config_path) = &args.config else {
            bail!("pass --config (or --resume to continue a run)");
        };
        let config_yaml = std::fs::read_to_string(config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let config = MsstConfig::from_yaml(&config_yaml, config_path)?;
        let init = match &args.init {
            Some(path) => Some(load_state_dict(path)?.tensors),
            None => None,
        };
        let setup = TrainSetup {
            config,
            config_yaml,
            loss: args.loss,
            seed: args.seed,
            device,
            data_threads: args.data_threads,
        };
        Trainer::start(setup, &args.out, init)?
    };
    let config = trainer.config().clone();
    let unsupported = config.augmentations.unsupported();
    if !unsupported.is_empty() {
        eprintln!(
            "warning: these augmentations are not implemented and are skipped: {}",
            unsupported.join(", ")
        );
    }
    if config.model.attn_dropout > 0.0 || config.model.ff_dropout > 0.0 {
        eprintln!(
            "warning: model.attn_dropout / ff_dropout ({} / {}) are not applied: this trainer runs \
             without dropout",
            config.model.attn_dropout, config.model.ff_dropout
        );
    }
    let instruments = &config.training.instruments;
    let (rate, channels) = (config.audio.sample_rate, config.model.audio_channels());
    let train_source = FolderSource::open(&train_dir(&args.data), instruments, rate, channels)?;
    let valid_dir = args.valid.clone().or_else(|| {
        let d = args.data.join("valid");
        d.is_dir().then_some(d)
    });
    let valid_source = match &valid_dir {
        Some(d) => Some(FolderSource::open(d, instruments, rate, channels)?),
        None => {
            eprintln!("no validation folder: no SDR, no `best` checkpoint, constant learning rate");
            None
        }
    };
    let options = SamplerOptions::from_config(&config, config.training.batch_size)?;
    let sampler = Arc::new(ChunkSampler::new(
        Arc::new(train_source),
        options,
        trainer.seed(),
    )?);
    let epochs = args.epochs.unwrap_or(config.training.num_epochs);
    if trainer.epochs_done() >= epochs {
        eprintln!(
            "the run has already done {} of {epochs} epochs",
            trainer.epochs_done()
        );
        return Ok(());
    }
    let mut view = ProgressView::new(args.quiet);
    trainer.run(
        sampler,
        valid_source.as_ref().map(|v| v as &dyn StemSource),
        epochs,
        &mut |e| view.event(e),
    )?;
    view.finish();
    eprintln!("done: {}", args.out.join("last.safetensors").display());
    Ok(())
}

/// Renders training events: a bar per epoch with the loss, batches/s and ETA; a line per
/// validation and checkpoint.
struct ProgressView {
    quiet: bool,
    bar: Option<ProgressBar>,
    batches: usize,
    epochs: usize,
    started: Instant,
    loss_sum: f64,
}

impl ProgressView {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            bar: None,
            batches: 0,
            epochs: 0,
            started: Instant::now(),
            loss_sum: 0.0,
        }
    }

    fn say(&self, line: String) {
        match &self.bar {
            // A hidden bar (quiet, or no terminal) prints nothing.
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Started {
                first_epoch,
                epochs,
                batches_per_epoch,
                parameters,
            } => {
                self.batches = batches_per_epoch;
                self.epochs = epochs;
                eprintln!(
                    "training {parameters} parameters: epochs {}..{epochs}, {batches_per_epoch} batches each",
                    first_epoch + 1
                );
            }
            Event::Batch { epoch, batch, loss } => {
                if batch == 0 {
                    self.started = Instant::now();
                    self.loss_sum = 0.0;
                    self.bar = Some(self.epoch_bar(epoch));
                }
                self.loss_sum += loss;
                let rate = (batch + 1) as f64 / self.started.elapsed().as_secs_f64();
                let message = format!(
                    "loss {loss:.4} (mean {:.4}), {rate:.2} batches/s",
                    self.loss_sum / (batch + 1) as f64
                );
                match &self.bar {
                    Some(bar) if !bar.is_hidden() => {
                        bar.set_message(message);
                        bar.set_position(batch as u64 + 1);
                    }
                    // Without a terminal (a log file), a line every tenth of an epoch.
                    _ if !self.quiet && (batch + 1) % self.batches.div_ceil(10).max(1) == 0 => {
                        eprintln!(
                            "epoch {} batch {}/{}: {message}",
                            epoch + 1,
                            batch + 1,
                            self.batches
                        );
                    }
                    _ => {}
                }
            }
            Event::Validated { epoch, sdr } => {
                let mean = sdr.iter().map(|(_, s)| s).sum::<f64>() / sdr.len().max(1) as f64;
                let parts: Vec<String> = sdr.iter().map(|(n, s)| format!("{n} {s:.2}")).collect();
                self.say(format!(
                    "epoch {}: validation SDR {mean:.2} dB ({})",
                    epoch + 1,
                    parts.join(", ")
                ));
            }
            Event::EpochDone {
                epoch,
                train_loss,
                lr,
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!(
                    "epoch {}/{}: train loss {train_loss:.5}, lr {lr:e}, {:.1} s",
                    epoch + 1,
                    self.epochs,
                    self.started.elapsed().as_secs_f64()
                );
            }
            Event::Saved { path } => self.say(format!("saved {}", path.display())),
        }
    }

    fn epoch_bar(&self, epoch: usize) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(self.batches as u64);
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}, ETA {eta}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
        bar
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
