//! [`Separator::separate_file`]: an audio file in, one file per stem out, written atomically.
//!
//! With one model the track streams: a first pass over the file learns its length (and, with
//! `inference.normalize`, a second one the statistics of the whole track), then the file is read
//! again block by block, through the model, into the output files, so memory does not grow with
//! the track's length. An ensemble holds the whole track and every model's stems in memory (its
//! algorithms combine whole stems; `avg_fft` and friends need the whole spectrogram); a bag of
//! models holds the track, one model's stems and their running weighted sum. Both give the same
//! bytes.

use std::path::{Path, PathBuf};

use super::hooks::count_non_finite;
use super::{Hooks, Notice, Progress, Separator, Watched};
use crate::atomic_file::AtomicFile;
use crate::audio::{
    decode_file, resampled_len, to_channels, write_audio_atomic, Audio, AudioError, Decoder,
    OutputFormat, PcmFormat, StreamWriter, TrackReader,
};
use crate::bag::BagModel;
use crate::error::{Error, Result};
use crate::separate::{self, separate_stream, MeanMeter, Normalization, StemSink, StreamOptions};

/// How [`Separator::separate_file`] writes its outputs (build it with `..FileOptions::default()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Container and sample format (default 24-bit WAV).
    pub format: OutputFormat,
    /// Replace existing outputs; otherwise only missing ones are written, and a file whose
    /// outputs all exist is skipped (so an interrupted batch can simply be run again).
    pub overwrite: bool,
    /// Hold the whole track and its stems in memory instead of streaming (same bytes; the
    /// reference the streamed path is tested against).
    pub whole_track: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Wav(PcmFormat::Int24),
            overwrite: false,
            whole_track: false,
        }
    }
}

impl FileOptions {
    /// The default options with another output format.
    pub fn with_format(format: OutputFormat) -> Self {
        Self {
            format,
            ..Self::default()
        }
    }
}

/// What [`Separator::separate_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOutcome {
    /// These files were written (complete, renamed into place).
    Written(Vec<PathBuf>),
    /// Every output already existed and `overwrite` was off: nothing was done.
    Skipped,
}

/// What the passes before the streamed one learn about a file.
struct Scan {
    /// Frames at the model's sample rate.
    len: usize,
    file_rate: u32,
    file_channels: usize,
    normalization: Option<Normalization>,
    /// NaN or infinite samples met on the first pass.
    non_finite: usize,
}

/// What an output file of a streamed separation holds.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The stem with this index.
    Stem(usize),
    /// The mixture minus the stem with this index.
    Instrumental(usize),
}

