//! The training loop as MSST's `train.py` runs it: `num_steps` batches per epoch, gradient
//! accumulation, clipping, Adam/AdamW, EMA, validation with the global SDR per stem after every
//! epoch, ReduceLROnPlateau on the mean SDR, and checkpoints.
//!
//! A run directory holds:
//! - `last.safetensors`: the weights after the latest epoch, with the config embedded (so
//!   `roformer separate --model last.safetensors` runs it);
//! - `best.safetensors`: the validated weights (the EMA ones when EMA is on) of the best epoch;
//! - `state.safetensors`: everything `--resume` needs (weights, Adam moments, EMA, scheduler,
//!   epoch, learning rate, seed);
//! - `log.csv`: one row per epoch.
//!
//! Every file is written to a temporary name and renamed, so a killed run leaves the previous
//! complete files; it loses at most the epoch in progress.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};

use super::data::{Batch, ChunkSampler, Prefetcher, StemSource};
use super::ema::Ema;
use super::gradients::{loss_and_gradients, Examples};
use super::loss::{Loss, LossKind};
use super::optimizer::{clip_grad_norm, Adam, AdamSettings};
use super::params::{initial_state, Parameters};
use super::plateau::ReduceLrOnPlateau;
use crate::config::MsstConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::loaded_model::LoadedModel;
use crate::metrics::sdr;
use crate::model::{Network, CONFIG_METADATA_KEY};
use crate::separate::{separate_track, ChunkMode, DemixOptions};
use crate::weights::{load_state_dict, save_safetensors, StateDict};

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct TrainSetup {
    pub config: MsstConfig,
    /// The config's YAML text, embedded in every checkpoint.
    pub config_yaml: String,
    pub loss: LossKind,
    /// Seeds the initial weights and the order of the training data.
    pub seed: u64,
    pub device: Device,
    /// Threads that prepare batches in the background.
    pub data_threads: usize,
}

/// Where training stands; saved with every checkpoint.
#[derive(Debug, Clone)]
struct Progress {
    /// Epochs completed.
    epoch: usize,
    lr: f64,
    scheduler: ReduceLrOnPlateau,
    optimizer_steps: u64,
}

/// Reported as training goes.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        first_epoch: usize,
        epochs: usize,
        batches_per_epoch: usize,
        parameters: usize,
    },
    Batch {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
    Validated {
        epoch: usize,
        /// Mean global SDR over the validation tracks, per stem.
        sdr: Vec<(String, f64)>,
    },
    EpochDone {
        epoch: usize,
        train_loss: f64,
        lr: f64,
    },
    Saved {
        path: PathBuf,
    },
}

pub struct Trainer {
    setup: TrainSetup,
    run_dir: PathBuf,
    params: Parameters,
    adam: Adam,
    ema: Option<Ema>,
    loss: Loss,
    progress: Progress,
    /// Rows of `log.csv` so far.
    log: Vec<String>,
    /// Gradients summed over the batches since the last optimiser step.
    pending: Option<Vec<Option<Tensor>>>,
    /// The network over the current weights (rebuilt after each optimiser step).
    network: Option<Network>,
}

const STATE_FILE: &str = "state.safetensors";

impl Trainer {
    /// A new run in `run_dir` from `init` weights (fine-tuning) or fresh ones from the seed.
    /// Refuses a directory that already holds a run (resume it instead).
    pub fn start(
        setup: TrainSetup,
        run_dir: &Path,
        init: Option<BTreeMap<String, Tensor>>,
    ) -> Result<Self> {
        if run_dir.join(STATE_FILE).exists() {
            return Err(Error::Train(format!(
                "{} already holds a run: resume it, or choose another directory",
                run_dir.display()
            )));
        }
        std::fs::create_dir_all(run_dir).map_err(|source| Error::Io {
            path: run_dir.to_path_buf(),
            source,
        })?;
        let weights = match init {
            Some(w) => w,
            None => initial_state(&setup.config, setup.seed)?,
        };
        Self::build(setup, run_dir, weights)
    }

