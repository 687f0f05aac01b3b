//! Scoring one track: decode its references, mixture and estimates, check that they fit
//! together, and compute every metric of every estimated stem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{audio_files, EvalError, ReferenceTrack};
use crate::audio::{decode_file, Audio};
use crate::metrics::{
    bleedless_fullness, bss_eval_v4, sdr, si_sdr, BssEvalOptions, BssFrames, BssScores,
    MetricsError,
};

/// The metrics of one stem, in the order of [`StemScores::values`].
pub const METRICS: [&str; 8] = [
    "sdr",
    "si_sdr",
    "bss_sdr",
    "bss_isr",
    "bss_sir",
    "bss_sar",
    "fullness",
    "bleedless",
];

/// One stem's scores.
#[derive(Debug, Clone)]
pub struct StemScores {
    /// In the order of [`METRICS`]; NaN where a metric could not be computed (said in
    /// [`TrackScores::warnings`]).
    pub values: [f64; 8],
    /// The per-window BSSEval values, when BSSEval was computed.
    pub frames: Option<BssFrames>,
}

/// One track's scores.
#[derive(Debug, Clone)]
pub struct TrackScores {
    /// The track's name.
    pub name: String,
    /// Per stem, MUSDB's order first (vocals, drums, bass, other, instrumental), then by name.
    pub stems: Vec<(String, StemScores)>,
    /// What could not be scored, and why.
    pub warnings: Vec<String>,
}

