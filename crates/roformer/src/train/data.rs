//! Training examples: random chunks of a multitrack dataset mixed on the fly, as MSST's default
//! `MSSDataset` (dataset type 1, MUSDB-style folders) draws them.
//!
//! For every example of a batch and for every instrument *independently*, [`ChunkSampler`] picks
//! a random track and a random offset, reads that instrument's chunk and augments it (see
//! [`super::augment`]); the mixture is the sum of all instruments' chunks, the targets are the
//! chunks of the stems the model predicts. So the stems of an example usually come from different
//! songs, which is MSST's default and multiplies the variety of mixtures.
//!
//! Matching MSST (`utils/dataset.py`, `load_source`/`load_chunk`/`load_random_mix`):
//!
//! * The track is uniform over tracks, the offset uniform over `0..=frames - chunk_len`; a track
//!   shorter than the chunk is read from its start and padded with zeros at the end.
//!   `frames` is the shortest stem of the track.
//! * With `min_mean_abs > 0`, a chunk whose mean `|x|` (over channels and time, before
//!   augmentation) is below it is drawn again, track and offset both. MSST retries forever; here
//!   after [`MAX_DRAWS`] draws the last one is kept, so an all-silent dataset cannot hang.
//! * Order per example: each instrument drawn and augmented in `instruments` order (mixup draws
//!   right after its instrument), then the loudness gains, then mixture = sum of all stems.
//!
//! Not as MSST: randomness. MSST uses the global `random`/`numpy` generators of each DataLoader
//! worker, so its data depends on worker count and scheduling. Here every example has its own
//! generator seeded from `(seed, batch index, position in the batch)`, so [`ChunkSampler::batch`]
//! is a pure function of the seed and the index: a resumed run, or one with a different number of
//! loader threads, sees exactly the same batches.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::augment::{AugmentationConfig, StemAugmentations};
use crate::config::MsstConfig;
use crate::error::{Error, Result};
use crate::weights::SplitMix64;

/// Draws of one chunk before a too-quiet one is accepted anyway (MSST: unbounded).
pub const MAX_DRAWS: usize = 50;

/// Random access to the stems of a multitrack dataset (MUSDB18-style); the CLI implements it for
/// folders of WAV files, [`InMemorySource`] for samples in memory.
pub trait StemSource: Send + Sync {
    fn num_tracks(&self) -> usize;
    fn track_name(&self, track: usize) -> &str;
    /// Channels of every chunk [`read`](Self::read) returns (the model's channel count).
    fn channels(&self) -> usize;
    /// Frames (samples per channel) usable in every stem of the track.
    fn num_frames(&self, track: usize) -> usize;
    /// `len` frames of stem `stem` (index into the dataset's instrument list) from `offset`,
    /// planar `[channel][len]`. Callers keep `offset + len <= num_frames(track)`.
    fn read(&self, track: usize, stem: usize, offset: usize, len: usize) -> Result<Vec<f32>>;
}

/// A dataset held in memory: for tests and small datasets.
#[derive(Debug, Clone)]
pub struct InMemorySource {
    names: Vec<String>,
    channels: usize,
    /// track -> stem -> planar `[channel][frames of that stem]`
    tracks: Vec<Vec<Vec<f32>>>,
    frames: Vec<usize>,
}

impl InMemorySource {
    /// `tracks[track][stem]` is planar `[channel][len]`; every track needs the same number of
    /// stems. Stems of one track may differ in length: the shortest counts (as in MSST). Tracks
    /// are named `track000`, `track001`, ...
    pub fn new(channels: usize, tracks: Vec<Vec<Vec<f32>>>) -> Result<Self> {
        let names = (0..tracks.len()).map(|i| format!("track{i:03}")).collect();
        Self::with_names(channels, names, tracks)
    }

