//! Training data on disk: a MUSDB18-style folder, `DIR/<track>/<instrument>.wav`, as random access
//! to its stems for the library's [`ChunkSampler`](roformer::train::data::ChunkSampler).
//!
//! This is the layout of MUSDB18-HQ and of `tools/render-dataset`
//! (`DIR/{train,valid,test}/<track>/{mixture,vocals,drums,bass,other}.wav`; point it at one
//! split). A `mixture.wav` is ignored unless listed as an instrument: as in MSST's dataset type 1,
//! the mixture is the sum of the stems.
//!
//! Like MSST (`get_metadata`), track folders are the sub-folders of `DIR` not starting with `.`,
//! sorted by name, and a track's usable length is its shortest stem (a warning says when stems
//! differ). Unlike MSST:
//! * a missing stem is an error naming the file. MSST only prints "Cant find file" while
//!   scanning and then, for dataset type 1, fails (or reuses a stale chunk) when it draws that
//!   stem; it has no consistent "silent stem" behaviour to copy.
//! * only WAV (8/16/24/32-bit integer, 32-bit float) is read, for cheap random access; MSST also
//!   takes FLAC. A FLAC stem gets an error asking for WAV.
//! * the sample rate must be the model's (MSST does not check and silently trains on whatever
//!   rate the files have); resample the dataset beforehand.
//!
//! Channels as MSST's `load_chunk` for a stereo model: a mono file is duplicated, a file with
//! more than two channels gives its first two. MSST always loads two channels and so cannot feed
//! a mono (`stereo: false`) RoFormer; for one, this source averages the file's channels.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use roformer::train::data::StemSource;

/// One stem file of a track, as its header describes it.
#[derive(Debug, Clone)]
struct StemFile {
    path: PathBuf,
    channels: usize,
    format: hound::SampleFormat,
    bits: u16,
}

#[derive(Debug, Clone)]
struct Track {
    name: String,
    /// The shortest stem's length in frames.
    frames: usize,
    stems: Vec<StemFile>,
}

/// A MUSDB18-style dataset folder; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct FolderSource {
    dir: PathBuf,
    channels: usize,
    tracks: Vec<Track>,
}

