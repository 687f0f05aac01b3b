//! `roformer eval`: score separated stems against references with the metrics of the
//! leaderboards (global SDR, SI-SDR; MSST) and of the papers (BSSEval v4; museval), plus MSST's
//! fullness and bleedless. With `--model` the mixtures are separated first, by the library's `Separator`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rayon::prelude::*;
use roformer::audio::{decode_file, Audio};
use roformer::audio::{OutputFormat, PcmFormat};
use roformer::metrics::{
    bleedless_fullness, bss_eval_v4, nanmean, nanmedian, sdr, si_sdr, BssEvalOptions, BssFrames,
    BssScores,
};
use roformer::FileOptions;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::inputs;
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

/// The metrics of one stem, in table order.
const METRICS: [&str; 8] = [
    "sdr",
    "si_sdr",
    "bss_sdr",
    "bss_isr",
    "bss_sir",
    "bss_sar",
    "fullness",
    "bleedless",
];

/// One stem's scores: `values` in the order of [`METRICS`].
#[derive(Debug, Clone)]
struct StemScores {
    values: [f64; 8],
    frames: Option<BssFrames>,
}

#[derive(Debug)]
struct TrackScores {
    name: String,
    stems: Vec<(String, StemScores)>,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let tracks = list_tracks(&args.references)?;
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
fn separate_mixtures(args: &EvalArgs, tracks: &[Track]) -> Result<(PathBuf, Option<TempDir>)> {
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

/// A reference track folder.
#[derive(Debug)]
struct Track {
    name: String,
    dir: PathBuf,
    mixture: Option<PathBuf>,
    /// `(stem, file)`, without the mixture.
    stems: Vec<(String, PathBuf)>,
}

/// The audio files directly in `dir`, by stem name; two files with one name are an error.
fn audio_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    // A folder without audio files is an `Err` entry here: it simply has no files.
    for file in inputs::expand(&[dir.to_path_buf()]).into_iter().flatten() {
        if file.parent() != Some(dir) {
            continue;
        }
        let stem = inputs::track_name(&file)?;
        if let Some((_, other)) = files.iter().find(|(s, _)| *s == stem) {
            bail!(
                "two files for `{stem}`: {} and {}",
                other.display(),
                file.display()
            );
        }
        files.push((stem, file));
    }
    Ok(files)
}

fn list_tracks(references: &Path) -> Result<Vec<Track>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(references)
        .with_context(|| format!("cannot read the references folder {}", references.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut tracks = Vec::new();
    for dir in dirs {
        let name = match dir.file_name().and_then(|n| n.to_str()) {
            Some(n) if !n.starts_with('.') => n.to_string(),
            _ => continue,
        };
        let mut files = audio_files(&dir)?;
        let mixture = files
            .iter()
            .position(|(s, _)| s == "mixture")
            .map(|i| files.remove(i).1);
        if files.is_empty() {
            eprintln!(
                "warning: {} has no reference stems (only a mixture, or no audio); skipped",
                dir.display()
            );
            continue;
        }
        tracks.push(Track {
            name,
            dir,
            mixture,
            stems: files,
        });
    }
    if tracks.is_empty() {
        bail!(
            "no track folders with reference stems in {} (expected REF/<track>/<stem>.wav)",
            references.display()
        );
    }
    Ok(tracks)
}

fn score_all(args: &EvalArgs, tracks: &[Track], estimates: &Path) -> Result<ExitCode> {
    let mut results = Vec::new();
    let mut failed = 0;
    let total = tracks.len();
    for (i, track) in tracks.iter().enumerate() {
        let started = Instant::now();
        match score_track(args, track, &estimates.join(&track.name)) {
            Ok(scores) => {
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

/// MUSDB's order first, then the others by name.
fn stem_rank(name: &str) -> (usize, String) {
    let known = ["vocals", "drums", "bass", "other", "instrumental"];
    let rank = known.iter().position(|k| *k == name).unwrap_or(known.len());
    (rank, name.to_string())
}

/// Planar samples, `[channel][sample]`.
type Planar = Vec<Vec<f32>>;

/// A stem to score: its name, its reference and its estimate.
struct Scored<'a> {
    stem: String,
    reference: Planar,
    estimate: &'a Planar,
}

struct Loaded {
    path: PathBuf,
    audio: Audio,
}

fn load(path: &Path) -> Result<Loaded> {
    Ok(Loaded {
        path: path.to_path_buf(),
        audio: decode_file(path)?,
    })
}

fn score_track(args: &EvalArgs, track: &Track, est_dir: &Path) -> Result<TrackScores> {
    if !est_dir.is_dir() {
        bail!("no estimates: {} is not a folder", est_dir.display());
    }
    let est_files = audio_files(est_dir)?;
    if est_files.is_empty() {
        bail!("no estimate files in {}", est_dir.display());
    }
    // Decode everything (references, mixture, estimates) in parallel.
    let mut paths: Vec<&Path> = track.stems.iter().map(|(_, p)| p.as_path()).collect();
    paths.extend(track.mixture.as_deref());
    paths.extend(est_files.iter().map(|(_, p)| p.as_path()));
    let mut loaded: Vec<Loaded> = paths.par_iter().map(|p| load(p)).collect::<Result<_>>()?;
    check_compatible(&mut loaded, args.trim)?;
    let sample_rate = loaded[0].audio.sample_rate();
    let mut loaded = loaded.into_iter();
    let refs: Vec<(String, Vec<Vec<f32>>)> = track
        .stems
        .iter()
        .map(|(s, _)| (s.clone(), loaded.next().map(|l| l.audio.into_channels())))
        .map(|(s, a)| (s, a.unwrap_or_default()))
        .collect();
    let mixture = track
        .mixture
        .as_ref()
        .and_then(|_| loaded.next().map(|l| l.audio.into_channels()));
    let ests: Vec<(String, Vec<Vec<f32>>)> = est_files
        .iter()
        .map(|(s, _)| (s.clone(), loaded.next().map(|l| l.audio.into_channels())))
        .map(|(s, a)| (s, a.unwrap_or_default()))
        .collect();

    let reference_of = |stem: &str| refs.iter().find(|(s, _)| s == stem).map(|(_, a)| a);
    // The stems to score with their references.
    let mut scored: Vec<Scored> = Vec::new();
    for (stem, est) in &ests {
        let reference = match reference_of(stem) {
            Some(r) => r.clone(),
            None if stem == "instrumental" => {
                let others: Vec<&Vec<Vec<f32>>> = refs
                    .iter()
                    .filter(|(s, _)| s != "vocals")
                    .map(|(_, a)| a)
                    .collect();
                if others.is_empty() {
                    eprintln!(
                        "warning: {}: no non-vocal reference stems to score instrumental against",
                        track.name
                    );
                    continue;
                }
                sum(&others)
            }
            None => {
                eprintln!(
                    "warning: {}: no reference for {} in {}; not scored",
                    track.name,
                    est_dir.join(stem).display(),
                    track.dir.display()
                );
                continue;
            }
        };
        scored.push(Scored {
            stem: stem.clone(),
            reference,
            estimate: est,
        });
    }
    if scored.is_empty() {
        bail!(
            "none of the estimates in {} has a reference stem in {}",
            est_dir.display(),
            track.dir.display()
        );
    }
    scored.sort_by_key(|s| stem_rank(&s.stem));

    // Global metrics, per stem.
    let global: Vec<[f64; 4]> = scored
        .par_iter()
        .map(|s| {
            let (r, e) = (&s.reference, s.estimate);
            let bf = bleedless_fullness(r, e, sample_rate)?;
            Ok([sdr(r, e)?, si_sdr(r, e)?, bf.fullness, bf.bleedless])
        })
        .collect::<Result<_, roformer::metrics::MetricsError>>()?;

    let bss = bss_groups(track, &scored, &refs, mixture.as_ref(), sample_rate);

    let stems = scored
        .iter()
        .zip(global)
        .map(|(Scored { stem, .. }, g)| {
            let (scores, frames) = match bss.get(stem) {
                Some((s, f)) => (*s, Some(f.clone())),
                None => (BssScores::NAN, None),
            };
            let values = [
                g[0], g[1], scores.sdr, scores.isr, scores.sir, scores.sar, g[2], g[3],
            ];
            (stem.clone(), StemScores { values, frames })
        })
        .collect();
    Ok(TrackScores {
        name: track.name.clone(),
        stems,
    })
}

/// Same rate and channel count for every file, and the same length (or all cut to the
/// shortest with `trim`).
fn check_compatible(loaded: &mut [Loaded], trim: bool) -> Result<()> {
    let first = &loaded[0];
    for l in &loaded[1..] {
        if l.audio.sample_rate() != first.audio.sample_rate() {
            bail!(
                "sample rates differ: {} is {} Hz, {} is {} Hz",
                first.path.display(),
                first.audio.sample_rate(),
                l.path.display(),
                l.audio.sample_rate()
            );
        }
        if l.audio.num_channels() != first.audio.num_channels() {
            bail!(
                "channel counts differ: {} has {}, {} has {}",
                first.path.display(),
                first.audio.num_channels(),
                l.path.display(),
                l.audio.num_channels()
            );
        }
    }
    let shortest = loaded.iter().map(|l| l.audio.frames()).min().unwrap_or(0);
    if let Some(l) = loaded.iter().find(|l| l.audio.frames() != shortest) {
        if !trim {
            let short = loaded
                .iter()
                .find(|l| l.audio.frames() == shortest)
                .map_or(first.path.clone(), |l| l.path.clone());
            bail!(
                "lengths differ: {} has {} samples, {} has {} (use --trim to cut every file to the shortest)",
                l.path.display(),
                l.audio.frames(),
                short.display(),
                shortest
            );
        }
        for l in loaded.iter_mut() {
            l.audio.truncate(shortest);
        }
    }
    if shortest == 0 {
        bail!("{} has no samples", loaded[0].path.display());
    }
    Ok(())
}

fn sum(signals: &[&Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let mut out = signals[0].clone();
    for s in &signals[1..] {
        for (o, c) in out.iter_mut().zip(s.iter()) {
            for (o, x) in o.iter_mut().zip(c) {
                *o += x;
            }
        }
    }
    out
}

/// BSSEval v4 needs the track's stems together. As museval's `eval_mus_track` does: the stems
/// that have their own reference file are evaluated together; `vocals` + `instrumental` (MUSDB's
/// vocals/accompaniment) are evaluated as a pair, and then give `vocals` its values. A stem left
/// alone is paired with its complement: the sum of the other references against
/// mixture - estimate.
fn bss_groups(
    track: &Track,
    scored: &[Scored],
    refs: &[(String, Vec<Vec<f32>>)],
    mixture: Option<&Vec<Vec<f32>>>,
    sample_rate: u32,
) -> BTreeMap<String, (BssScores, BssFrames)> {
    let options = BssEvalOptions::museval(sample_rate);
    let mut out = BTreeMap::new();
    let has_ref_file = |s: &str| refs.iter().any(|(r, _)| r == s);
    let joint: Vec<usize> = (0..scored.len())
        .filter(|&i| scored[i].stem != "instrumental" && has_ref_file(&scored[i].stem))
        .collect();
    let pos = |name: &str| scored.iter().position(|s| s.stem == name);
    let acc_pair = pos("vocals").zip(pos("instrumental"));

    let run = |members: &[usize], extra: Option<(&Planar, &Planar)>| {
        let mut r: Vec<&[Vec<f32>]> = members
            .iter()
            .map(|&i| scored[i].reference.as_slice())
            .collect();
        let mut e: Vec<&[Vec<f32>]> = members
            .iter()
            .map(|&i| scored[i].estimate.as_slice())
            .collect();
        if let Some((xr, xe)) = extra {
            r.push(xr);
            e.push(xe);
        }
        match bss_eval_v4(&r, &e, &options) {
            Ok(frames) => members.iter().copied().zip(frames).collect(),
            Err(err) => {
                let names: Vec<&str> = members.iter().map(|&i| scored[i].stem.as_str()).collect();
                eprintln!(
                    "warning: {}: BSSEval of {} not computed: {err}",
                    track.name,
                    names.join(" + ")
                );
                Vec::new()
            }
        }
    };
    let keep = |out: &mut BTreeMap<String, (BssScores, BssFrames)>,
                results: Vec<(usize, BssFrames)>,
                report: &[usize]| {
        for (i, f) in results {
            if report.contains(&i) {
                out.insert(scored[i].stem.clone(), (f.median(), f));
            }
        }
    };

    // Stems whose group was evaluated (a failure has been reported).
    let mut attempted: Vec<usize> = Vec::new();
    if joint.len() >= 2 {
        let report: Vec<usize> = joint
            .iter()
            .copied()
            .filter(|&i| acc_pair.is_none_or(|(v, _)| v != i))
            .collect();
        keep(&mut out, run(&joint, None), &report);
        attempted.extend(report);
    }
    if let Some((v, i)) = acc_pair {
        keep(&mut out, run(&[v, i], None), &[v, i]);
        attempted.extend([v, i]);
    }
    // Stems left alone: pair each with its complement.
    for (i, Scored { stem, estimate, .. }) in scored.iter().enumerate() {
        if attempted.contains(&i) {
            continue;
        }
        let others: Vec<&Vec<Vec<f32>>> = refs
            .iter()
            .filter(|(r, _)| {
                r != "instrumental"
                    && if stem == "instrumental" {
                        r == "vocals"
                    } else {
                        r != stem
                    }
            })
            .map(|(_, a)| a)
            .collect();
        if others.is_empty() {
            eprintln!(
                "warning: {}: BSSEval of {stem} needs another reference stem; not computed",
                track.name
            );
            continue;
        }
        let complement_ref = sum(&others);
        let mix = match mixture {
            Some(m) => m.clone(),
            None => {
                let all: Vec<&Vec<Vec<f32>>> = refs
                    .iter()
                    .filter(|(r, _)| r != "instrumental")
                    .map(|(_, a)| a)
                    .collect();
                sum(&all)
            }
        };
        let complement_est: Vec<Vec<f32>> = mix
            .iter()
            .zip(estimate.iter())
            .map(|(m, e)| m.iter().zip(e).map(|(m, e)| m - e).collect())
            .collect();
        keep(
            &mut out,
            run(&[i], Some((&complement_ref, &complement_est))),
            &[i],
        );
    }
    out
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