    /// Like [`new`](Self::new) with the track names given.
    pub fn with_names(
        channels: usize,
        names: Vec<String>,
        tracks: Vec<Vec<Vec<f32>>>,
    ) -> Result<Self> {
        if channels == 0 {
            return Err(Error::Data("a source needs at least one channel".into()));
        }
        if names.len() != tracks.len() {
            return Err(Error::Data(format!(
                "{} track names for {} tracks",
                names.len(),
                tracks.len()
            )));
        }
        let stems = tracks.first().map_or(0, Vec::len);
        let mut frames = Vec::with_capacity(tracks.len());
        for (name, track) in names.iter().zip(&tracks) {
            if track.len() != stems || stems == 0 {
                return Err(Error::Data(format!(
                    "track {name} has {} stems, expected {} (and at least one)",
                    track.len(),
                    stems.max(1)
                )));
            }
            if let Some(bad) = track.iter().position(|s| s.len() % channels != 0) {
                return Err(Error::Data(format!(
                    "track {name}, stem {bad}: {} samples are not a whole number of {channels}-channel frames",
                    track[bad].len()
                )));
            }
            frames.push(track.iter().map(|s| s.len() / channels).min().unwrap_or(0));
        }
        Ok(Self {
            names,
            channels,
            tracks,
            frames,
        })
    }
}

impl StemSource for InMemorySource {
    fn num_tracks(&self) -> usize {
        self.tracks.len()
    }

    fn track_name(&self, track: usize) -> &str {
        &self.names[track]
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn num_frames(&self, track: usize) -> usize {
        self.frames[track]
    }

    fn read(&self, track: usize, stem: usize, offset: usize, len: usize) -> Result<Vec<f32>> {
        let samples = self
            .tracks
            .get(track)
            .and_then(|t| t.get(stem))
            .ok_or_else(|| Error::Data(format!("no stem {stem} in track {track}")))?;
        let stem_len = samples.len() / self.channels;
        if offset + len > stem_len {
            return Err(Error::Data(format!(
                "track {}, stem {stem}: frames {offset}..{} are past its end ({stem_len})",
                self.names[track],
                offset + len
            )));
        }
        let mut out = Vec::with_capacity(self.channels * len);
        for plane in samples.chunks_exact(stem_len.max(1)).take(self.channels) {
            out.extend_from_slice(&plane[offset..offset + len]);
        }
        out.resize(self.channels * len, 0.0); // only when stem_len == 0
        Ok(out)
    }
}

/// One training batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch][channels][len]`
    pub mixture: Vec<f32>,
    /// `[batch][stems][channels][len]`, the model's stems in its output order.
    pub targets: Vec<f32>,
    pub batch: usize,
    pub channels: usize,
    pub len: usize,
    pub stems: usize,
}

/// What [`ChunkSampler`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerOptions {
    /// Examples per batch.
    pub batch_size: usize,
    /// Frames per example (MSST `audio.chunk_size`).
    pub chunk_len: usize,
    /// Channels per example; must equal the source's.
    pub channels: usize,
    /// The dataset's stems, in the order [`StemSource`] numbers them (`training.instruments`).
    /// The mixture sums all of them.
    pub instruments: Vec<String>,
    /// Indices into `instruments` of the stems the model predicts, in its output order: all of
    /// them, or just `training.target_instrument`.
    pub model_stems: Vec<usize>,
    /// Minimum mean `|x|` of a chunk (MSST `audio.min_mean_abs`); 0 accepts every chunk.
    pub min_mean_abs: f32,
    pub augment: AugmentationConfig,
}

impl SamplerOptions {
    /// The options an MSST config implies, with the batch size given (MSST takes it from
    /// `training.batch_size`).
    pub fn from_config(config: &MsstConfig, batch_size: usize) -> Result<Self> {
        let instruments = config.training.instruments.clone();
        let model_stems = match config.training.target_instrument.as_deref() {
            Some(target) if !target.is_empty() => {
                vec![instruments
                    .iter()
                    .position(|i| i == target)
                    .ok_or_else(|| {
                        Error::Data(format!(
                            "training.target_instrument `{target}` is not one of training.instruments ({})",
                            instruments.join(", ")
                        ))
                    })?]
            }
            _ => (0..instruments.len()).collect(),
        };
        Ok(Self {
            batch_size,
            chunk_len: config.audio.chunk_size,
            channels: config.model.audio_channels(),
            instruments,
            model_stems,
            min_mean_abs: config.audio.min_mean_abs.unwrap_or(0.0) as f32,
            augment: config.augmentations.clone(),
        })
    }
}

