//! `roformer eval`: score separated stems against references with the metrics of the
//! leaderboards (global SDR, SI-SDR; MSST) and of the papers (BSSEval v4; museval), plus MSST's
//! fullness and bleedless. With `--model` the mixtures are separated first, by the library's `Separator`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use roformer::audio::{OutputFormat, PcmFormat};
use roformer::evaluation::{
    list_reference_tracks, score_track, stem_rank, ReferenceTrack, StemScores, TrackScores, METRICS,
};
use roformer::metrics::{nanmean, nanmedian};
use roformer::FileOptions;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::separate::{self, ModelArgs};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// MUSDB18-style references: REF/<track>/mixture.wav and one file per stem
    /// (vocals.wav, drums.wav, ...; any stem names, any supported audio format).
    #[arg(short, long, value_name = "REF")]
    pub references: PathBuf,
    /// Separated stems to score, in the layout `separate` writes: EST/<track>/<stem>.wav.
    #[arg(
        short,
        long,
        value_name = "EST",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub estimates: Option<PathBuf>,
    /// Separate REF/<track>/mixture.* first with these model options (as with `separate`), then
    /// score its stems.
    #[command(flatten)]
    pub models: ModelArgs,
    /// With --model: keep the separated stems in this folder (default: a temporary folder that
    /// is removed afterwards). Existing stems there are replaced.
    #[arg(long, value_name = "DIR", requires = "model")]
    pub separated: Option<PathBuf>,
    /// With --model: also write and score `instrumental` = mixture - vocals.
    #[arg(long, requires = "model")]
    pub instrumental: bool,
    /// Write the scores as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also put every stem's per-window BSSEval values in the JSON (`bss_frames`).
    #[arg(long, requires = "json")]
    pub frames: bool,
    /// Write one CSV row per track and stem.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Cut every file of a track to the shortest one instead of refusing different lengths.
    #[arg(long)]
    pub trim: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress notices; errors and the results are still printed.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let listing = list_reference_tracks(&args.references)?;
    for dir in &listing.skipped {
        eprintln!(
            "warning: {} has no reference stems (only a mixture, or no audio); skipped",
            dir.display()
        );
    }
    let tracks = listing.tracks;
    let mut temporary = None;
    let estimates = match &args.estimates {
        Some(dir) => {
            separate::configure_threads(args.threads)?;
            dir.clone()
        }
        None => {
            let (dir, temp) = separate_mixtures(&args, &tracks)?;
            temporary = temp;
            dir
        }
    };
    let result = score_all(&args, &tracks, &estimates);
    drop(temporary);
    result
}

/// Removes a temporary folder when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(purpose: &str) -> Result<TempDir> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "roformer-eval-{purpose}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create temporary folder {}", dir.display()))?;
    Ok(TempDir(dir))
}