    /// A run at its first epoch over `weights`.
    fn build(setup: TrainSetup, run_dir: &Path, weights: BTreeMap<String, Tensor>) -> Result<Self> {
        let params = Parameters::new(weights, &setup.device)?;
        // Every tensor must fit the config, as when loading for inference.
        params.network(&setup.config)?;
        let settings = AdamSettings::from_config(&setup.config)?;
        let t = &setup.config.training;
        if let Some(other) = t.scheduler.as_deref().filter(|s| *s != "ReduceLROnPlateau") {
            return Err(Error::Unsupported(format!(
                "training.scheduler `{other}`: the trainer has ReduceLROnPlateau"
            )));
        }
        let progress = Progress {
            epoch: 0,
            lr: settings.lr,
            scheduler: ReduceLrOnPlateau::new(t.patience, t.reduce_factor),
            optimizer_steps: 0,
        };
        let ema = (t.ema_momentum > 0.0)
            .then(|| Ema::new(t.ema_momentum, &params))
            .transpose()?;
        Ok(Self {
            loss: Loss::from_config(&setup.config, setup.loss)?,
            adam: Adam::new(settings, params.trainable().count()),
            ema,
            params,
            progress,
            log: Vec::new(),
            pending: None,
            network: None,
            run_dir: run_dir.to_path_buf(),
            setup,
        })
    }

    /// Continues the run in `run_dir` where its last checkpoint left it: the saved config, seed,
    /// loss, weights, optimiser and scheduler state. `epochs` may raise the number of epochs.
    pub fn resume(run_dir: &Path, device: &Device, data_threads: usize) -> Result<Self> {
        let path = run_dir.join(STATE_FILE);
        let state = load_state_dict(&path)?;
        let meta = |key: &str| -> Result<String> {
            state
                .metadata
                .get(key)
                .cloned()
                .ok_or_else(|| Error::Train(format!("{} has no `{key}` entry", path.display())))
        };
        let number = |key: &str| -> Result<f64> {
            meta(key)?.parse::<f64>().map_err(|e| {
                Error::Train(format!("{}: `{key}` is not a number: {e}", path.display()))
            })
        };
        let config_yaml = meta(CONFIG_METADATA_KEY)?;
        let config = MsstConfig::from_yaml(&config_yaml, &path)?;
        let setup = TrainSetup {
            config,
            config_yaml,
            loss: meta("loss")?.parse()?,
            seed: meta("seed")?
                .parse()
                .map_err(|e| Error::Train(format!("{}: bad seed: {e}", path.display())))?,
            device: device.clone(),
            data_threads,
        };
        let section = |prefix: &str| -> BTreeMap<String, Tensor> {
            state
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
                .collect()
        };
        let mut trainer = Self::build(setup, run_dir, section("param."))?;
        trainer.adam.load_state(&section("adam."), device)?;
        if let Some(ema) = &mut trainer.ema {
            *ema = Ema::restore(
                trainer.setup.config.training.ema_momentum,
                section("ema."),
                number("ema_updates")? as u64,
            );
        }
        let p = &mut trainer.progress;
        p.epoch = number("epoch")? as usize;
        p.lr = number("lr")?;
        p.optimizer_steps = number("optimizer_steps")? as u64;
        p.scheduler.best = number("scheduler_best")?;
        p.scheduler.bad_epochs = number("scheduler_bad_epochs")? as usize;
        trainer.log = read_log(&run_dir.join("log.csv"), p.epoch);
        Ok(trainer)
    }

    pub fn params(&self) -> &Parameters {
        &self.params
    }

    pub fn config(&self) -> &MsstConfig {
        &self.setup.config
    }

    pub fn seed(&self) -> u64 {
        self.setup.seed
    }

    pub fn epochs_done(&self) -> usize {
        self.progress.epoch
    }

    pub fn lr(&self) -> f64 {
        self.progress.lr
    }

    /// Trains until `epochs` epochs are complete, validating on `valid` (if any) after each.
    pub fn run(
        &mut self,
        train: Arc<ChunkSampler>,
        valid: Option<&dyn StemSource>,
        epochs: usize,
        observer: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let t = &self.setup.config.training;
        let batches = t.num_steps;
        let accumulate = t.gradient_accumulation_steps.max(1);
        observer(Event::Started {
            first_epoch: self.progress.epoch,
            epochs,
            batches_per_epoch: batches,
            parameters: self.params.num_trainable(),
        });
        let start = (self.progress.epoch * batches) as u64;
        let mut data = Prefetcher::new(train, start, self.setup.data_threads.max(1), 4);
        while self.progress.epoch < epochs {
            let epoch = self.progress.epoch;
            let began = Instant::now();
            let mut loss_sum = 0.0;
            for i in 0..batches {
                let batch = data.next()?;
                let step = (i + 1) % accumulate == 0 || i + 1 == batches;
                let loss = self.train_batch(&batch, step).map_err(|e| match e {
                    Error::Train(m) => {
                        Error::Train(format!("epoch {} batch {}: {m}", epoch + 1, i + 1))
                    }
                    e => e,
                })?;
                loss_sum += loss;
                observer(Event::Batch {
                    epoch,
                    batch: i,
                    loss,
                });
            }
            let train_loss = loss_sum / batches.max(1) as f64;
            let sdrs = match valid {
                Some(v) => Some(self.validate(v)?),
                None => None,
            };
            let improved = if let Some(sdrs) = &sdrs {
                observer(Event::Validated {
                    epoch,
                    sdr: sdrs.clone(),
                });
                let mean = sdrs.iter().map(|(_, s)| s).sum::<f64>() / sdrs.len().max(1) as f64;
                let before = self.progress.scheduler.best;
                self.progress.lr = self.progress.scheduler.step(mean, self.progress.lr);
                mean > before
            } else {
                false
            };
            self.progress.epoch += 1;
            self.log_epoch(train_loss, sdrs.as_deref(), began.elapsed().as_secs_f64());
            self.save(improved, observer)?;
            observer(Event::EpochDone {
                epoch,
                train_loss,
                lr: self.progress.lr,
            });
        }
        Ok(())
    }

