//! `roformer separate`: the command line over the library's `Separator`: which files, where
//! their stems go, progress bars and a summary. The separation itself (decoding, resampling,
//! streaming with flat memory, ensembles, test-time augmentation, atomic outputs) is the
//! library's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use roformer::audio::{FlacDepth, OutputFormat, PcmFormat};
use roformer::{
    EnsembleAlgorithm, FileOptions, FileOutcome, Hooks, Notice, Precision, Progress, Separator,
    SeparatorBuilder,
};

use crate::inputs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FileFormat {
    Wav,
    Flac,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Pcm {
    #[value(name = "16")]
    Int16,
    #[value(name = "24")]
    Int24,
    #[value(name = "f32", alias = "float")]
    Float32,
}

/// Which model(s) separate, and how: shared by `separate` and `eval --model`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model weights: an MSST checkpoint (.ckpt/.pth), a .safetensors, a Facebook demucs .th,
    /// or a bag of models (.yaml, as demucs' htdemucs_ft, or its `convert`ed .safetensors).
    /// Repeat for an ensemble: stems with the same name are combined with --ensemble.
    #[arg(short, long)]
    pub model: Vec<PathBuf>,
    /// The model's MSST YAML config (not needed for a .safetensors made by `roformer convert`).
    /// With several models: one per --model, in the same order, or none at all.
    #[arg(short, long)]
    pub config: Vec<PathBuf>,
    /// How several models' stems are combined (MSST ensemble.py types).
    #[arg(long, default_value = "avg_wave", value_parser = parse_algorithm)]
    pub ensemble: EnsembleAlgorithm,
    /// Ensemble weights, one per --model, comma-separated (used by avg_wave and avg_fft).
    #[arg(long, value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// Test-time augmentation (MSST --use_tta): also separate the channel-swapped and the
    /// polarity-inverted track and average the three results (3x slower).
    #[arg(long)]
    pub tta: bool,
    /// Compute device: cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Chunks overlapping each sample (overrides inference.num_overlap).
    #[arg(long)]
    pub overlap: Option<usize>,
    /// Samples per chunk (overrides inference.chunk_size / audio.chunk_size).
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Chunks per model call (overrides inference.batch_size; results do not depend on it).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Matrix products on the CPU: f32 (the reference's numbers), bf16 (weights stored in half
    /// the memory) or int8 (fastest; weights and activations quantised).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// Run the plain framework path instead of the fused CPU engine (slower; the reference the
    /// fused engine is tested against).
    #[arg(long)]
    pub reference_engine: bool,
}

impl ModelArgs {
    /// The library's separator for these options, checked for what only the command line can
    /// get wrong (how many --config and --weights go with how many --model).
    pub fn builder(&self) -> Result<SeparatorBuilder> {
        // Without --model, the built-in default model separates.
        let n = self.model.len().max(1);
        if !self.config.is_empty() && self.config.len() != self.model.len() {
            bail!(
                "{n} --model but {} --config: give one --config per --model, in the same order \
                 (or none, for .safetensors models that carry their config)",
                self.config.len()
            );
        }
        if let Some(w) = &self.weights {
            if w.len() != n {
                bail!(
                    "{} --weights for {n} --model: give one weight per model",
                    w.len()
                );
            }
            if w.iter().any(|w| !w.is_finite() || *w < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                bail!("--weights must be non-negative numbers, not all zero");
            }
        }
        let config = |i: usize| self.config.get(i).map(PathBuf::as_path);
        let mut builder = match self.model.first() {
            Some(path) => {
                let b = Separator::builder(path);
                match config(0) {
                    Some(c) => b.config(c),
                    None => b,
                }
            }
            None => Separator::builtin(),
        };
        for (i, path) in self.model.iter().enumerate().skip(1) {
            builder = builder.add_model(path, config(i));
        }
        if let Some(w) = &self.weights {
            builder = builder.weights(w.clone());
        }
        Ok(builder
            .ensemble(self.ensemble)
            .tta(self.tta)
            .device(&self.device)
            .overlap(self.overlap)
            .chunk_size(self.chunk_size)
            .batch_size(self.batch_size)
            .precision(self.precision)
            .reference_engine(self.reference_engine))
    }
}

#[derive(Debug, Args)]
pub struct SeparateArgs {
    /// Audio files, or folders searched recursively for audio files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Output folder; each input gets a sub-folder named after it.
    #[arg(short, long, default_value = "separated")]
    pub output: PathBuf,
    /// Output file format.
    #[arg(long, value_enum, default_value = "wav")]
    pub format: FileFormat,
    /// Sample format: 16, 24 (integer PCM) or f32 (WAV only).
    #[arg(long, value_enum, default_value = "24")]
    pub pcm: Pcm,
    /// Also write `instrumental` = mixture - vocals (or - the first stem).
    #[arg(long)]
    pub instrumental: bool,
    /// Replace existing outputs (otherwise inputs whose outputs all exist are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bars or notices; errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hold the whole track and its stems in memory instead of streaming them through the model
    /// (same results; the reference the streamed path is tested against).
    #[arg(long, hide = true)]
    pub whole_track: bool,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse()
}

fn parse_algorithm(s: &str) -> Result<EnsembleAlgorithm, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn output_format(format: FileFormat, pcm: Pcm) -> Result<OutputFormat> {
    Ok(match (format, pcm) {
        (FileFormat::Wav, Pcm::Int16) => OutputFormat::Wav(PcmFormat::Int16),
        (FileFormat::Wav, Pcm::Int24) => OutputFormat::Wav(PcmFormat::Int24),
        (FileFormat::Wav, Pcm::Float32) => OutputFormat::Wav(PcmFormat::Float32),
        (FileFormat::Flac, Pcm::Int16) => OutputFormat::Flac(FlacDepth::Int16),
        (FileFormat::Flac, Pcm::Int24) => OutputFormat::Flac(FlacDepth::Int24),
        (FileFormat::Flac, Pcm::Float32) => bail!("FLAC stores integers: use --pcm 16 or --pcm 24"),
    })
}

/// Sets the worker pool size for rayon (our DSP) and candle's matmuls.
pub fn configure_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // candle's CPU kernels size their parallelism from this variable.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot set up the thread pool")?;
    }
    Ok(())
}