impl Separator {
    /// Separates the audio file `input` (wav, flac, mp3, ogg/vorbis, m4a/aac, aiff) into
    /// `out_dir/<stem>.<ext>`, one file per [`stem`](Self::stems), each written under a
    /// temporary name and renamed when complete; on an error, nothing partial is left. The
    /// folder is created if needed.
    ///
    /// ```no_run
    /// # fn main() -> roformer::Result<()> {
    /// use roformer::{FileOptions, Hooks, Separator};
    /// let separator = Separator::builtin().open()?;
    /// let mut hooks = Hooks::new().progress(|p| eprintln!("{}/{}", p.chunks_done, p.chunks_total));
    /// separator.separate_file("song.flac".as_ref(), "out/song".as_ref(), &FileOptions::default(), &mut hooks)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn separate_file(
        &self,
        input: &Path,
        out_dir: &Path,
        options: &FileOptions,
        hooks: &mut Hooks<'_>,
    ) -> Result<FileOutcome> {
        let ext = options.format.extension();
        let pending: Vec<(usize, PathBuf)> = self
            .outputs
            .iter()
            .enumerate()
            .map(|(i, name)| (i, out_dir.join(format!("{name}.{ext}"))))
            .filter(|(_, file)| options.overwrite || !file.exists())
            .collect();
        if pending.is_empty() {
            return Ok(FileOutcome::Skipped);
        }
        let created = !out_dir.exists();
        let single = match self.members.as_slice() {
            [member] => member.single(),
            _ => None,
        };
        let result = if let Some(model) = single.filter(|_| !options.whole_track) {
            self.stream(model, input, out_dir, &pending, options.format, hooks)
        } else {
            self.whole_track(input, out_dir, &pending, options.format, hooks)
        };
        if result.is_err() && created {
            // Only removes the folder if nothing else is in it.
            let _ = std::fs::remove_dir(out_dir);
        }
        result?;
        Ok(FileOutcome::Written(
            pending.into_iter().map(|(_, f)| f).collect(),
        ))
    }

    fn create_dir(dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })
    }

    /// Decodes the whole file, separates it in memory, writes the outputs.
    fn whole_track(
        &self,
        input: &Path,
        out_dir: &Path,
        pending: &[(usize, PathBuf)],
        format: OutputFormat,
        hooks: &mut Hooks<'_>,
    ) -> Result<()> {
        let audio = decode_file(input)?;
        let mut stems: Vec<Option<Audio>> = self
            .separate_with(&audio, hooks)?
            .into_iter()
            .map(|(_, stem)| Some(stem))
            .collect();
        Self::create_dir(out_dir)?;
        for (index, file) in pending {
            // One entry per output, so every pending index is there once.
            if let Some(stem) = stems.get_mut(*index).and_then(Option::take) {
                write_audio_atomic(file, &stem, format)?;
            }
        }
        Ok(())
    }

    /// Notices about the resampling and channel adaptation of a file with `rate` Hz and
    /// `channels` channels.
    fn adaptation_notices(&self, rate: u32, channels: usize, hooks: &mut Hooks<'_>) {
        if rate != self.sample_rate {
            hooks.tell(Notice::Resampling {
                from: rate,
                to: self.sample_rate,
            });
        }
        if let Ok(empty) = Audio::new(rate, vec![Vec::new(); channels]) {
            if let Some(note) = to_channels(empty, self.channels).1 {
                hooks.tell(Notice::Channels(note));
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
            let mut non_finite = 0;
            while decoder.next_block(&mut block)? {
                non_finite += count_non_finite(&block);
            }
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
                non_finite,
            });
        }
        let mut reader = TrackReader::open(path, rate, self.channels)?;
        let mut block = Vec::new();
        let mut mean = MeanMeter::new(self.channels);
        let mut non_finite = 0;
        while reader.next_block(&mut block)? {
            non_finite += count_non_finite(&block);
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
            return Err(AudioError::Changed {
                path: path.to_path_buf(),
            }
            .into());
        }
        Ok(Scan {
            len,
            file_rate: reader.file_rate(),
            file_channels: reader.file_channels(),
            normalization: Some(spread.finish()),
            non_finite,
        })
    }

    /// One model: streams the file through it into the pending outputs.
    fn stream(
        &self,
        member: &BagModel,
        input: &Path,
        out_dir: &Path,
        pending: &[(usize, PathBuf)],
        format: OutputFormat,
        hooks: &mut Hooks<'_>,
    ) -> Result<()> {
        let scan = self.scan(input, member.model.normalize())?;
        if scan.len == 0 {
            return Err(AudioError::NoSamples {
                path: input.to_path_buf(),
            }
            .into());
        }
        self.adaptation_notices(scan.file_rate, scan.file_channels, hooks);
        if scan.non_finite > 0 {
            hooks.tell(Notice::NonFinite {
                samples: scan.non_finite,
            });
        }
        Self::create_dir(out_dir)?;

        let targets: Vec<(Target, &Path)> = pending
            .iter()
            .map(|(index, file)| {
                let target = match self.instrumental_of {
                    Some(of) if *index == self.model_stems.len() => Target::Instrumental(of),
                    _ => Target::Stem(*index),
                };
                (target, file.as_path())
            })
            .collect();
        let io_error = |file: &Path| {
            let path = file.to_path_buf();
            move |source| Error::from(AudioError::Io(source).writing(&path))
        };
        // Temporary files, renamed over the outputs once all are complete (dropped, they go).
        let mut files = targets
            .iter()
            .map(|(_, file)| AtomicFile::create(file).map_err(io_error(file)))
            .collect::<Result<Vec<_>>>()?;
        // The writers borrow the files until they are finished.
        {
            let writers = files
                .iter_mut()
                .zip(&targets)
                .map(|(f, (target, file))| {
                    let writer =
                        StreamWriter::new(f.writer(), format, self.sample_rate, self.channels)
                            .map_err(|e| e.writing(file))?;
                    Ok((*target, *file, writer))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut sink = Writers {
                writers,
                scratch: Vec::new(),
            };
            let mut source =
                TrackReader::open(input, self.sample_rate, self.channels)?.without_warnings();
            let model = Watched {
                model: member.model.network(),
                cancel: hooks.token().cloned(),
            };
            let mut progress = |p: separate::Progress| {
                hooks.report(Progress {
                    model: 0,
                    models: 1,
                    chunks_done: p.chunks_done,
                    chunks_total: p.chunks_total,
                })
            };
            let options = StreamOptions {
                demix: member.demix,
                normalization: scan.normalization,
                tta: self.tta,
            };
            separate_stream(
                &model,
                &mut source,
                scan.len,
                &options,
                &mut sink,
                &mut progress,
            )?;
            let mut rest = vec![Vec::new(); self.channels];
            if source.read(&mut rest, 1)? > 0 {
                return Err(AudioError::Changed {
                    path: input.to_path_buf(),
                }
                .into());
            }
            for (_, file, writer) in sink.writers {
                writer.finish().map_err(|e| e.writing(file))?;
            }
        }
        for (f, (_, file)) in files.into_iter().zip(&targets) {
            f.commit().map_err(io_error(file))?;
        }
        Ok(())
    }
}

impl separate::FrameSource for TrackReader {
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize> {
        Ok(TrackReader::read(self, out, max)?)
    }
}

/// The output files of a streamed separation.
struct Writers<'w> {
    writers: Vec<(Target, &'w Path, StreamWriter<'w>)>,
    /// The instrumental of one block.
    scratch: Vec<Vec<f32>>,
}

impl StemSink for Writers<'_> {
    fn write(&mut self, mix: &[&[f32]], stems: &[Vec<&[f32]>]) -> Result<()> {
        for (target, file, writer) in &mut self.writers {
            match *target {
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
            }
            .map_err(|e| e.writing(file))?;
        }
        Ok(())
    }
}
