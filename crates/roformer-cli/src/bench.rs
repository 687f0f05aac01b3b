//! `roformer bench`: time the network on whole chunks of a synthetic input and put the time in
//! context: FLOPs per chunk, the achieved FLOP rate, and the "floor" this machine's matrix-product
//! rate sets (FLOPs / the rate of a plain f32 matmul of the model's largest Linear shape).
//!
//! Without `--model`, the weights are made up from the config (`StateDict::synthetic`): the
//! speed does not depend on the weights' values.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use roformer::config::read_config_text;
use roformer::cpu::{Precision, Weight};
use roformer::engine::Engine;
use roformer::loaded_model::SeparationModel;
use roformer::model::flops::{self, ModelFlops};
use roformer::weights::{save_safetensors, SplitMix64, StateDict};
use roformer::Tensor;
use serde_json::{json, Value};

use crate::separate::configure_threads;

/// Rows of the matmul timed for the floor: the CPU engine works on row tiles of about this many
/// tokens.
const MATMUL_ROWS: usize = 8192;
/// Timed repetitions of that matmul (the median is reported).
const MATMUL_REPS: usize = 5;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// The fused CPU engine on the CPU, the framework path elsewhere.
    Auto,
    /// The plain candle path (the reference the fused engine is tested against).
    Reference,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model's MSST YAML config (optional with a .safetensors made by `roformer convert`).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Model weights (.ckpt/.pth/.safetensors). Without it, weights are made up from the config.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Seconds of input, rounded up to whole chunks (default: one chunk).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Samples per chunk (overrides inference.chunk_size / audio.chunk_size).
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Chunks per model call.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Precision of the transformer's matrix products: f32, bf16 or int8.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// Which implementation runs the network.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineArg,
    /// Timed runs after one warm-up run.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Compute device: cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seed of the made-up weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the input and the last run's output to this .safetensors file (tensors `input`
    /// [chunks, channels, samples] and `output` [chunks, stems, channels, samples], f32).
    #[arg(long)]
    pub save_output: Option<PathBuf>,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse()
}

/// What `bench` measured, in the units it prints.
struct Report {
    json: Value,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    configure_threads(args.threads)?;
    let device = roformer::device::open_device(&args.device)?;
    let engine = Engine::select(
        &device,
        matches!(args.engine, EngineArg::Reference),
        args.precision,
    )?;