    /// Forward and backward on one batch, its gradients added to those pending; with `step`, the
    /// optimiser step (clipping, Adam, EMA) on the pending gradients. Returns the batch's loss.
    pub fn train_batch(&mut self, batch: &Batch, step: bool) -> Result<f64> {
        let t = &self.setup.config.training;
        let accumulate = t.gradient_accumulation_steps.max(1);
        if self.network.is_none() {
            self.network = Some(self.params.network(&self.setup.config)?);
        }
        let network = self.network.as_ref().expect("built above");
        let examples = Examples {
            mixture: &batch.mixture,
            targets: &batch.targets,
            batch: batch.batch,
            len: batch.len,
        };
        let (loss, grads) = loss_and_gradients(
            network,
            &self.params,
            &self.loss,
            examples,
            1.0 / accumulate as f64,
        )?;
        if !loss.is_finite() {
            return Err(Error::Train(format!(
                "the loss became {loss}; lower training.lr or set training.grad_clip"
            )));
        }
        self.pending = Some(match self.pending.take() {
            None => grads,
            Some(acc) => add_gradients(acc, grads)?,
        });
        if step {
            let mut grads = self.pending.take().unwrap_or_default();
            if t.grad_clip > 0.0 {
                clip_grad_norm(&mut grads, t.grad_clip)?;
            }
            self.adam.settings.lr = self.progress.lr;
            let vars: Vec<_> = self.params.trainable().map(|(_, v)| v).collect();
            self.adam.step(&vars, &grads)?;
            self.progress.optimizer_steps += 1;
            if let Some(ema) = &mut self.ema {
                ema.update(&self.params)?;
            }
            // Loading derives a few tensors from the weights: rebuild from the new values.
            self.network = None;
        }
        Ok(loss)
    }

    /// The weights validation and `best` use: the EMA ones when EMA is on.
    fn validated_weights(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut weights = self.params.snapshot()?;
        if let Some(ema) = &self.ema {
            for (k, v) in ema.weights() {
                weights.insert(k.clone(), v.clone());
            }
        }
        Ok(weights)
    }

    /// Separates every validation track (mixture = the sum of its stems) and returns the mean
    /// global SDR per stem, MSST's `sdr` metric.
    fn validate(&self, valid: &dyn StemSource) -> Result<Vec<(String, f64)>> {
        let config = &self.setup.config;
        let state = StateDict::new(
            self.validated_weights()?,
            HashMap::new(),
            PathBuf::from("<weights being trained>"),
        );
        let model = LoadedModel::from_state_dict(
            config.clone(),
            state,
            &self.setup.device,
            Engine::default_for(&self.setup.device),
        )?;
        let options = DemixOptions {
            chunk_size: config.chunk_size(),
            num_overlap: config.inference.num_overlap,
            batch_size: config.inference.batch_size,
            mode: ChunkMode::Generic,
        };
        let instruments = &config.training.instruments;
        let stems = config.stem_names();
        let mut sums = vec![0.0f64; stems.len()];
        for track in 0..valid.num_tracks() {
            let len = valid.num_frames(track);
            let sources = (0..instruments.len())
                .map(|i| valid.read(track, i, 0, len).map(|v| planar(v, len)))
                .collect::<Result<Vec<_>>>()?;
            let channels = sources.first().map_or(0, Vec::len);
            let mix: Vec<Vec<f32>> = (0..channels)
                .map(|c| {
                    (0..len)
                        .map(|k| sources.iter().map(|s| s[c][k]).sum())
                        .collect()
                })
                .collect();
            let estimates = separate_track(
                &model.network,
                &mix,
                &options,
                config.inference.normalize,
                &mut |_| {},
            )?;
            for (n, name) in stems.iter().enumerate() {
                let index = instruments.iter().position(|i| i == name).ok_or_else(|| {
                    Error::Train(format!("stem {name} is not among training.instruments"))
                })?;
                let score = sdr(&sources[index], &estimates[n])
                    .map_err(|e| Error::Train(format!("SDR of {name}: {e}")))?;
                sums[n] += score;
            }
        }
        let tracks = valid.num_tracks().max(1) as f64;
        Ok(stems
            .into_iter()
            .zip(sums)
            .map(|(s, sum)| (s, sum / tracks))
            .collect())
    }

