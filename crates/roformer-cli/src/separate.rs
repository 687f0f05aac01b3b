//! `roformer separate`: decode, resample, separate with progress (one or several models, with
//! optional test-time augmentation), combine the models' stems, write stems atomically.
//!
//! With one model the track streams: a first pass over the file learns its length (and, with
//! `inference.normalize`, a second one the statistics of the whole track), then the file is read
//! again block by block, through the model, into the output files, so memory does not grow with
//! the track's length. An ensemble holds the whole track and every model's stems in memory (its
//! algorithms combine whole stems; `avg_fft` and friends need the whole spectrogram).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use roformer::atomic_file::AtomicFile;
use roformer::audio::{
    decode_file, resample, resampled_len, to_channels, write_audio_atomic, Audio, AudioError,
    Decoder, FlacDepth, OutputFormat, PcmFormat, StreamWriter, TrackReader,
};
use roformer::cpu::{Engine, Precision};
use roformer::model::{LoadOptions, LoadedModel};
use roformer::separate::{
    ensemble, separate_stream, separate_track_with_tta, DemixOptions, EnsembleAlgorithm,
    FrameSource, MeanMeter, Normalization, Progress, StemSink, StreamOptions,
};
use roformer::weights::state_dict_from_safetensors_bytes;

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
    /// Model weights: an MSST checkpoint (.ckpt/.pth) or .safetensors. Repeat for an ensemble:
    /// stems with the same name are combined with --ensemble.
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
    /// The engine and precision asked for, checked against the device.
    pub fn load_options(&self) -> Result<LoadOptions> {
        let on_cpu = self.device == "cpu";
        if self.precision != Precision::F32 && (self.reference_engine || !on_cpu) {
            bail!(
                "--precision {} needs the fused CPU engine (--device cpu, no --reference-engine)",
                self.precision
            );
        }
        Ok(LoadOptions {
            engine: if self.reference_engine {
                Engine::Reference
            } else {
                Engine::Auto
            },
            precision: self.precision,
        })
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

/// One model of the run, with its chunking (its config's, overridden by the CLI flags).
struct Member {
    path: PathBuf,
    model: LoadedModel,
    options: DemixOptions,
    weight: f64,
}

struct Job<'a> {
    members: &'a [Member],
    /// Every stem some model writes, in order of first appearance.
    stems: Vec<String>,
    sample_rate: u32,
    channels: usize,
    format: OutputFormat,
    args: &'a SeparateArgs,
}

enum Outcome {
    Written,
    Skipped,
}

/// What an output file of a streamed separation holds.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The stem with this index.
    Stem(usize),
    /// The mixture minus the stem with this index (MSST --extract_instrumental).
    Instrumental(usize),
}

/// What [`Job::scan`] learns about a file.
struct Scan {
    /// Frames at the model's sample rate.
    len: usize,
    file_rate: u32,
    file_channels: usize,
    normalization: Option<Normalization>,
}

/// The streamed track, keeping the first error (the library only sees a summary of it).
struct Reader {
    reader: TrackReader,
    error: Option<anyhow::Error>,
}

impl FrameSource for Reader {
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> roformer::Result<usize> {
        self.reader.read(out, max).map_err(|e| {
            let e = anyhow::Error::from(e);
            let message = format!("{e:#}");
            self.error = Some(e);
            roformer::Error::Audio(AudioError::Other(message))
        })
    }
}

/// The output files of a streamed separation, keeping the first error.
struct Writers<'w> {
    writers: Vec<(Target, &'w Path, StreamWriter<'w>)>,
    /// The instrumental of one block.
    scratch: Vec<Vec<f32>>,
    error: Option<anyhow::Error>,
}

impl StemSink for Writers<'_> {
    fn write(&mut self, mix: &[&[f32]], stems: &[Vec<&[f32]>]) -> roformer::Result<()> {
        for (target, file, writer) in &mut self.writers {
            let written = match *target {
                Target::Stem(i) => writer.write(&stems[i]),
                Target::Instrumental(of) => {
                    self.scratch.resize(mix.len(), Vec::new());
                    for ((dst, m), s) in self.scratch.iter_mut().zip(mix).zip(&stems[of]) {
                        dst.clear();
                        dst.extend(m.iter().zip(s.iter()).map(|(m, s)| m - s));
                    }
                    let block: Vec<&[f32]> = self.scratch.iter().map(Vec::as_slice).collect();
                    writer.write(&block)
                }
            };
            if let Err(e) = written {
                let e = anyhow::Error::from(e).context(format!("cannot write {}", file.display()));
                let message = format!("{e:#}");
                self.error = Some(e);
                return Err(roformer::Error::Audio(AudioError::Other(message)));
            }
        }
        Ok(())
    }
}