/// Draws batches of random chunks from a [`StemSource`]; see the module documentation.
pub struct ChunkSampler {
    source: Arc<dyn StemSource>,
    options: SamplerOptions,
    seed: u64,
    /// Per instrument: channel shuffle / inversion / polarity.
    stem_augment: Vec<StemAugmentations>,
}

impl ChunkSampler {
    pub fn new(source: Arc<dyn StemSource>, options: SamplerOptions, seed: u64) -> Result<Self> {
        let o = &options;
        let invalid = |m: String| Err(Error::Data(m));
        if o.batch_size == 0 || o.chunk_len == 0 {
            return invalid("batch size and chunk length must be positive".into());
        }
        if o.channels != source.channels() {
            return invalid(format!(
                "the model takes {} channel(s) but the dataset gives {}",
                o.channels,
                source.channels()
            ));
        }
        if source.num_tracks() == 0 {
            return invalid("the dataset has no tracks".into());
        }
        if o.instruments.is_empty() || o.model_stems.is_empty() {
            return invalid("no instruments, or no stems for the model to predict".into());
        }
        if let Some(&bad) = o.model_stems.iter().find(|&&s| s >= o.instruments.len()) {
            return invalid(format!(
                "model stem index {bad} is out of range for {} instruments",
                o.instruments.len()
            ));
        }
        if !(o.min_mean_abs.is_finite() && o.min_mean_abs >= 0.0) {
            return invalid(format!(
                "min_mean_abs must be a non-negative number, got {}",
                o.min_mean_abs
            ));
        }
        let stem_augment = o
            .instruments
            .iter()
            .map(|i| o.augment.for_instrument(i))
            .collect();
        Ok(Self {
            source,
            options,
            seed,
            stem_augment,
        })
    }

    pub fn options(&self) -> &SamplerOptions {
        &self.options
    }

    pub fn source(&self) -> &Arc<dyn StemSource> {
        &self.source
    }

    /// Batch number `index` of the run: a pure function of (seed, index), not of how many batches
    /// were drawn before, so a resumed run sees exactly the same data.
    pub fn batch(&self, index: u64) -> Result<Batch> {
        let o = &self.options;
        let (c, len, stems) = (o.channels, o.chunk_len, o.model_stems.len());
        let example = c * len;
        let mut mixture = vec![0.0f32; o.batch_size * example];
        let mut targets = vec![0.0f32; o.batch_size * stems * example];
        for b in 0..o.batch_size {
            let mut rng = example_rng(self.seed, index, b as u64);
            let chunks = self.example(&mut rng)?;
            let mix = &mut mixture[b * example..(b + 1) * example];
            for chunk in &chunks {
                for (m, x) in mix.iter_mut().zip(chunk) {
                    *m += x;
                }
            }
            for (k, &s) in o.model_stems.iter().enumerate() {
                let at = (b * stems + k) * example;
                targets[at..at + example].copy_from_slice(&chunks[s]);
            }
        }
        Ok(Batch {
            mixture,
            targets,
            batch: o.batch_size,
            channels: c,
            len,
            stems,
        })
    }