impl FolderSource {
    /// Scans `dir`: every track folder must hold `<instrument>.wav` for each of `instruments`, at
    /// `sample_rate`. Chunks are delivered with `channels` channels (1 or 2, or any count the
    /// files have exactly). Only headers are read here.
    pub(crate) fn open(
        dir: &Path,
        instruments: &[String],
        sample_rate: u32,
        channels: usize,
    ) -> Result<Self> {
        if instruments.is_empty() {
            bail!("no instruments to read from {}", dir.display());
        }
        if channels == 0 {
            bail!("a model needs at least one channel");
        }
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list the dataset folder {}", dir.display()))?;
        let mut folders = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().is_dir() {
                folders.push((name, entry.path()));
            }
        }
        folders.sort();
        if folders.is_empty() {
            bail!(
                "no track folders in {} (expected {}/<track>/<instrument>.wav)",
                dir.display(),
                dir.display()
            );
        }
        let mut tracks = Vec::with_capacity(folders.len());
        for (name, folder) in folders {
            let mut stems = Vec::with_capacity(instruments.len());
            let mut lengths = Vec::with_capacity(instruments.len());
            for instrument in instruments {
                let (stem, frames) = open_stem(&folder, instrument, sample_rate, channels)?;
                stems.push(stem);
                lengths.push(frames);
            }
            let frames = lengths.iter().copied().min().unwrap_or(0);
            if lengths.iter().any(|&l| l != frames) {
                tracing::warn!(
                    "{}: stems differ in length ({frames} to {} frames); using the first {frames}",
                    folder.display(),
                    lengths.iter().max().unwrap_or(&0)
                );
            }
            tracks.push(Track {
                name,
                frames,
                stems,
            });
        }
        tracing::info!(
            "{}: {} tracks, {} of audio",
            dir.display(),
            tracks.len(),
            format_duration(
                tracks.iter().map(|t| t.frames as f64).sum::<f64>() / f64::from(sample_rate)
            )
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            channels,
            tracks,
        })
    }

    fn read_chunk(&self, track: usize, stem: usize, offset: usize, len: usize) -> Result<Vec<f32>> {
        let t = self
            .tracks
            .get(track)
            .with_context(|| format!("no track {track} in {}", self.dir.display()))?;
        let file = t
            .stems
            .get(stem)
            .with_context(|| format!("no stem {stem} in track {}", t.name))?;
        let path = &file.path;
        if offset + len > t.frames {
            bail!(
                "{}: frames {offset}..{} are past the track's end ({})",
                path.display(),
                offset + len,
                t.frames
            );
        }
        let mut reader = hound::WavReader::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let start = u32::try_from(offset).context("offset beyond a WAV file's range")?;
        reader
            .seek(start)
            .with_context(|| format!("{}: cannot seek to frame {offset}", path.display()))?;
        let count = len * file.channels;
        let interleaved: Vec<f32> = match (file.format, file.bits) {
            (hound::SampleFormat::Float, _) => reader
                .samples::<f32>()
                .take(count)
                .collect::<Result<_, _>>(),
            (hound::SampleFormat::Int, bits) => {
                let scale = 1.0 / f64::from(1u32 << (bits - 1));
                reader
                    .samples::<i32>()
                    .take(count)
                    .map(|s| s.map(|s| (f64::from(s) * scale) as f32))
                    .collect::<Result<_, _>>()
            }
        }
        .with_context(|| format!("cannot read {}", path.display()))?;
        if interleaved.len() != count {
            bail!(
                "{}: ends after {} of the frames {offset}..{} its header promises",
                path.display(),
                interleaved.len() / file.channels,
                offset + len
            );
        }
        Ok(to_planar(&interleaved, file.channels, self.channels, len))
    }
}

/// Opens `<folder>/<instrument>.wav`'s header: the stem and its length in frames.
fn open_stem(
    folder: &Path,
    instrument: &str,
    sample_rate: u32,
    channels: usize,
) -> Result<(StemFile, usize)> {
    let path = folder.join(format!("{instrument}.wav"));
    if !path.is_file() {
        let flac = folder.join(format!("{instrument}.flac"));
        if flac.is_file() {
            bail!(
                "{}: FLAC stems are not supported for training (random access needs WAV); convert it to {}",
                flac.display(),
                path.display()
            );
        }
        bail!("missing stem {}", path.display());
    }
    let reader =
        hound::WavReader::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let spec = reader.spec();
    if spec.sample_rate != sample_rate {
        bail!(
            "{} is at {} Hz but the model expects {sample_rate} Hz; resample the dataset",
            path.display(),
            spec.sample_rate
        );
    }
    let file_channels = usize::from(spec.channels);
    // Equal counts, or any file for a mono or stereo model (see `to_planar`).
    let adaptable = file_channels == channels || channels <= 2;
    if !adaptable || file_channels == 0 {
        bail!(
            "{} has {file_channels} channel(s); the model needs {channels}",
            path.display()
        );
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {}
        (format, bits) => bail!(
            "{}: {bits}-bit {format:?} samples are not supported (use 8/16/24/32-bit integer or 32-bit float)",
            path.display()
        ),
    }
    let stem = StemFile {
        path,
        channels: file_channels,
        format: spec.sample_format,
        bits: spec.bits_per_sample,
    };
    Ok((stem, reader.duration() as usize))
}