/// Loads one model and applies the CLI's chunking overrides.
/// The model `separate` uses without `--model`: a small 4-stem BS-RoFormer trained with
/// `roformer train` on the rendered dataset (models/default/README.md), built into the binary.
const DEFAULT_MODEL: &[u8] = include_bytes!("../../../models/default/model.safetensors");
const DEFAULT_MODEL_NAME: &str = "built-in default model (models/default)";

fn load_member(
    args: &SeparateArgs,
    index: usize,
    device: &roformer::Device,
    weight: f64,
) -> Result<Member> {
    let loaded = Instant::now();
    let options = args.models.load_options()?;
    let (path, mut model) = match args.models.model.get(index) {
        Some(path) => {
            let model = LoadedModel::open_with(
                path,
                args.models.config.get(index).map(PathBuf::as_path),
                device,
                options,
            )
            .with_context(|| format!("cannot load model {}", path.display()))?;
            (path.clone(), model)
        }
        None => {
            let path = PathBuf::from(DEFAULT_MODEL_NAME);
            let state = state_dict_from_safetensors_bytes(DEFAULT_MODEL, &path)?;
            let model = LoadedModel::from_embedded_config(state, device, options)
                .context("cannot load the built-in default model")?;
            (path, model)
        }
    };
    let config = &mut model.config;
    if let Some(c) = args.models.chunk_size {
        config.inference.chunk_size = Some(c);
    }
    if let Some(o) = args.models.overlap {
        config.inference.num_overlap = o;
    }
    if let Some(b) = args.models.batch_size {
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
            "--chunk-size {} is too small for {} (at least one STFT window, {} samples)",
            options.chunk_size,
            path.display(),
            config.model.stft_n_fft
        );
    }
    if !args.quiet {
        let number = if args.models.model.len() > 1 {
            format!(" {}/{}", index + 1, args.models.model.len())
        } else {
            String::new()
        };
        eprintln!(
            "Model{number} {} ({:.1} M parameters, stems: {}) on {} ({}) in {:.1}s",
            path.display(),
            model.parameters as f64 / 1e6,
            model.config.stem_names().join(", "),
            args.models.device,
            model.engine_description(),
            loaded.elapsed().as_secs_f64()
        );
    }
    Ok(Member {
        path,
        model,
        options,
        weight,
    })
}