    /// One example: every instrument's chunk, augmented, planar `[channel][len]`.
    fn example(&self, rng: &mut SplitMix64) -> Result<Vec<Vec<f32>>> {
        let augment = &self.options.augment;
        let mut chunks = Vec::with_capacity(self.options.instruments.len());
        for stem in 0..self.options.instruments.len() {
            let mut chunk = self.draw(stem, rng)?;
            if augment.mixup_active() {
                // MSST: more chunks of the instrument join with the listed probabilities; each is
                // scaled by a gain in the loudness range and the group is averaged.
                let mut group = vec![chunk];
                for &p in &augment.mixup_probs {
                    if rng.next_f64() < p {
                        group.push(self.draw(stem, rng)?);
                    }
                }
                let gains: Vec<f32> = group.iter().map(|_| augment.draw_gain(rng)).collect();
                let n = group.len() as f32;
                chunk = (0..group[0].len())
                    .map(|j| {
                        group
                            .iter()
                            .zip(&gains)
                            .map(|(g, gain)| g[j] * gain)
                            .sum::<f32>()
                            / n
                    })
                    .collect();
            }
            chunks.push(chunk);
        }
        if augment.loudness_active() {
            for chunk in &mut chunks {
                let gain = augment.draw_gain(rng);
                chunk.iter_mut().for_each(|x| *x *= gain);
            }
        }
        Ok(chunks)
    }

    /// A random chunk of instrument `stem` that is loud enough (within [`MAX_DRAWS`] tries),
    /// with the instrument's channel shuffle / inversion / polarity applied.
    fn draw(&self, stem: usize, rng: &mut SplitMix64) -> Result<Vec<f32>> {
        let (c, len) = (self.options.channels, self.options.chunk_len);
        let tracks = self.source.num_tracks();
        let mut chunk = Vec::new();
        for _ in 0..MAX_DRAWS {
            let track = below(rng, tracks);
            let frames = self.source.num_frames(track);
            chunk = if frames >= len {
                let offset = below(rng, frames - len + 1);
                self.read(track, stem, offset, len)?
            } else {
                // MSST reads what there is and pads with zeros at the end.
                let short = self.read(track, stem, 0, frames)?;
                let mut padded = vec![0.0; c * len];
                if frames > 0 {
                    for (dst, src) in padded.chunks_exact_mut(len).zip(short.chunks_exact(frames)) {
                        dst[..frames].copy_from_slice(src);
                    }
                }
                padded
            };
            let min = self.options.min_mean_abs;
            if min <= 0.0 || mean_abs(&chunk) >= f64::from(min) {
                break;
            }
        }
        self.stem_augment[stem].apply(&mut chunk, c, rng);
        Ok(chunk)
    }

    fn read(&self, track: usize, stem: usize, offset: usize, len: usize) -> Result<Vec<f32>> {
        let chunk = self.source.read(track, stem, offset, len)?;
        let want = self.options.channels * len;
        if chunk.len() != want {
            return Err(Error::Data(format!(
                "track {}, stem {}: read {} samples, expected {want}",
                self.source.track_name(track),
                self.options.instruments[stem],
                chunk.len()
            )));
        }
        Ok(chunk)
    }
}

/// The generator of example `sample` of batch `index`: the three numbers mixed through
/// splitmix64's finaliser one after the other.
fn example_rng(seed: u64, index: u64, sample: u64) -> SplitMix64 {
    let mix = |x: u64| SplitMix64::new(x).next_u64();
    SplitMix64::new(mix(mix(mix(seed) ^ index) ^ sample))
}

/// Uniform in `0..n` (`n > 0`), by the multiply-high method (bias below 2^-40 for any dataset).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

fn mean_abs(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|v| f64::from(v.abs())).sum::<f64>() / x.len() as f64
}

/// Computes batches on background threads so that loading never stalls training: yields
/// `batch(start)`, `batch(start + 1)`, ... in order. At most `depth` batches are being computed or
/// waiting ahead of the consumer (a bounded queue); an error is yielded in its batch's place.
/// Dropping the prefetcher stops the threads (each finishes the batch it is on).
pub struct Prefetcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<QueueState>,
    /// Signalled when a batch is ready (the consumer waits on it).
    ready: Condvar,
    /// Signalled when the consumer takes a batch or the prefetcher stops (workers wait on it).
    space: Condvar,
}