/// MUSDB's order first, then the others by name.
pub fn stem_rank(name: &str) -> (usize, String) {
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

/// Scores the estimates in `estimates` (`<stem>.<ext>` files) against `track`. Every file must
/// have the track's sample rate and channel count, and its length unless `trim` cuts them all to
/// the shortest. An `instrumental` estimate without its own reference is scored against the sum
/// of the references other than vocals.
pub fn score_track(
    track: &ReferenceTrack,
    estimates: &Path,
    trim: bool,
) -> Result<TrackScores, EvalError> {
    if !estimates.is_dir() {
        return Err(EvalError::NoEstimatesFolder(estimates.to_path_buf()));
    }
    let est_files = audio_files(estimates)?;
    if est_files.is_empty() {
        return Err(EvalError::NoEstimateFiles(estimates.to_path_buf()));
    }
    // Decode everything (references, mixture, estimates) in parallel.
    let mut paths: Vec<&Path> = track.stems.iter().map(|(_, p)| p.as_path()).collect();
    paths.extend(track.mixture.as_deref());
    paths.extend(est_files.iter().map(|(_, p)| p.as_path()));
    let mut loaded: Vec<Loaded> = paths
        .par_iter()
        .map(|p| {
            Ok(Loaded {
                path: p.to_path_buf(),
                audio: decode_file(p)?,
            })
        })
        .collect::<Result<_, EvalError>>()?;
    check_compatible(&mut loaded, trim)?;
    let sample_rate = loaded[0].audio.sample_rate();
    let mut loaded = loaded.into_iter().map(|l| l.audio.into_channels());
    let refs: Vec<(String, Planar)> = track
        .stems
        .iter()
        .map(|(s, _)| (s.clone(), loaded.next().unwrap_or_default()))
        .collect();
    let mixture = track.mixture.as_ref().and_then(|_| loaded.next());
    let ests: Vec<(String, Planar)> = est_files
        .iter()
        .map(|(s, _)| (s.clone(), loaded.next().unwrap_or_default()))
        .collect();

    let mut warnings = Vec::new();
    let reference_of = |stem: &str| refs.iter().find(|(s, _)| s == stem).map(|(_, a)| a);
    // The stems to score with their references.
    let mut scored: Vec<Scored> = Vec::new();
    for (stem, est) in &ests {
        let reference = match reference_of(stem) {
            Some(r) => r.clone(),
            None if stem == "instrumental" => {
                let others: Vec<&Planar> = refs
                    .iter()
                    .filter(|(s, _)| s != "vocals")
                    .map(|(_, a)| a)
                    .collect();
                if others.is_empty() {
                    warnings.push(format!(
                        "{}: no non-vocal reference stems to score instrumental against",
                        track.name
                    ));
                    continue;
                }
                sum(&others)
            }
            None => {
                warnings.push(format!(
                    "{}: no reference for {} in {}; not scored",
                    track.name,
                    estimates.join(stem).display(),
                    track.dir.display()
                ));
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
        return Err(EvalError::NothingToScore {
            estimates: estimates.to_path_buf(),
            references: track.dir.clone(),
        });
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
        .collect::<Result<_, MetricsError>>()?;

    let bss = bss_groups(
        track,
        &scored,
        &refs,
        mixture.as_ref(),
        sample_rate,
        &mut warnings,
    );

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
        warnings,
    })
}

/// Same rate and channel count for every file, and the same length (or all cut to the
/// shortest with `trim`); not empty.
fn check_compatible(loaded: &mut [Loaded], trim: bool) -> Result<(), EvalError> {
    let Some(first) = loaded.first() else {
        return Ok(());
    };
    for l in &loaded[1..] {
        if l.audio.sample_rate() != first.audio.sample_rate() {
            return Err(EvalError::SampleRates {
                first: first.path.clone(),
                first_rate: first.audio.sample_rate(),
                other: l.path.clone(),
                other_rate: l.audio.sample_rate(),
            });
        }
        if l.audio.num_channels() != first.audio.num_channels() {
            return Err(EvalError::Channels {
                first: first.path.clone(),
                first_channels: first.audio.num_channels(),
                other: l.path.clone(),
                other_channels: l.audio.num_channels(),
            });
        }
    }
    let shortest = loaded.iter().map(|l| l.audio.frames()).min().unwrap_or(0);
    if let Some(longer) = loaded.iter().find(|l| l.audio.frames() != shortest) {
        if !trim {
            let short = loaded
                .iter()
                .find(|l| l.audio.frames() == shortest)
                .unwrap_or(first);
            return Err(EvalError::Lengths {
                longer: longer.path.clone(),
                longer_frames: longer.audio.frames(),
                shortest: short.path.clone(),
                shortest_frames: shortest,
            });
        }
        for l in loaded.iter_mut() {
            l.audio.truncate(shortest);
        }
    }
    if shortest == 0 {
        return Err(crate::audio::AudioError::NoSamples {
            path: loaded[0].path.clone(),
        }
        .into());
    }
    Ok(())
}

fn sum(signals: &[&Planar]) -> Planar {
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
    track: &ReferenceTrack,
    scored: &[Scored],
    refs: &[(String, Planar)],
    mixture: Option<&Planar>,
    sample_rate: u32,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, (BssScores, BssFrames)> {
    let options = BssEvalOptions::museval(sample_rate);
    let mut out = BTreeMap::new();
    let has_ref_file = |s: &str| refs.iter().any(|(r, _)| r == s);
    let joint: Vec<usize> = (0..scored.len())
        .filter(|&i| scored[i].stem != "instrumental" && has_ref_file(&scored[i].stem))
        .collect();
    let pos = |name: &str| scored.iter().position(|s| s.stem == name);
    let acc_pair = pos("vocals").zip(pos("instrumental"));

    let run = |members: &[usize], extra: Option<(&Planar, &Planar)>, warnings: &mut Vec<String>| {
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
                warnings.push(format!(
                    "{}: BSSEval of {} not computed: {err}",
                    track.name,
                    names.join(" + ")
                ));
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
        keep(&mut out, run(&joint, None, warnings), &report);
        attempted.extend(report);
    }
    if let Some((v, i)) = acc_pair {
        keep(&mut out, run(&[v, i], None, warnings), &[v, i]);
        attempted.extend([v, i]);
    }
    // Stems left alone: pair each with its complement.
    for (i, Scored { stem, estimate, .. }) in scored.iter().enumerate() {
        if attempted.contains(&i) {
            continue;
        }
        let others: Vec<&Planar> = refs
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
            warnings.push(format!(
                "{}: BSSEval of {stem} needs another reference stem; not computed",
                track.name
            ));
            continue;
        }
        let complement_ref = sum(&others);
        let mix = match mixture {
            Some(m) => m.clone(),
            None => {
                let all: Vec<&Planar> = refs
                    .iter()
                    .filter(|(r, _)| r != "instrumental")
                    .map(|(_, a)| a)
                    .collect();
                sum(&all)
            }
        };
        let complement_est: Planar = mix
            .iter()
            .zip(estimate.iter())
            .map(|(m, e)| m.iter().zip(e).map(|(m, e)| m - e).collect())
            .collect();
        keep(
            &mut out,
            run(&[i], Some((&complement_ref, &complement_est)), warnings),
            &[i],
        );
    }
    out
}