/// Interleaved `file` channels to planar `want` channels: as is, mono duplicated, the first two
/// of many for stereo, or the average of all for mono.
fn to_planar(interleaved: &[f32], file: usize, want: usize, len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; want * len];
    if want == 1 && file > 1 {
        for (dst, frame) in out.iter_mut().zip(interleaved.chunks_exact(file)) {
            *dst = frame.iter().sum::<f32>() / file as f32;
        }
        return out;
    }
    for (c, plane) in out.chunks_exact_mut(len.max(1)).enumerate() {
        let src = if file == 1 { 0 } else { c };
        for (dst, frame) in plane.iter_mut().zip(interleaved.chunks_exact(file)) {
            *dst = frame[src];
        }
    }
    out
}

fn format_duration(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    format!("{}h{:02}m", minutes / 60, minutes % 60)
}

impl StemSource for FolderSource {
    fn num_tracks(&self) -> usize {
        self.tracks.len()
    }

    fn track_name(&self, track: usize) -> &str {
        &self.tracks[track].name
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn num_frames(&self, track: usize) -> usize {
        self.tracks[track].frames
    }

    fn read(
        &self,
        track: usize,
        stem: usize,
        offset: usize,
        len: usize,
    ) -> roformer::Result<Vec<f32>> {
        self.read_chunk(track, stem, offset, len)
            .map_err(|e| roformer::Error::Data(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use roformer::train::augment::AugmentationConfig;
    use roformer::train::data::{ChunkSampler, SamplerOptions};

    use super::*;

    const RATE: u32 = 44_100;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn write_int(path: &Path, rate: u32, channels: u16, bits: u16, interleaved: &[i32]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in interleaved {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    fn write_float(path: &Path, channels: u16, interleaved: &[f32]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels,
            sample_rate: RATE,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in interleaved {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    /// Stereo 16-bit frames: left `i + base`, right `-(i + base)`.
    fn ramp(frames: usize, base: i32) -> Vec<i32> {
        (0..frames as i32)
            .flat_map(|i| [i + base, -(i + base)])
            .collect()
    }

    #[test]
    fn reads_exactly_the_chunk_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        // Tracks listed sorted; hidden folders and loose files skipped.
        for (track, base) in [("b_song", 1000), ("a_song", 0)] {
            write_int(
                &dir.path().join(track).join("vocals.wav"),
                RATE,
                2,
                16,
                &ramp(900, base),
            );
            write_int(
                &dir.path().join(track).join("other.wav"),
                RATE,
                2,
                16,
                &ramp(800, -base),
            );
        }
        write_int(
            &dir.path().join(".cache/vocals.wav"),
            RATE,
            2,
            16,
            &ramp(10, 0),
        );
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let src = FolderSource::open(dir.path(), &names(&["vocals", "other"]), RATE, 2).unwrap();
        assert_eq!(src.num_tracks(), 2);
        assert_eq!((src.track_name(0), src.track_name(1)), ("a_song", "b_song"));
        // The shortest stem sets the usable length.
        assert_eq!(src.num_frames(1), 800);
        let chunk = src.read(1, 0, 123, 50).unwrap();
        let want: Vec<f32> = (123..173)
            .map(|i| (i + 1000) as f32 / 32768.0)
            .chain((123..173).map(|i| -(i + 1000) as f32 / 32768.0))
            .collect();
        assert_eq!(chunk, want);
        let err = src.read(1, 0, 790, 50).unwrap_err().to_string();
        assert!(err.contains("vocals.wav") && err.contains("past"), "{err}");
    }

    #[test]
    fn other_sample_formats_and_channel_counts() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        // 24-bit mono, and 32-bit float stereo.
        let mono: Vec<i32> = (0..100).map(|i| (i - 50) * 100_000).collect();
        write_int(&t.join("bass.wav"), RATE, 1, 24, &mono);
        let stereo: Vec<f32> = (0..200).map(|i| i as f32 / 256.0 - 0.25).collect();
        write_float(&t.join("drums.wav"), 2, &stereo);
        let instruments = names(&["bass", "drums"]);

        let src = FolderSource::open(dir.path(), &instruments, RATE, 2).unwrap();
        let bass = src.read(0, 0, 10, 5).unwrap();
        let left: Vec<f32> = (10..15)
            .map(|i| ((i - 50) * 100_000) as f32 / 8_388_608.0)
            .collect();
        assert_eq!(&bass[..5], &left[..]);
        assert_eq!(
            &bass[5..],
            &left[..],
            "mono is duplicated for a stereo model"
        );
        let drums = src.read(0, 1, 3, 2).unwrap();
        assert_eq!(drums, vec![stereo[6], stereo[8], stereo[7], stereo[9]]);

        let mono_model = FolderSource::open(dir.path(), &instruments, RATE, 1).unwrap();
        let drums = mono_model.read(0, 1, 3, 2).unwrap();
        assert_eq!(
            drums,
            vec![(stereo[6] + stereo[7]) / 2.0, (stereo[8] + stereo[9]) / 2.0]
        );
        assert_eq!(mono_model.read(0, 0, 10, 5).unwrap(), left);
    }

    #[test]
    fn missing_stem_wrong_rate_and_flac_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("song");
        write_int(&t.join("vocals.wav"), RATE, 2, 16, &ramp(10, 0));
        let err = FolderSource::open(dir.path(), &names(&["vocals", "bass"]), RATE, 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&t.join("bass.wav").display().to_string()),
            "{err}"
        );

        write_int(&t.join("bass.wav"), 48_000, 2, 16, &ramp(10, 0));
        let err = format!(
            "{:#}",
            FolderSource::open(dir.path(), &names(&["vocals", "bass"]), RATE, 2).unwrap_err()
        );
        assert!(
            err.contains(&t.join("bass.wav").display().to_string()) && err.contains("48000 Hz"),
            "{err}"
        );

        std::fs::write(t.join("drums.flac"), b"fLaC").unwrap();
        let err = FolderSource::open(dir.path(), &names(&["drums"]), RATE, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("drums.flac") && err.contains("WAV"), "{err}");

        let err = FolderSource::open(&dir.path().join("nope"), &names(&["vocals"]), RATE, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn sampler_draws_from_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let instruments = names(&["vocals", "drums", "bass", "other"]);
        for (t, track) in ["one", "two", "three"].iter().enumerate() {
            for (k, instrument) in instruments.iter().enumerate() {
                let base = (t * 4 + k) as i32 * 1000;
                let p = dir.path().join(track).join(format!("{instrument}.wav"));
                write_int(&p, RATE, 2, 16, &ramp(600 + 50 * t, base));
            }
        }
        let src = FolderSource::open(dir.path(), &instruments, RATE, 2).unwrap();
        let options = SamplerOptions {
            batch_size: 2,
            chunk_len: 256,
            channels: 2,
            instruments: instruments.clone(),
            model_stems: vec![0],
            min_mean_abs: 0.0,
            augment: AugmentationConfig::default(),
        };
        let sampler = ChunkSampler::new(Arc::new(src), options, 1).unwrap();
        let batch = sampler.batch(0).unwrap();
        assert_eq!((batch.batch, batch.stems, batch.len), (2, 1, 256));
        // Vocals of a track have base 0, 4000 or 8000: left samples are (base + i) / 32768
        // for consecutive i, right the negation.
        let vocals = &batch.targets[..512];
        let first = (vocals[0] * 32768.0).round() as i32;
        assert!([0, 4000, 8000]
            .into_iter()
            .any(|b| (b..b + 700).contains(&first)));
        for i in 0..256 {
            assert_eq!(vocals[i], (first + i as i32) as f32 / 32768.0);
            assert_eq!(vocals[256 + i], -vocals[i]);
        }
        // The stereo channels of every stem cancel, so the mixture does too.
        assert!(batch.mixture[..256]
            .iter()
            .zip(&batch.mixture[256..512])
            .all(|(l, r)| (l + r).abs() < 1e-6));
    }
}