    let started = Instant::now();
    let (model, synthetic) = match (&args.model, &args.config) {
        (Some(path), config) => {
            eprintln!("Loading {}", path.display());
            let model = SeparationModel::open(path, config.as_deref(), &device, engine)
                .with_context(|| format!("cannot load model {}", path.display()))?;
            (model, false)
        }
        (None, Some(config_path)) => {
            // The library's message names the file and the cause; no second copy of the cause.
            let text = read_config_text(config_path).map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "Building the model of {} with made-up weights (seed {})",
                config_path.display(),
                args.seed
            );
            let state = StateDict::synthetic(args.seed);
            let model =
                SeparationModel::from_config_text(&text, config_path, state, &device, engine)
                    .with_context(|| {
                        format!("cannot build the model of {}", config_path.display())
                    })?;
            (model, true)
        }
        (None, None) => bail!("give --config (and optionally --model)"),
    };
    let load_s = started.elapsed().as_secs_f64();
    let chunk = args
        .chunk_size
        .unwrap_or_else(|| model.demix_options().chunk_size);
    if chunk <= model.min_chunk() / 2 {
        bail!(
            "chunk size {chunk} is too short for the STFT ({} samples)",
            model.min_chunk()
        );
    }
    // FLOPs are counted for the RoFormers only; HT Demucs reports time and memory.
    let (cost, architecture, parameters) = match &model {
        SeparationModel::Roformer(m) => {
            let parameters = if synthetic {
                flops::parameters(&m.config.model)?
            } else {
                m.parameters
            };
            let cost = ModelFlops::for_config(&m.config.model, chunk)?;
            let largest = flops::largest_linear(&m.config.model);
            let name = m.config.model.architecture().to_string();
            (Some((cost, largest)), name, parameters)
        }
        SeparationModel::HtDemucs(m) => {
            let name = format!("HT Demucs ({})", m.config.htdemucs.shape());
            (None, name, m.parameters)
        }
    };

    let sample_rate = model.sample_rate();
    let network = model.network();
    let channels = network.channels();
    let stems = network.num_stems();
    let chunks = match args.seconds {
        Some(s) if !(s.is_finite() && s > 0.0) => bail!("--seconds must be positive"),
        Some(s) => ((s * f64::from(sample_rate)).round() as usize)
            .div_ceil(chunk)
            .max(1),
        None => 1,
    };
    let input = synthetic_input(chunks, channels, chunk, sample_rate);
    let audio_seconds = (chunks * chunk) as f64 / f64::from(sample_rate);
    eprintln!(
        "{} chunk(s) of {chunk} samples ({:.2} s of audio), {} channel(s), batch {}, {} thread(s), \
         precision {}, engine {}",
        chunks,
        audio_seconds,
        channels,
        args.batch_size,
        rayon::current_num_threads(),
        args.precision,
        format!("{:?}", args.engine).to_lowercase(),
    );

    let pass = |out: &mut Vec<f32>| -> Result<f64> {
        let t = Instant::now();
        out.clear();
        let per_chunk = channels * chunk;
        for group in input.chunks(args.batch_size * per_chunk) {
            let batch = group.len() / per_chunk;
            out.extend(network.separate_batch(group, batch, chunk)?);
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let mut output = Vec::with_capacity(chunks * stems * channels * chunk);
    eprint!("warm-up ...");
    let warmup_s = pass(&mut output)?;
    eprintln!(" {warmup_s:.3} s");
    let mut runs = Vec::with_capacity(args.runs);
    for r in 0..args.runs {
        let t = pass(&mut output)?;
        eprintln!("run {}/{}: {t:.3} s", r + 1, args.runs);
        runs.push(t);
    }
    let median_s = median(&runs);
    let s_per_chunk = median_s / chunks as f64;

    if let Some(path) = &args.save_output {
        save_output(path, &input, &output, chunks, stems, channels, chunk, &args)?;
        eprintln!("wrote {}", path.display());
    }

    let cpu = matches!(device, roformer::Device::Cpu);
    let mut json = json!({
        "config": args.config.as_ref().map(|p| p.display().to_string()),
        "model": args.model.as_ref().map(|p| p.display().to_string()),
        "weights": if synthetic { "synthetic" } else { "checkpoint" },
        "seed": synthetic.then_some(args.seed),
        "architecture": architecture,
        "device": args.device,
        "engine": format!("{:?}", args.engine).to_lowercase(),
        "engine_used": model.engine(),
        "precision": args.precision.name(),
        "threads": rayon::current_num_threads(),
        "sample_rate": sample_rate,
        "channels": channels,
        "stems": stems,
        "chunk_size": chunk,
        "chunks": chunks,
        "batch_size": args.batch_size,
        "audio_seconds": audio_seconds,
        "parameters": parameters,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "runs_s": runs,
        "median_s": median_s,
        "s_per_chunk": s_per_chunk,
        "real_time_factor": audio_seconds / median_s,
        "peak_rss_mb": peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
    });
    if let Some((cost, (k, n))) = &cost {
        let extra = flop_report(cost, (*k, *n), s_per_chunk, args.precision, cpu);
        if let (Some(all), Value::Object(extra)) = (json.as_object_mut(), extra) {
            all.extend(extra);
        }
    }
    let report = Report { json };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// FLOPs per chunk and the floor a plain matmul's rate sets (the RoFormers).
fn flop_report(
    cost: &ModelFlops,
    (k, n): (usize, usize),
    s_per_chunk: f64,
    precision: Precision,
    cpu: bool,
) -> Value {
    let f32_rate = cpu.then(|| {
        eprintln!("timing a {MATMUL_ROWS}x{k} . {k}x{n} f32 matmul ...");
        matmul_rate(MATMUL_ROWS, k, n, Precision::F32)
    });
    let int8_rate = if cpu && precision == Precision::Int8 {
        eprintln!("timing the same matmul with int8 weights ...");
        Some(matmul_rate(MATMUL_ROWS, k, n, Precision::Int8))
    } else {
        None
    };
    let total = cost.total() as f64;
    let gflop = cost.gflop();
    let floor_s = f32_rate.map(|rate| total / (rate * 1e9));
    let int8_floor_s = match (int8_rate, f32_rate) {
        (Some(i8r), Some(f32r)) => {
            // Int8 runs the transformer's Linears; attention and the rest stay f32.
            let int8_part = cost.transformer_linears() as f64;
            Some(int8_part / (i8r * 1e9) + (total - int8_part) / (f32r * 1e9))
        }
        _ => None,
    };
    json!({
        "flop_per_chunk": cost.total(),
        "gflop_per_chunk": gflop,
        "gflop_per_s": gflop / s_per_chunk,
        "flops": {
            "frames": cost.frames,
            "bands": cost.bands,
            "band_split": cost.band_split,
            "projections": cost.projections,
            "feed_forward": cost.feed_forward,
            "time_attention": cost.time_attention,
            "freq_attention": cost.freq_attention,
            "linear_attention": cost.linear_attention,
            "mask_estimators": cost.mask_estimators,
            "matmul": cost.matmul(),
            "attention": cost.attention(),
            "matmul_share": cost.matmul() as f64 / total,
            "attention_share": cost.attention() as f64 / total,
        },
        "matmul": {
            "m": MATMUL_ROWS,
            "k": k,
            "n": n,
            "reps": MATMUL_REPS,
            "f32_gflop_per_s": f32_rate,
            "int8_gflop_per_s": int8_rate,
        },
        "floor_s_per_chunk": floor_s,
        "ours_over_floor": floor_s.map(|f| s_per_chunk / f),
        "int8_floor_s_per_chunk": int8_floor_s,
    })
}

impl Report {
    fn table(&self) -> String {
        let j = &self.json;
        let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
        let opt = |v: &Value, fmt: &dyn Fn(f64) -> String| v.as_f64().map_or("n/a".into(), fmt);
        let runs: Vec<String> = j["runs_s"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .map(|t| format!("{t:.3}"))
            .collect();
        let weights = match j["seed"].as_u64() {
            Some(seed) => format!("made-up weights (seed {seed})"),
            None => j["model"].as_str().unwrap_or("?").to_string(),
        };
        let mut rows: Vec<(String, String)> = vec![
            (
                "model".into(),
                format!(
                    "{} ({} parameters), {weights}",
                    j["architecture"].as_str().unwrap_or("?"),
                    j["parameters"]
                ),
            ),
            (
                "run".into(),
                format!(
                    "{}, engine {}, precision {}, {} thread(s)",
                    j["device"].as_str().unwrap_or("?"),
                    j["engine_used"].as_str().unwrap_or("?"),
                    j["precision"].as_str().unwrap_or("?"),
                    j["threads"]
                ),
            ),
            (
                "input".into(),
                format!(
                    "{} chunk(s) of {} samples ({:.2} s), {} channel(s), batch {}",
                    j["chunks"],
                    j["chunk_size"],
                    f("audio_seconds"),
                    j["channels"],
                    j["batch_size"]
                ),
            ),
            (
                "runs".into(),
                format!(
                    "{} s (after a {:.3} s warm-up)",
                    runs.join(", "),
                    f("warmup_s")
                ),
            ),
            (
                "wall time per chunk".into(),
                format!("{} s (median)", three_digits(f("s_per_chunk"))),
            ),
            (
                "real-time factor".into(),
                format!("{:.2}x (audio s per wall s)", f("real_time_factor")),
            ),
        ];
        if j["gflop_per_chunk"].is_number() {
            rows.extend(self.flop_rows());
        }
        rows.push((
            "peak RSS".into(),
            opt(&j["peak_rss_mb"], &|v| format!("{v:.0} MiB")),
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }

    /// The rows of [`flop_report`]'s fields.
    fn flop_rows(&self) -> Vec<(String, String)> {
        let j = &self.json;
        let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
        let opt = |v: &Value, fmt: &dyn Fn(f64) -> String| v.as_f64().map_or("n/a".into(), fmt);
        let m = &j["matmul"];
        let shape = format!("{}x{} . {}x{}", m["m"], m["k"], m["k"], m["n"]);
        let mut rows = vec![
            (
                "work per chunk".into(),
                format!(
                    "{} GFLOP ({:.1}% Linears, {:.1}% attention)",
                    three_digits(f("gflop_per_chunk")),
                    100.0 * j["flops"]["matmul_share"].as_f64().unwrap_or(0.0),
                    100.0 * j["flops"]["attention_share"].as_f64().unwrap_or(0.0)
                ),
            ),
            (
                "achieved".into(),
                format!("{} GFLOP/s", three_digits(f("gflop_per_s"))),
            ),
            (
                format!("matmul {shape} f32"),
                opt(&m["f32_gflop_per_s"], &|v| format!("{v:.1} GFLOP/s")),
            ),
        ];
        if j["precision"] == "int8" {
            rows.push((
                format!("matmul {shape} int8"),
                opt(&m["int8_gflop_per_s"], &|v| format!("{v:.1} GOP/s")),
            ));
        }
        rows.push((
            "floor (FLOPs / f32 matmul rate)".into(),
            opt(&j["floor_s_per_chunk"], &|v| {
                format!("{} s per chunk", three_digits(v))
            }),
        ));
        if let Some(v) = j["int8_floor_s_per_chunk"].as_f64() {
            rows.push((
                "floor with int8 Linears".into(),
                format!("{} s per chunk", three_digits(v)),
            ));
        }
        rows.push((
            "ours / floor".into(),
            opt(&j["ours_over_floor"], &|v| format!("{v:.2}")),
        ));
        rows
    }
}

/// At least three significant digits, without exponent: 8697.3, 12.3, 0.0392.
fn three_digits(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 || v == 0.0 {
        1
    } else {
        (2 - v.abs().log10().floor() as i32).max(1) as usize
    };
    format!("{v:.decimals$}")
}

/// A deterministic music-like test signal cut into whole chunks: `[chunk][channel][sample]`.
/// Each channel is a few detuned partials with a slow tremolo plus a little white noise.
fn synthetic_input(chunks: usize, channels: usize, chunk: usize, sample_rate: u32) -> Vec<f32> {
    let total = chunks * chunk;
    let sr = f64::from(sample_rate);
    let planar: Vec<Vec<f32>> = (0..channels)
        .map(|c| {
            let mut rng = SplitMix64::new(0x5eed + c as u64);
            let detune = 1.0 + 0.01 * c as f64;
            (0..total)
                .map(|i| {
                    let t = i as f64 / sr;
                    let tau = std::f64::consts::TAU;
                    let tremolo = 0.75 + 0.25 * (tau * 2.0 * t).sin();
                    let tone = 0.25 * (tau * 220.0 * detune * t).sin()
                        + 0.12 * (tau * 330.0 * detune * t + 0.5).sin()
                        + 0.06 * (tau * 1375.0 * t + c as f64).sin();
                    let noise = 0.02 * (2.0 * rng.next_f64() - 1.0);
                    (tremolo * tone + noise) as f32
                })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(total * channels);
    for k in 0..chunks {
        for ch in &planar {
            out.extend_from_slice(&ch[k * chunk..(k + 1) * chunk]);
        }
    }
    out
}

/// GFLOP/s of `out[m, n] = a[m, k] . W^T` with a `Weight` of `precision`: the median of
/// [`MATMUL_REPS`] timings after a warm-up.
fn matmul_rate(m: usize, k: usize, n: usize, precision: Precision) -> f64 {
    let mut rng = SplitMix64::new(99);
    let mut uniform = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| (2.0 * rng.next_f64() - 1.0) as f32)
            .collect()
    };
    let weight = Weight::new(uniform(n * k), n, k, precision);
    let a = uniform(m * k);
    let mut out = vec![0f32; m * n];
    let flop = 2.0 * (m * n * k) as f64;
    // Tiny shapes: several calls per timing so the clock resolution does not matter.
    let calls = ((2e8 / flop).ceil() as usize).max(1);
    let time = |out: &mut Vec<f32>| {
        let t = Instant::now();
        for _ in 0..calls {
            weight.matmul(&a, m, out, false);
        }
        t.elapsed().as_secs_f64() / calls as f64
    };
    time(&mut out);
    let times: Vec<f64> = (0..MATMUL_REPS).map(|_| time(&mut out)).collect();
    flop / median(&times) / 1e9
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Peak resident memory of this process (`VmHWM`), where the OS tells it.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Writes the input `[chunks, channels, chunk]` and the output `[chunks, stems, channels, chunk]`
/// as f32 tensors of a safetensors file, with the run's precision and engine as metadata.
#[allow(clippy::too_many_arguments)]
fn save_output(
    path: &Path,
    input: &[f32],
    output: &[f32],
    chunks: usize,
    stems: usize,
    channels: usize,
    chunk: usize,
    args: &BenchArgs,
) -> Result<()> {
    let cpu = &roformer::Device::Cpu;
    let tensors = BTreeMap::from([
        (
            "input".to_string(),
            Tensor::from_slice(input, (chunks, channels, chunk), cpu)?,
        ),
        (
            "output".to_string(),
            Tensor::from_slice(output, (chunks, stems, channels, chunk), cpu)?,
        ),
    ]);
    let metadata = HashMap::from([
        ("precision".to_string(), args.precision.name().to_string()),
        (
            "engine".to_string(),
            format!("{:?}", args.engine).to_lowercase(),
        ),
        ("chunk_size".to_string(), chunk.to_string()),
    ]);
    save_safetensors(&tensors, &metadata, path)?;
    Ok(())
}