pub fn run(args: SeparateArgs) -> Result<ExitCode> {
    configure_threads(args.threads)?;
    let format = output_format(args.format, args.pcm)?;
    // Without --model, the built-in default model separates.
    let n = args.models.model.len().max(1);
    if !args.models.config.is_empty() && args.models.config.len() != args.models.model.len() {
        bail!(
            "{n} --model but {} --config: give one --config per --model, in the same order \
             (or none, for .safetensors models that carry their config)",
            args.models.config.len()
        );
    }
    let weights = match &args.models.weights {
        Some(w) if w.len() != n => {
            bail!(
                "{} --weights for {n} --model: give one weight per model",
                w.len()
            )
        }
        Some(w) if w.iter().any(|w| !w.is_finite() || *w < 0.0) || w.iter().sum::<f64>() <= 0.0 => {
            bail!("--weights must be non-negative numbers, not all zero")
        }
        Some(w) => w.clone(),
        None => vec![1.0; n],
    };
    let device = roformer::device::open_device(&args.models.device)?;
    let members = (0..n)
        .map(|i| load_member(&args, i, &device, weights[i]))
        .collect::<Result<Vec<_>>>()?;

    let first = &members[0];
    let sample_rate = first.model.config.audio.sample_rate;
    let channels = first.model.config.model.audio_channels();
    for m in &members[1..] {
        let cfg = &m.model.config;
        if cfg.audio.sample_rate != sample_rate {
            bail!(
                "all models of an ensemble must have the same sample rate: {} has {} Hz, {} has {} Hz",
                first.path.display(),
                sample_rate,
                m.path.display(),
                cfg.audio.sample_rate
            );
        }
        if cfg.model.audio_channels() != channels {
            bail!(
                "all models of an ensemble must take the same number of channels: {} takes {}, {} takes {}",
                first.path.display(),
                channels,
                m.path.display(),
                cfg.model.audio_channels()
            );
        }
    }
    let mut stems: Vec<String> = Vec::new();
    for m in &members {
        for s in m.model.config.stem_names() {
            if !stems.contains(&s) {
                stems.push(s);
            }
        }
    }
    if n > 1 && !args.quiet {
        let weights = if args.models.ensemble.uses_weights() {
            let w: Vec<String> = weights.iter().map(f64::to_string).collect();
            format!(", weights {}", w.join(", "))
        } else {
            String::new()
        };
        eprintln!(
            "Ensemble of {n} models: {}{weights}; stems: {}",
            args.models.ensemble,
            stems.join(", ")
        );
    }
    let job = Job {
        members: &members,
        stems,
        sample_rate,
        channels,
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
        let name = inputs::track_name(path)?;
        let dir = self.args.output.join(&name);
        if !used_dirs.insert(dir.clone()) {
            bail!(
                "another input of this run already writes to {} (inputs with the same name)",
                dir.display()
            );
        }
        let stems = &self.stems;
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
        if self.members.len() == 1 && !self.args.whole_track {
            let outputs = pending
                .iter()
                .map(|t| {
                    let target = match stems.iter().position(|s| s == *t) {
                        Some(i) => Target::Stem(i),
                        None => Target::Instrumental(instrumental_of.unwrap_or(0)),
                    };
                    (target, out_path(t))
                })
                .collect::<Vec<_>>();
            self.stream(path, label, &dir, &outputs)?;
            self.notice(&format!(
                "{label}: wrote {} file(s) to {}",
                pending.len(),
                dir.display()
            ));
            return Ok(Outcome::Written);
        }

        let audio = decode_file(path)?;
        let sample_rate = self.sample_rate;
        let audio = if audio.sample_rate() != sample_rate {
            self.notice(&format!(
                "{label}: resampling {} Hz -> {} Hz",
                audio.sample_rate(),
                sample_rate
            ));
            resample(&audio, sample_rate)?
        } else {
            audio
        };
        let (audio, warning) = to_channels(audio, self.channels);
        if let Some(w) = warning {
            eprintln!("warning: {label}: {w}");
        }

        let mut separated = self.separate(audio.channels(), label)?;

        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        // Instrumental (listed last) first: it reads a stem that is then moved out, not copied.
        for target in pending.iter().rev() {
            let channels = match stems.iter().position(|s| s == *target) {
                Some(i) => std::mem::take(&mut separated[i]),
                None => {
                    let of = instrumental_of.unwrap_or(0);
                    audio
                        .channels()
                        .iter()
                        .zip(&separated[of])
                        .map(|(m, s)| m.iter().zip(s).map(|(m, s)| m - s).collect())
                        .collect()
                }
            };
            let out = Audio::new(sample_rate, channels)?;
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

    /// Notices about the resampling and channel adaptation of a file with `rate` Hz and
    /// `channels` channels.
    fn adaptation_notices(&self, label: &str, rate: u32, channels: usize) {
        if rate != self.sample_rate {
            self.notice(&format!(
                "{label}: resampling {rate} Hz -> {} Hz",
                self.sample_rate
            ));
        }
        if let Ok(empty) = Audio::new(rate, vec![Vec::new(); channels]) {
            if let Some(w) = to_channels(empty, self.channels).1 {
                eprintln!("warning: {label}: {w}");
            }
        }
    }

    /// The passes over the file before the streamed one: its length at the model's rate and,
    /// with `normalize`, the statistics of the whole track.
    fn scan(&self, path: &Path, normalize: bool) -> Result<Scan> {
        let rate = self.sample_rate;
        if !normalize {
            let mut decoder = Decoder::open(path)?;
            let mut block = Vec::new();
            while decoder.next_block(&mut block)? {}
            let (from, frames) = (decoder.sample_rate(), decoder.frames());
            return Ok(Scan {
                len: if from == rate {
                    frames
                } else {
                    resampled_len(frames, from, rate)
                },
                file_rate: from,
                file_channels: decoder.channels(),
                normalization: None,
            });
        }
        let mut reader = TrackReader::open(path, rate, self.channels)?;
        let mut block = Vec::new();
        let mut mean = MeanMeter::new(self.channels);
        while reader.next_block(&mut block)? {
            mean.add(&block);
        }
        let len = mean.frames();
        let mut spread = mean.spread();
        let mut again = TrackReader::open(path, rate, self.channels)?.without_warnings();
        let mut frames = 0;
        while again.next_block(&mut block)? {
            frames += block[0].len();
            spread.add(&block);
        }
        if frames != len {
            bail!("{} changed while it was being read", path.display());
        }
        Ok(Scan {
            len,
            file_rate: reader.file_rate(),
            file_channels: reader.file_channels(),
            normalization: Some(spread.finish()),
        })
    }

    /// One model: streams the file through it into `outputs`; see the module documentation.
    fn stream(
        &self,
        path: &Path,
        label: &str,
        dir: &Path,
        outputs: &[(Target, PathBuf)],
    ) -> Result<()> {
        let member = &self.members[0];
        let scan = self.scan(path, member.model.config.inference.normalize)?;
        self.adaptation_notices(label, scan.file_rate, scan.file_channels);

        let created = !dir.exists();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        let result = self.stream_into(path, label, &scan, outputs);
        if result.is_err() && created {
            // Only removes the folder if nothing else is in it.
            let _ = std::fs::remove_dir(dir);
        }
        result
    }

    fn stream_into(
        &self,
        path: &Path,
        label: &str,
        scan: &Scan,
        outputs: &[(Target, PathBuf)],
    ) -> Result<()> {
        let member = &self.members[0];
        let cannot_write = |file: &Path| format!("cannot write {}", file.display());
        // Temporary files, renamed over the outputs once all are complete (dropped, they go).
        let mut files = outputs
            .iter()
            .map(|(_, file)| AtomicFile::create(file).with_context(|| cannot_write(file)))
            .collect::<Result<Vec<_>>>()?;
        // The writers borrow the files until they are finished.
        {
            let writers = files
                .iter_mut()
                .zip(outputs)
                .map(|(f, (target, file))| {
                    StreamWriter::new(f.writer(), self.format, self.sample_rate, self.channels)
                        .map(|w| (*target, file.as_path(), w))
                        .with_context(|| cannot_write(file))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut sink = Writers {
                writers,
                scratch: Vec::new(),
                error: None,
            };
            let mut source = Reader {
                reader: TrackReader::open(path, self.sample_rate, self.channels)?
                    .without_warnings(),
                error: None,
            };
            let bar = self.progress_bar(label);
            let mut on_progress = |p: Progress| {
                bar.set_length(p.chunks_total as u64);
                bar.set_position(p.chunks_done as u64);
            };
            let options = StreamOptions {
                demix: member.options,
                normalization: scan.normalization,
                tta: self.args.models.tta,
            };
            let streamed = separate_stream(
                &member.model.network,
                &mut source,
                scan.len,
                &options,
                &mut sink,
                &mut on_progress,
            );
            bar.finish_and_clear();
            if let Err(e) = streamed {
                return Err(match (source.error.take(), sink.error.take()) {
                    (Some(e), _) | (None, Some(e)) => e,
                    (None, None) => anyhow!(e).context(format!("model {}", member.path.display())),
                });
            }
            let mut rest = vec![Vec::new(); self.channels];
            if source.reader.read(&mut rest, 1)? > 0 {
                bail!("{} changed while it was being read", path.display());
            }
            for (_, file, writer) in sink.writers {
                writer.finish().with_context(|| cannot_write(file))?;
            }
        }
        for (f, (_, file)) in files.into_iter().zip(outputs) {
            f.commit().with_context(|| cannot_write(file))?;
        }
        Ok(())
    }

    /// Every model separates the track; stems several models write are combined.
    /// Returns one entry per `self.stems`.
    fn separate(&self, mix: &[Vec<f32>], label: &str) -> Result<Vec<Vec<Vec<f32>>>> {
        let n = self.members.len();
        let mut outputs = Vec::with_capacity(n);
        for (i, m) in self.members.iter().enumerate() {
            let bar = if n > 1 {
                self.progress_bar(&format!("{label} [model {}/{n}]", i + 1))
            } else {
                self.progress_bar(label)
            };
            let mut on_progress = |p: Progress| {
                bar.set_length(p.chunks_total as u64);
                bar.set_position(p.chunks_done as u64);
            };
            let separated = separate_track_with_tta(
                &m.model.network,
                mix,
                &m.options,
                m.model.config.inference.normalize,
                self.args.models.tta,
                &mut on_progress,
            )
            .with_context(|| format!("model {}", m.path.display()))?;
            bar.finish_and_clear();
            let names = m.model.config.stem_names();
            outputs.push(names.into_iter().zip(separated).collect::<Vec<_>>());
        }
        self.stems
            .iter()
            .map(|stem| {
                let mut signals = Vec::new();
                let mut weights = Vec::new();
                for (m, out) in self.members.iter().zip(outputs.iter_mut()) {
                    if let Some((_, s)) = out.iter_mut().find(|(name, _)| name == stem) {
                        signals.push(std::mem::take(s));
                        weights.push(m.weight);
                    }
                }
                if signals.len() == 1 {
                    return Ok(signals.pop().unwrap_or_default());
                }
                ensemble(&signals, Some(&weights), self.args.models.ensemble)
                    .with_context(|| format!("cannot combine the models' {stem} stems"))
            })
            .collect()
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