/// Separates every track's mixture with the library's separator, writing
/// `<out>/<track>/<stem>.wav` (float WAV). Returns the estimates folder and the temporary folder
/// to remove afterwards, if any. A track that fails is reported and then lacks estimates.
fn separate_mixtures(
    args: &EvalArgs,
    tracks: &[ReferenceTrack],
) -> Result<(PathBuf, Option<TempDir>)> {
    let mixtures = tracks
        .iter()
        .map(|track| {
            track.mixture.as_ref().ok_or_else(|| {
                anyhow!(
                    "{}: no mixture file to separate (expected {}/mixture.wav)",
                    track.dir.display(),
                    track.dir.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (output, temp) = match &args.separated {
        Some(dir) => (dir.clone(), None),
        None => {
            let t = temp_dir("stems")?;
            (t.0.clone(), Some(t))
        }
    };
    let builder = args.models.builder()?.instrumental(args.instrumental);
    let separator = separate::open_separator(builder, &args.models, args.quiet)?;
    let options = FileOptions {
        format: OutputFormat::Wav(PcmFormat::Float32),
        overwrite: true,
        ..FileOptions::default()
    };
    let total = tracks.len();
    for (i, (track, mixture)) in tracks.iter().zip(mixtures).enumerate() {
        let label = format!("[{}/{}] {}", i + 1, total, track.name);
        let dir = output.join(&track.name);
        if let Err(e) =
            separate::separate_one(&separator, mixture, &dir, &options, &label, args.quiet)
        {
            eprintln!("error: {}: {e:#}", mixture.display());
        }
    }
    Ok((output, temp))
}

fn score_all(args: &EvalArgs, tracks: &[ReferenceTrack], estimates: &Path) -> Result<ExitCode> {
    let mut results = Vec::new();
    let mut failed = 0;
    let total = tracks.len();
    for (i, track) in tracks.iter().enumerate() {
        let started = Instant::now();
        match score_track(track, &estimates.join(&track.name), args.trim) {
            Ok(scores) => {
                for warning in &scores.warnings {
                    eprintln!("warning: {warning}");
                }
                if !args.quiet {
                    eprintln!(
                        "[{}/{total}] {}: {} stem(s) scored in {:.1}s",
                        i + 1,
                        track.name,
                        scores.stems.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
                results.push(scores);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", track.name);
            }
        }
    }
    if results.is_empty() {
        bail!("no track could be scored");
    }
    print_table(&results);
    if let Some(path) = &args.json {
        write_json(path, &results, args.frames)?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &results)?;
    }
    if failed > 0 {
        eprintln!("{} track(s) scored, {failed} failed", results.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "nan".into()
    }
}

fn print_table(results: &[TrackScores]) {
    let name_w = results
        .iter()
        .map(|t| t.name.chars().count())
        .chain(["median".len(), "track".len()])
        .max()
        .unwrap_or(5)
        .min(40);
    let stem_w = results
        .iter()
        .flat_map(|t| t.stems.iter().map(|(s, _)| s.len()))
        .chain(["stem".len()])
        .max()
        .unwrap_or(4);
    let header = |label: &str| {
        let mut line = format!("{label:<name_w$}  {:<stem_w$}", "stem");
        for m in METRICS {
            line.push_str(&format!(" {m:>9}"));
        }
        line
    };
    let row = |name: &str, stem: &str, values: &[f64]| {
        let name: String = name.chars().take(name_w).collect();
        let mut line = format!("{name:<name_w$}  {stem:<stem_w$}");
        for v in values {
            line.push_str(&format!(" {:>9}", fmt_value(*v)));
        }
        line
    };
    println!("sdr, si_sdr   global SDR over the whole track (MSST, SDX'23, MVSep); leaderboards report the mean over tracks");
    println!("bss_*         BSSEval v4 (museval 0.4.1): median over 1 s windows; papers report the median over tracks");
    println!("fullness, bleedless  MSST mel-spectrogram scores (0-100, higher is better)");
    println!();
    println!("{}", header("track"));
    for t in results {
        for (stem, s) in &t.stems {
            println!("{}", row(&t.name, stem, &s.values));
        }
    }
    println!();
    let summary = summarize(results);
    println!("{}", header(&format!("{} track(s)", results.len())));
    for (label, pick) in [("mean", 0usize), ("median", 1)] {
        for (stem, per_metric) in &summary {
            let values: Vec<f64> = per_metric.iter().map(|mm| mm[pick]).collect();
            println!("{}", row(label, stem, &values));
        }
    }
}

/// Per stem (in table order): `[mean, median]` over tracks of each metric (NaN ignored).
fn summarize(results: &[TrackScores]) -> Vec<(String, Vec<[f64; 2]>)> {
    let mut stems: Vec<String> = Vec::new();
    for t in results {
        for (s, _) in &t.stems {
            if !stems.contains(s) {
                stems.push(s.clone());
            }
        }
    }
    stems.sort_by_key(|s| stem_rank(s));
    stems
        .into_iter()
        .map(|stem| {
            let per_metric = (0..METRICS.len())
                .map(|m| {
                    let v: Vec<f64> = results
                        .iter()
                        .filter_map(|t| t.stems.iter().find(|(s, _)| *s == stem))
                        .map(|(_, sc)| sc.values[m])
                        .collect();
                    [nanmean(&v), nanmedian(&v)]
                })
                .collect();
            (stem, per_metric)
        })
        .collect()
}

/// A map serialised in the order of its entries.
struct Ordered<'a, T>(&'a [(String, T)]);

impl<T: Serialize> Serialize for Ordered<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct MeanMedian {
    mean: f64,
    median: f64,
}

/// One stem's JSON object: the metrics in table order, then optionally `bss_frames`.
struct StemJson<'a> {
    scores: &'a StemScores,
    frames: bool,
}

impl Serialize for StemJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (m, v) in METRICS.iter().zip(self.scores.values) {
            map.serialize_entry(m, &v)?;
        }
        if self.frames {
            match &self.scores.frames {
                Some(f) => map.serialize_entry(
                    "bss_frames",
                    &FramesJson {
                        sdr: &f.sdr,
                        isr: &f.isr,
                        sir: &f.sir,
                        sar: &f.sar,
                    },
                )?,
                None => map.serialize_entry("bss_frames", &())?,
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct FramesJson<'a> {
    sdr: &'a [f64],
    isr: &'a [f64],
    sir: &'a [f64],
    sar: &'a [f64],
}

#[derive(Serialize)]
struct TrackJson<'a> {
    name: &'a str,
    stems: Ordered<'a, StemJson<'a>>,
}

#[derive(Serialize)]
struct Document<'a> {
    tracks: Vec<TrackJson<'a>>,
    summary: Ordered<'a, Ordered<'a, MeanMedian>>,
}

fn write_json(path: &Path, results: &[TrackScores], frames: bool) -> Result<()> {
    let stems: Vec<Vec<(String, StemJson)>> = results
        .iter()
        .map(|t| {
            t.stems
                .iter()
                .map(|(stem, scores)| (stem.clone(), StemJson { scores, frames }))
                .collect()
        })
        .collect();
    let tracks = results
        .iter()
        .zip(&stems)
        .map(|(t, s)| TrackJson {
            name: &t.name,
            stems: Ordered(s),
        })
        .collect();
    let summary: Vec<(String, Vec<(String, MeanMedian)>)> = summarize(results)
        .into_iter()
        .map(|(stem, per_metric)| {
            let metrics = METRICS
                .iter()
                .zip(per_metric)
                .map(|(m, [mean, median])| (m.to_string(), MeanMedian { mean, median }))
                .collect();
            (stem, metrics)
        })
        .collect();
    let summary: Vec<(String, Ordered<MeanMedian>)> = summary
        .iter()
        .map(|(stem, m)| (stem.clone(), Ordered(m)))
        .collect();
    let doc = Document {
        tracks,
        summary: Ordered(&summary),
    };
    // serde_json writes NaN and infinities as null.
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(path: &Path, results: &[TrackScores]) -> Result<()> {
    let mut text = format!("track,stem,{}\n", METRICS.join(","));
    for t in results {
        for (stem, s) in &t.stems {
            let values: Vec<String> = s
                .values
                .iter()
                .map(|v| {
                    if v.is_finite() {
                        v.to_string()
                    } else {
                        String::new()
                    }
                })
                .collect();
            text.push_str(&format!(
                "{},{},{}\n",
                csv_field(&t.name),
                csv_field(stem),
                values.join(",")
            ));
        }
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