struct QueueState {
    /// The next index a worker will claim.
    next_claim: u64,
    /// The next index the consumer will take.
    next_yield: u64,
    depth: u64,
    done: BTreeMap<u64, Result<Batch>>,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A worker cannot panic while holding the lock (batches are computed outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Prefetcher {
    /// Starts `threads` (at least 1) workers keeping up to `depth` (at least 1) batches ahead.
    /// A `depth` of at least `threads` keeps every worker busy.
    pub fn new(sampler: Arc<ChunkSampler>, start: u64, threads: usize, depth: usize) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState {
                next_claim: start,
                next_yield: start,
                depth: depth.max(1) as u64,
                done: BTreeMap::new(),
                stop: false,
            }),
            ready: Condvar::new(),
            space: Condvar::new(),
        });
        let workers = (0..threads.max(1))
            .map(|i| {
                let shared = Arc::clone(&shared);
                let sampler = Arc::clone(&sampler);
                std::thread::Builder::new()
                    .name(format!("batch-loader-{i}"))
                    .spawn(move || worker(&shared, &sampler))
                    .expect("cannot start a batch loader thread")
            })
            .collect();
        Self { shared, workers }
    }

    /// The next batch in order (blocks until it is ready).
    #[allow(clippy::should_implement_trait)] // never ends, and yields `Result`s: not an Iterator
    pub fn next(&mut self) -> Result<Batch> {
        let mut state = self.shared.lock();
        loop {
            let want = state.next_yield;
            if let Some(batch) = state.done.remove(&want) {
                state.next_yield += 1;
                drop(state);
                self.shared.space.notify_all();
                return batch;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn worker(shared: &Shared, sampler: &ChunkSampler) {
    loop {
        let index = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if state.next_claim < state.next_yield + state.depth {
                    state.next_claim += 1;
                    break state.next_claim - 1;
                }
                state = shared.space.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        let batch = catch_unwind(AssertUnwindSafe(|| sampler.batch(index))).unwrap_or_else(|_| {
            Err(Error::Data(format!(
                "the loader panicked while drawing batch {index}"
            )))
        });
        shared.lock().done.insert(index, batch);
        shared.ready.notify_all();
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.space.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CH: usize = 2;

    /// `tracks` tracks of `stems` stems, `frames` frames each: distinct deterministic values.
    fn noise_tracks(tracks: usize, stems: usize, frames: usize, seed: u64) -> Vec<Vec<Vec<f32>>> {
        let mut rng = SplitMix64::new(seed);
        (0..tracks)
            .map(|_| {
                (0..stems)
                    .map(|_| {
                        (0..CH * frames)
                            .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn instruments(n: usize) -> Vec<String> {
        ["vocals", "drums", "bass", "other"][..n]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn options(stems: usize, chunk_len: usize) -> SamplerOptions {
        SamplerOptions {
            batch_size: 3,
            chunk_len,
            channels: CH,
            instruments: instruments(stems),
            model_stems: (0..stems).collect(),
            min_mean_abs: 0.0,
            augment: AugmentationConfig::default(),
        }
    }

    fn sampler(source: InMemorySource, options: SamplerOptions, seed: u64) -> ChunkSampler {
        ChunkSampler::new(Arc::new(source), options, seed).unwrap()
    }

    fn augmented(yaml: &str) -> AugmentationConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// The example-`b`, stem-`k` target chunk of a batch.
    fn target(batch: &Batch, b: usize, k: usize) -> &[f32] {
        let n = batch.channels * batch.len;
        let at = (b * batch.stems + k) * n;
        &batch.targets[at..at + n]
    }

    #[test]
    fn batches_are_a_function_of_seed_and_index() {
        let src = InMemorySource::new(CH, noise_tracks(5, 4, 1000, 1)).unwrap();
        let s = sampler(src.clone(), options(4, 64), 42);
        let a = s.batch(7).unwrap();
        assert_eq!((a.batch, a.channels, a.len, a.stems), (3, CH, 64, 4));
        assert_eq!(a.mixture.len(), 3 * CH * 64);
        assert_eq!(a.targets.len(), 3 * 4 * CH * 64);
        // Same index: same batch, whatever was drawn in between; also from a second sampler.
        s.batch(3).unwrap();
        assert_eq!(s.batch(7).unwrap(), a);
        assert_eq!(
            sampler(src.clone(), options(4, 64), 42).batch(7).unwrap(),
            a
        );
        assert_ne!(s.batch(8).unwrap(), a);
        assert_ne!(sampler(src, options(4, 64), 43).batch(7).unwrap(), a);
        // The examples of a batch differ from each other.
        assert_ne!(target(&a, 0, 0), target(&a, 1, 0));
    }

    #[test]
    fn mixture_is_the_sum_of_the_stems_and_chunks_come_from_the_source() {
        let tracks = noise_tracks(4, 3, 500, 2);
        let src = InMemorySource::new(CH, tracks.clone()).unwrap();
        let s = sampler(src, options(3, 100), 5);
        for index in 0..10 {
            let batch = s.batch(index).unwrap();
            for b in 0..batch.batch {
                let n = CH * 100;
                let mix = &batch.mixture[b * n..(b + 1) * n];
                for (j, &m) in mix.iter().enumerate() {
                    let sum = (0..3).fold(0.0f32, |acc, k| acc + target(&batch, b, k)[j]);
                    assert_eq!(m, sum);
                }
                // Every target is a verbatim chunk of that stem of some track, same offset in
                // both channels.
                for k in 0..3 {
                    let t = target(&batch, b, k);
                    let found = tracks.iter().any(|track| {
                        let (l, r) = track[k].split_at(500);
                        (0..=400).any(|o| l[o..o + 100] == t[..100] && r[o..o + 100] == t[100..])
                    });
                    assert!(found, "batch {index} example {b} stem {k}");
                }
            }
        }
    }

    #[test]
    fn target_instrument_selects_the_model_stem_but_the_mix_has_all() {
        let tracks = noise_tracks(3, 4, 300, 3);
        let all = sampler(
            InMemorySource::new(CH, tracks.clone()).unwrap(),
            options(4, 50),
            9,
        );
        let mut opts = options(4, 50);
        opts.model_stems = vec![2];
        let one = sampler(InMemorySource::new(CH, tracks).unwrap(), opts, 9);
        let (a, b) = (all.batch(1).unwrap(), one.batch(1).unwrap());
        assert_eq!(b.stems, 1);
        assert_eq!(a.mixture, b.mixture);
        for e in 0..3 {
            assert_eq!(target(&a, e, 2), target(&b, e, 0));
        }
    }

    #[test]
    fn short_tracks_are_zero_padded() {
        // One track, 10 frames, chunk of 16.
        let planar: Vec<f32> = (1..=20).map(|x| x as f32).collect();
        let src = InMemorySource::new(CH, vec![vec![planar]]).unwrap();
        let batch = sampler(src, options(1, 16), 0).batch(0).unwrap();
        let mut want: Vec<f32> = (1..=10).map(|x| x as f32).collect();
        want.resize(16, 0.0);
        want.extend((11..=20).map(|x| x as f32));
        want.resize(32, 0.0);
        assert_eq!(target(&batch, 0, 0), &want[..]);
    }

    #[test]
    fn quiet_chunks_are_skipped() {
        // Tracks 0, 2, 4 silent in stem 0; every chunk of the others is loud.
        let mut tracks = noise_tracks(6, 2, 400, 4);
        for t in [0, 2, 4] {
            tracks[t][0].iter_mut().for_each(|x| *x = 0.0);
        }
        let mut opts = options(2, 100);
        opts.min_mean_abs = 0.1;
        let s = sampler(
            InMemorySource::new(CH, tracks.clone()).unwrap(),
            opts.clone(),
            6,
        );
        for index in 0..30 {
            let batch = s.batch(index).unwrap();
            for b in 0..batch.batch {
                assert!(mean_abs(target(&batch, b, 0)) >= 0.1, "batch {index}");
            }
        }
        // All silent: the last draw is taken after MAX_DRAWS, no hang.
        for track in &mut tracks {
            track[0].iter_mut().for_each(|x| *x = 0.0);
        }
        let s = sampler(InMemorySource::new(CH, tracks).unwrap(), opts, 6);
        let batch = s.batch(0).unwrap();
        assert!(target(&batch, 0, 0).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn loudness_gains_stay_in_range() {
        // Constant stems of 1.0: every target sample is its gain.
        let tracks = vec![vec![vec![1.0f32; CH * 64]; 2]; 2];
        let mut opts = options(2, 32);
        opts.augment =
            augmented("enable: true\nloudness: true\nloudness_min: 0.5\nloudness_max: 1.5\n");
        opts.batch_size = 8;
        let s = sampler(InMemorySource::new(CH, tracks).unwrap(), opts, 7);
        let mut gains = Vec::new();
        for index in 0..50 {
            let batch = s.batch(index).unwrap();
            for b in 0..batch.batch {
                for k in 0..2 {
                    let t = target(&batch, b, k);
                    assert!(t.iter().all(|&x| x == t[0]), "one gain per stem chunk");
                    gains.push(t[0]);
                }
                // Still mixture = sum of the (scaled) stems.
                let (x, y) = (target(&batch, b, 0)[0], target(&batch, b, 1)[0]);
                assert_eq!(batch.mixture[b * CH * 32], x + y);
            }
        }
        assert!(gains.iter().all(|g| (0.5..1.5).contains(g)));
        let (lo, hi) = gains
            .iter()
            .fold((2.0f32, 0.0f32), |(l, h), &g| (l.min(g), h.max(g)));
        assert!(lo < 0.6 && hi > 1.4, "gains span the range: {lo}..{hi}");
    }

    #[test]
    fn polarity_and_channel_shuffle_fire_with_their_probabilities() {
        // Left channel +1, right channel +2, so a target's first two samples show what happened.
        let mut planar = vec![1.0f32; 64];
        planar.extend(vec![2.0f32; 64]);
        let tracks = vec![vec![planar]];
        let mut opts = options(1, 16);
        opts.batch_size = 10;
        opts.augment = augmented(
            "enable: true\nall:\n  channel_shuffle: 0.5\n  random_polarity: 0.5\nvocals:\n  random_polarity: 0.2\n",
        );
        let s = sampler(InMemorySource::new(CH, tracks).unwrap(), opts, 11);
        let (mut swapped, mut negated, mut n) = (0, 0, 0);
        for index in 0..200 {
            let batch = s.batch(index).unwrap();
            for b in 0..batch.batch {
                let t = target(&batch, b, 0);
                swapped += usize::from(t[0].abs() == 2.0);
                negated += usize::from(t[0] < 0.0);
                n += 1;
            }
        }
        let (swapped, negated) = (swapped as f64 / n as f64, negated as f64 / n as f64);
        assert!(
            (swapped - 0.5).abs() < 0.05,
            "channel shuffle rate {swapped}"
        );
        // The vocals section overrides `all`.
        assert!((negated - 0.2).abs() < 0.04, "polarity rate {negated}");
    }

    #[test]
    fn mixup_averages_gained_chunks() {
        // Constant stems: every chunk of track t is t + 1, so a mixup of k chunks is a mean of
        // gains times values; with loudness range [1, 1] it is the mean of the track values.
        let tracks: Vec<Vec<Vec<f32>>> = (0..4)
            .map(|t| vec![vec![t as f32 + 1.0; CH * 32]])
            .collect();
        let mut opts = options(1, 8);
        opts.batch_size = 16;
        opts.augment = augmented(
            "enable: true\nmixup: true\nmixup_probs: [1.0, 0.5]\nloudness_min: 1.0\nloudness_max: 1.0\n",
        );
        let s = sampler(InMemorySource::new(CH, tracks).unwrap(), opts, 12);
        let mut non_integer = 0;
        for index in 0..20 {
            let batch = s.batch(index).unwrap();
            for b in 0..batch.batch {
                let v = target(&batch, b, 0)[0];
                // A mean of 2 or 3 values in 1..=4.
                assert!((1.0..=4.0).contains(&v));
                let twice = v * 2.0;
                let thrice = v * 3.0;
                assert!(
                    (twice - twice.round()).abs() < 1e-5 || (thrice - thrice.round()).abs() < 1e-5,
                    "{v}"
                );
                non_integer += usize::from(v.fract() != 0.0);
            }
        }
        assert!(non_integer > 0, "some mixups average different tracks");
    }

    #[test]
    fn prefetcher_yields_the_same_batches_in_order_with_any_thread_count() {
        let src = Arc::new(InMemorySource::new(CH, noise_tracks(4, 2, 800, 13)).unwrap());
        let s = Arc::new(ChunkSampler::new(src, options(2, 128), 99).unwrap());
        let direct: Vec<Batch> = (5..17).map(|i| s.batch(i).unwrap()).collect();
        for (threads, depth) in [(1, 1), (3, 4), (3, 1)] {
            let mut p = Prefetcher::new(Arc::clone(&s), 5, threads, depth);
            for (i, want) in direct.iter().enumerate() {
                assert_eq!(
                    &p.next().unwrap(),
                    want,
                    "{threads} threads, batch {}",
                    i + 5
                );
            }
        }
        // Resuming at 11 gives what batch 11 was.
        let mut p = Prefetcher::new(Arc::clone(&s), 11, 2, 2);
        assert_eq!(p.next().unwrap(), direct[6]);
        drop(p); // stops its threads
    }

    struct Failing;
    impl StemSource for Failing {
        fn num_tracks(&self) -> usize {
            1
        }
        fn track_name(&self, _: usize) -> &str {
            "broken"
        }
        fn channels(&self) -> usize {
            CH
        }
        fn num_frames(&self, _: usize) -> usize {
            100
        }
        fn read(&self, _: usize, _: usize, _: usize, _: usize) -> Result<Vec<f32>> {
            Err(Error::Data("broken.wav: unreadable".into()))
        }
    }

    #[test]
    fn errors_pass_through_the_prefetcher() {
        let s = Arc::new(ChunkSampler::new(Arc::new(Failing), options(1, 10), 0).unwrap());
        let mut p = Prefetcher::new(s, 0, 2, 2);
        for _ in 0..3 {
            let err = p.next().unwrap_err().to_string();
            assert!(err.contains("broken.wav"), "{err}");
        }
    }

    #[test]
    fn invalid_options_are_refused() {
        let src = || -> Arc<dyn StemSource> {
            Arc::new(InMemorySource::new(CH, noise_tracks(1, 2, 10, 0)).unwrap())
        };
        let mut o = options(2, 8);
        o.channels = 1;
        assert!(ChunkSampler::new(src(), o, 0).is_err());
        let mut o = options(2, 8);
        o.model_stems = vec![2];
        assert!(ChunkSampler::new(src(), o, 0).is_err());
        let mut o = options(2, 8);
        o.batch_size = 0;
        assert!(ChunkSampler::new(src(), o, 0).is_err());
        let empty: Arc<dyn StemSource> = Arc::new(InMemorySource::new(CH, vec![]).unwrap());
        assert!(ChunkSampler::new(empty, options(2, 8), 0).is_err());
        assert!(InMemorySource::new(CH, vec![vec![vec![0.0; 3]]]).is_err());
    }

    #[test]
    fn options_follow_an_msst_config() {
        let yaml = r#"
audio:
  chunk_size: 4096
  min_mean_abs: 0.001
model:
  dim: 8
  depth: 1
  stereo: true
  num_stems: 1
training:
  instruments: [vocals, other]
  target_instrument: other
augmentations:
  enable: true
  all:
    random_polarity: 0.5
"#;
        let config = MsstConfig::from_yaml(yaml, std::path::Path::new("t.yaml")).unwrap();
        let o = SamplerOptions::from_config(&config, 4).unwrap();
        assert_eq!(o.model_stems, vec![1]);
        assert_eq!((o.batch_size, o.chunk_len, o.channels), (4, 4096, 2));
        assert_eq!(o.min_mean_abs, 0.001);
        assert_eq!(o.augment.all.random_polarity, Some(0.5));
    }
}