    fn log_epoch(&mut self, train_loss: f64, sdrs: Option<&[(String, f64)]>, seconds: f64) {
        let p = &self.progress;
        let stems = self.setup.config.stem_names();
        if self.log.is_empty() {
            let mut header = "epoch,optimizer_steps,train_loss,lr,valid_sdr_mean".to_string();
            for s in &stems {
                header.push_str(&format!(",valid_sdr_{s}"));
            }
            header.push_str(",seconds");
            self.log.push(header);
        }
        let mut row = format!(
            "{},{},{train_loss:.6},{:e}",
            p.epoch, p.optimizer_steps, p.lr
        );
        match sdrs {
            Some(s) => {
                let mean = s.iter().map(|(_, v)| v).sum::<f64>() / s.len().max(1) as f64;
                row.push_str(&format!(",{mean:.4}"));
                for (_, v) in s {
                    row.push_str(&format!(",{v:.4}"));
                }
            }
            None => row.push_str(&",".repeat(stems.len() + 1)),
        }
        row.push_str(&format!(",{seconds:.1}"));
        self.log.push(row);
    }

    /// Writes `last` (and `best` when the epoch improved), the log, then the resume state.
    fn save(&self, improved: bool, observer: &mut dyn FnMut(Event)) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert(
            CONFIG_METADATA_KEY.to_string(),
            self.setup.config_yaml.clone(),
        );
        let last = self.run_dir.join("last.safetensors");
        save_safetensors(&self.params.snapshot()?, &meta, &last)?;
        observer(Event::Saved { path: last });
        if improved {
            let best = self.run_dir.join("best.safetensors");
            save_safetensors(&self.validated_weights()?, &meta, &best)?;
            observer(Event::Saved { path: best });
        }
        let log_path = self.run_dir.join("log.csv");
        crate::atomic_file::write_atomically(&log_path, |w| {
            use std::io::Write;
            self.log.iter().try_for_each(|line| writeln!(w, "{line}"))
        })
        .map_err(|source| Error::Io {
            path: log_path.clone(),
            source,
        })?;

        let p = &self.progress;
        let mut tensors = BTreeMap::new();
        for (k, v) in self.params.snapshot()? {
            tensors.insert(format!("param.{k}"), v);
        }
        for (k, v) in self.adam.state()? {
            tensors.insert(format!("adam.{k}"), v);
        }
        if let Some(ema) = &self.ema {
            for (k, v) in ema.weights() {
                tensors.insert(format!("ema.{k}"), v.clone());
            }
            meta.insert("ema_updates".into(), ema.updates().to_string());
        }
        for (k, v) in [
            ("epoch", p.epoch.to_string()),
            ("lr", format!("{:e}", p.lr)),
            ("optimizer_steps", p.optimizer_steps.to_string()),
            ("scheduler_best", format!("{:e}", p.scheduler.best)),
            ("scheduler_bad_epochs", p.scheduler.bad_epochs.to_string()),
            ("seed", self.setup.seed.to_string()),
            ("loss", self.setup.loss.to_string()),
        ] {
            meta.insert(k.to_string(), v);
        }
        save_safetensors(&tensors, &meta, &self.run_dir.join(STATE_FILE))?;
        Ok(())
    }
}

fn add_gradients(a: Vec<Option<Tensor>>, b: Vec<Option<Tensor>>) -> Result<Vec<Option<Tensor>>> {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| {
            Ok(match (a, b) {
                (Some(a), Some(b)) => Some((a + b)?),
                (a, b) => a.or(b),
            })
        })
        .collect()
}

/// `[channel][len]` flattened into one `Vec` per channel.
fn planar(values: Vec<f32>, len: usize) -> Vec<Vec<f32>> {
    values.chunks(len.max(1)).map(<[f32]>::to_vec).collect()
}

/// The rows of an existing log up to `epochs` completed epochs (header included).
fn read_log(path: &Path, epochs: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines().take(epochs + 1).map(str::to_string).collect()
}