/// Opens `builder` (made from `models`), telling the user what was loaded.
pub fn open_separator(
    builder: SeparatorBuilder,
    models: &ModelArgs,
    quiet: bool,
) -> Result<Separator> {
    let loaded = Instant::now();
    let separator = builder.open()?;
    if !quiet {
        let infos = separator.models();
        let seconds = loaded.elapsed().as_secs_f64();
        for (i, m) in infos.iter().enumerate() {
            let number = if infos.len() > 1 {
                format!(" {}/{}", i + 1, infos.len())
            } else {
                String::new()
            };
            let bag = if m.models > 1 {
                format!("bag of {} models, ", m.models)
            } else {
                String::new()
            };
            eprintln!(
                "Model{number} {} ({bag}{:.1} M parameters, stems: {}) on {} in {seconds:.1}s",
                m.name.display(),
                m.parameters as f64 / 1e6,
                m.stems.join(", "),
                m.engine,
            );
        }
        if infos.len() > 1 {
            let weights = match (&models.weights, models.ensemble.uses_weights()) {
                (Some(w), true) => {
                    let w: Vec<String> = w.iter().map(f64::to_string).collect();
                    format!(", weights {}", w.join(", "))
                }
                (None, true) => {
                    let w = vec!["1"; infos.len()];
                    format!(", weights {}", w.join(", "))
                }
                _ => String::new(),
            };
            eprintln!(
                "Ensemble of {} models: {}{weights}; stems: {}",
                infos.len(),
                models.ensemble,
                separator.stems().join(", ")
            );
        }
    }
    Ok(separator)
}

/// `error`, with the input's path in front unless its message already names it (decode errors
/// do).
fn naming_input(error: anyhow::Error, input: &Path) -> anyhow::Error {
    let path = input.display().to_string();
    if format!("{error:#}").contains(&path) {
        error
    } else {
        error.context(path)
    }
}

pub fn run(args: SeparateArgs) -> Result<ExitCode> {
    configure_threads(args.threads)?;
    let format = output_format(args.format, args.pcm)?;
    let builder = args.models.builder()?.instrumental(args.instrumental);
    let separator = open_separator(builder, &args.models, args.quiet)?;
    let options = FileOptions {
        format,
        overwrite: args.overwrite,
        whole_track: args.whole_track,
    };

    let files = inputs::expand(&args.inputs);
    let total = files.len();
    let (mut written, mut skipped, mut failed) = (0, 0, 0);
    let mut used_dirs = HashSet::new();
    for (i, file) in files.into_iter().enumerate() {
        let result = file.and_then(|path| {
            let label = format!("[{}/{}] {}", i + 1, total, path.display());
            let name = inputs::track_name(&path)?;
            let dir = args.output.join(&name);
            if !used_dirs.insert(dir.clone()) {
                bail!(
                    "{}: another input of this run already writes to {} (inputs with the same name)",
                    path.display(),
                    dir.display()
                );
            }
            let outcome = separate_one(&separator, &path, &dir, &options, &label, args.quiet)
                .map_err(|e| naming_input(e, &path))?;
            if !args.quiet {
                match &outcome {
                    FileOutcome::Written(files) => eprintln!(
                        "{label}: wrote {} file(s) to {}",
                        files.len(),
                        dir.display()
                    ),
                    _ => eprintln!(
                        "{label}: skipped, outputs exist in {} (use --overwrite to replace them)",
                        dir.display()
                    ),
                }
            }
            Ok(outcome)
        });
        match result {
            Ok(FileOutcome::Written(_)) => written += 1,
            Ok(_) => skipped += 1,
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if !args.quiet || failed > 0 {
        eprintln!("{written} separated, {skipped} skipped, {failed} failed");
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Separates one file into `dir`, with a progress bar (one per model of an ensemble) and the
/// library's notices on stderr.
pub fn separate_one(
    separator: &Separator,
    path: &Path,
    dir: &Path,
    options: &FileOptions,
    label: &str,
    quiet: bool,
) -> Result<FileOutcome> {
    let mut bars = Bars {
        label,
        quiet,
        current: None,
    };
    let outcome = {
        let mut hooks = Hooks::new().progress(|p| bars.show(p)).notice(|n| match n {
            Notice::Channels(_) | Notice::NonFinite { .. } => eprintln!("warning: {label}: {n}"),
            _ if !quiet => eprintln!("{label}: {n}"),
            _ => {}
        });
        separator.separate_file(path, dir, options, &mut hooks)
    };
    bars.finish();
    Ok(outcome?)
}

/// The progress bar of the model now running.
struct Bars<'a> {
    label: &'a str,
    quiet: bool,
    current: Option<(usize, ProgressBar)>,
}

impl Bars<'_> {
    fn show(&mut self, p: Progress) {
        if self.current.as_ref().is_none_or(|(m, _)| *m != p.model) {
            self.finish();
            let label = if p.models > 1 {
                format!("{} [model {}/{}]", self.label, p.model + 1, p.models)
            } else {
                self.label.to_string()
            };
            self.current = Some((p.model, progress_bar(&label, self.quiet)));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_length(p.chunks_total as u64);
            bar.set_position(p.chunks_done as u64);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} chunks, {elapsed_precise} elapsed, ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}
