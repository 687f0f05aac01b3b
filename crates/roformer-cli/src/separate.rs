//! `roformer separate`: decode, resample, separate with progress, write stems atomically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use roformer::model::LoadedModel;
use roformer::separate::{separate_track, DemixOptions, Progress};

use crate::audio::{
    decode_file, resample, to_channels, write_audio_atomic, Audio, FlacDepth, OutputFormat,
    PcmFormat,
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

#[derive(Debug, Args)]
pub struct SeparateArgs {
    /// Audio files, or folders searched recursively for audio files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Model weights: an MSST checkpoint (.ckpt/.pth) or .safetensors.
    #[arg(short, long)]
    pub model: PathBuf,
    /// The model's MSST YAML config (not needed for a .safetensors made by `roformer convert`).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Output folder; each input gets a sub-folder named after it.
    #[arg(short, long, default_value = "separated")]
    pub output: PathBuf,
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

struct Job<'a> {
    model: &'a LoadedModel,
    options: DemixOptions,
    format: OutputFormat,
    args: &'a SeparateArgs,
}

enum Outcome {
    Written,
    Skipped,
}

pub fn run(args: SeparateArgs) -> Result<ExitCode> {
    configure_threads(args.threads)?;
    let format = output_format(args.format, args.pcm)?;
    let device = roformer::device::open_device(&args.device)?;
    let loaded = Instant::now();
    let mut model = LoadedModel::open(&args.model, args.config.as_deref(), &device)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    let config = &mut model.config;
    if let Some(c) = args.chunk_size {
        config.inference.chunk_size = Some(c);
    }
    if let Some(o) = args.overlap {
        config.inference.num_overlap = o;
    }
    if let Some(b) = args.batch_size {
        config.inference.batch_size = b;
    }
    let options = DemixOptions {
        chunk_size: config.chunk_size(),
        num_overlap: config.inference.num_overlap,
        batch_size: config.inference.batch_size,
    };
    if options.num_overlap == 0 || options.batch_size == 0 {
        bail!("--overlap and --batch-size must be at least 1");
    }
    if options.chunk_size < config.model.stft_n_fft || options.chunk_size < options.num_overlap {
        bail!(
            "--chunk-size {} is too small (at least one STFT window, {} samples)",
            options.chunk_size,
            config.model.stft_n_fft
        );
    }
    if !args.quiet {
        eprintln!(
            "Model {} ({:.1} M parameters, stems: {}) on {} in {:.1}s",
            args.model.display(),
            model.parameters as f64 / 1e6,
            model.config.stem_names().join(", "),
            args.device,
            loaded.elapsed().as_secs_f64()
        );
    }
    let job = Job {
        model: &model,
        options,
        format,
        args: &args,
    };

    let files = inputs::expand(&args.inputs);
    let total = files.len();
    let (mut written, mut skipped, mut failed) = (0, 0, 0);
    let mut used_dirs = HashSet::new();
    for (i, file) in files.into_iter().enumerate() {
        let result = file.and_then(|path| {
            let label = format!("[{}/{}] {}", i + 1, total, path.display());
            job.process(&path, &label, &mut used_dirs)
                .with_context(|| format!("{}", path.display()))
        });
        match result {
            Ok(Outcome::Written) => written += 1,
            Ok(Outcome::Skipped) => skipped += 1,
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

impl Job<'_> {
    fn notice(&self, text: &str) {
        if !self.args.quiet {
            eprintln!("{text}");
        }
    }

    fn process(
        &self,
        path: &Path,
        label: &str,
        used_dirs: &mut HashSet<PathBuf>,
    ) -> Result<Outcome> {
        let cfg = &self.model.config;
        let name = inputs::track_name(path)?;
        let dir = self.args.output.join(&name);
        if !used_dirs.insert(dir.clone()) {
            bail!(
                "another input of this run already writes to {} (inputs with the same name)",
                dir.display()
            );
        }
        let stems = cfg.stem_names();
        // MSST --extract_instrumental: mixture minus vocals, or minus the first stem.
        let instrumental_of = (self.args.instrumental
            && !stems.iter().any(|s| s == "instrumental"))
        .then(|| stems.iter().position(|s| s == "vocals").unwrap_or(0));
        let mut targets: Vec<String> = stems.clone();
        if instrumental_of.is_some() {
            targets.push("instrumental".into());
        }
        let ext = self.format.extension();
        let out_path = |t: &str| dir.join(format!("{t}.{ext}"));
        let pending: Vec<&String> = targets
            .iter()
            .filter(|t| self.args.overwrite || !out_path(t).exists())
            .collect();
        if pending.is_empty() {
            self.notice(&format!(
                "{label}: skipped, outputs exist in {} (use --overwrite to replace them)",
                dir.display()
            ));
            return Ok(Outcome::Skipped);
        }

        let audio = decode_file(path)?;
        let sample_rate = cfg.audio.sample_rate;
        let audio = if audio.sample_rate != sample_rate {
            self.notice(&format!(
                "{label}: resampling {} Hz -> {} Hz",
                audio.sample_rate, sample_rate
            ));
            resample(&audio, sample_rate)?
        } else {
            audio
        };
        let (audio, warning) = to_channels(audio, cfg.model.audio_channels());
        if let Some(w) = warning {
            eprintln!("warning: {label}: {w}");
        }

        let bar = self.progress_bar(label);
        let mut on_progress = |p: Progress| {
            bar.set_length(p.chunks_total as u64);
            bar.set_position(p.chunks_done as u64);
        };
        let mut separated = separate_track(
            &self.model.network,
            &audio.channels,
            &self.options,
            cfg.inference.normalize,
            &mut on_progress,
        )?;
        bar.finish_and_clear();

        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        // Instrumental (listed last) first: it reads a stem that is then moved out, not copied.
        for target in pending.iter().rev() {
            let channels = match stems.iter().position(|s| s == *target) {
                Some(i) => std::mem::take(&mut separated[i]),
                None => {
                    let of = instrumental_of.unwrap_or(0);
                    audio
                        .channels
                        .iter()
                        .zip(&separated[of])
                        .map(|(m, s)| m.iter().zip(s).map(|(m, s)| m - s).collect())
                        .collect()
                }
            };
            let out = Audio {
                sample_rate,
                channels,
            };
            let file = out_path(target);
            write_audio_atomic(&file, &out, self.format)?;
        }
        self.notice(&format!(
            "{label}: wrote {} file(s) to {}",
            pending.len(),
            dir.display()
        ));
        Ok(Outcome::Written)
    }

    fn progress_bar(&self, label: &str) -> ProgressBar {
        if self.args.quiet {
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
}
