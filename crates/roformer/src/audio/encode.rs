//! Writing audio as WAV (hound) or FLAC (flacenc), atomically.
//!
//! Float to integer conversion follows libsndfile's default (non-clipping)
//! path, which is what soundfile uses: `lrint(x * (2^(bits-1) - 1))`, i.e.
//! `round_half_even(x * 32767)` for 16 bit and `x * 8388607` for 24 bit
//! (computed in `f64`), after clipping `x` to `[-1, 1]` (libsndfile would wrap
//! around instead; NaN becomes 0). Decoding divides by `2^(bits-1)`, so a
//! round trip through an integer format is not the identity, exactly as with
//! libsndfile.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use crate::atomic_file::write_atomically;

use super::{Audio, AudioError};

/// Sample format of a WAV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PcmFormat {
    /// 16-bit signed integer PCM.
    Int16,
    /// 24-bit signed integer PCM.
    Int24,
    /// 32-bit IEEE float, lossless for our `f32`. hound writes it as
    /// `WAVE_FORMAT_EXTENSIBLE` with the IEEE-float sub-format
    /// (`KSDATAFORMAT_SUBTYPE_IEEE_FLOAT`), which libsndfile, soundfile,
    /// scipy, ffmpeg and symphonia all read.
    Float32,
}

/// Bit depth of a FLAC file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlacDepth {
    /// 16 bits per sample.
    Int16,
    /// 24 bits per sample.
    Int24,
}

/// Container and sample format of an output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// RIFF WAVE.
    Wav(PcmFormat),
    /// FLAC.
    Flac(FlacDepth),
}

impl OutputFormat {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Wav(_) => "wav",
            OutputFormat::Flac(_) => "flac",
        }
    }
}

/// Largest channel count a FLAC stream can hold.
const FLAC_MAX_CHANNELS: usize = 8;

/// Converts a float sample to a `bits`-bit integer like libsndfile (see the
/// module documentation).
fn quantize(x: f32, bits: u32) -> i32 {
    let scale = f64::from((1u32 << (bits - 1)) - 1);
    let x = if x.is_nan() {
        0.0
    } else {
        f64::from(x.clamp(-1.0, 1.0))
    };
    (x * scale).round_ties_even() as i32
}

/// Writes `audio` to `path` in `format` without ever leaving a partial file at
/// `path`: the data goes to a temporary sibling
/// (`.<name>.partial-<pid>-<n>` in the same directory), is flushed and fsynced,
/// then renamed over `path` (replacing an existing file). On any error the
/// temporary file is removed and the error, an [`AudioError::Write`], names
/// `path`.
pub fn write_audio_atomic(
    path: &Path,
    audio: &Audio,
    format: OutputFormat,
) -> Result<(), AudioError> {
    write_atomic_inner(path, audio, format).map_err(|e| AudioError::Write {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

fn write_atomic_inner(path: &Path, audio: &Audio, format: OutputFormat) -> Result<(), AudioError> {
    audio.validate()?;
    check_channels(format, audio.num_channels())?;
    write_atomically(path, |w| -> Result<(), AudioError> {
        let mut writer = StreamWriter::new(w, format, audio.sample_rate, audio.num_channels())?;
        let block: Vec<&[f32]> = audio.channels.iter().map(Vec::as_slice).collect();
        writer.write(&block)?;
        writer.finish()
    })
}

/// Refuses channel counts the format cannot hold.
fn check_channels(format: OutputFormat, channels: usize) -> Result<(), AudioError> {
    match format {
        OutputFormat::Wav(_) if channels > usize::from(u16::MAX) => Err(AudioError::Encode(
            format!("WAV cannot hold {channels} channels"),
        )),
        OutputFormat::Flac(_) if channels > FLAC_MAX_CHANNELS => Err(AudioError::Encode(format!(
            "FLAC cannot hold {channels} channels (at most {FLAC_MAX_CHANNELS})"
        ))),
        _ if channels == 0 => Err(AudioError::Encode(
            "cannot write audio without channels".into(),
        )),
        _ => Ok(()),
    }
}

/// hound's error: its I/O errors as [`AudioError::Io`], the others as
/// [`AudioError::Encode`].
fn wav_error(e: hound::Error) -> AudioError {
    match e {
        hound::Error::IoError(e) => AudioError::Io(e),
        e => AudioError::Encode(e.to_string()),
    }
}

/// An audio file written block by block (into a temporary sibling file,
/// renamed into place by [`finish`](Self::finish)): the bytes are those of
/// [`write_audio_atomic`] on the whole signal, which is built on it.
pub struct StreamWriter<'w>(Inner<'w>);

/// The writer of each format.
enum Inner<'w> {
    Wav {
        writer: hound::WavWriter<&'w mut BufWriter<File>>,
        pcm: PcmFormat,
    },
    Flac(Box<FlacWriter<'w>>),
}

impl<'w> StreamWriter<'w> {
    /// Starts a file of `channels` channels at `sample_rate` Hz in `out`
    /// (positioned at its start).
    pub fn new(
        out: &'w mut BufWriter<File>,
        format: OutputFormat,
        sample_rate: u32,
        channels: usize,
    ) -> Result<Self, AudioError> {
        check_channels(format, channels)?;
        Ok(StreamWriter(match format {
            OutputFormat::Wav(pcm) => {
                let (bits, sample_format) = match pcm {
                    PcmFormat::Int16 => (16, hound::SampleFormat::Int),
                    PcmFormat::Int24 => (24, hound::SampleFormat::Int),
                    PcmFormat::Float32 => (32, hound::SampleFormat::Float),
                };
                let spec = hound::WavSpec {
                    channels: channels as u16,
                    sample_rate,
                    bits_per_sample: bits,
                    sample_format,
                };
                Inner::Wav {
                    writer: hound::WavWriter::new(out, spec).map_err(wav_error)?,
                    pcm,
                }
            }
            OutputFormat::Flac(depth) => Inner::Flac(Box::new(FlacWriter::new(
                out,
                depth,
                sample_rate,
                channels,
            )?)),
        }))
    }

    /// Appends frames: one slice per channel, all of one length.
    pub fn write(&mut self, block: &[&[f32]]) -> Result<(), AudioError> {
        let n = block.first().map_or(0, |c| c.len());
        if block.iter().any(|c| c.len() != n) {
            return Err(AudioError::Invalid(
                "the channels of a block differ in length".into(),
            ));
        }
        match &mut self.0 {
            Inner::Wav { writer, pcm } => match pcm {
                PcmFormat::Int16 => {
                    for i in 0..n {
                        for c in block {
                            writer
                                .write_sample(quantize(c[i], 16) as i16)
                                .map_err(wav_error)?;
                        }
                    }
                }
                PcmFormat::Int24 => {
                    for i in 0..n {
                        for c in block {
                            writer.write_sample(quantize(c[i], 24)).map_err(wav_error)?;
                        }
                    }
                }
                PcmFormat::Float32 => {
                    for i in 0..n {
                        for c in block {
                            writer.write_sample(c[i]).map_err(wav_error)?;
                        }
                    }
                }
            },
            Inner::Flac(flac) => flac.write(block)?,
        }
        Ok(())
    }

    /// Completes the file (its header's lengths and checksums).
    pub fn finish(self) -> Result<(), AudioError> {
        match self.0 {
            Inner::Wav { writer, .. } => writer.finalize().map_err(wav_error)?,
            Inner::Flac(flac) => flac.finish()?,
        }
        Ok(())
    }
}

fn flac_error(e: impl std::fmt::Display) -> AudioError {
    AudioError::Encode(format!("FLAC encoding failed: {e}"))
}

/// FLAC encoded block by block with flacenc's frame encoder, with the bytes of
/// `flacenc::encode_with_fixed_block_size` on the whole signal (then
/// STREAMINFO's block sizes fixed, see [`FlacWriter::finish`]): STREAMINFO is
/// written first as a placeholder and rewritten at the end, frames are written
/// as their blocks fill.
struct FlacWriter<'w> {
    out: &'w mut BufWriter<File>,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: flacenc::component::StreamInfo,
    context: flacenc::source::Context,
    channels: usize,
    bits: u32,
    block_size: usize,
    /// Interleaved samples of the block being filled.
    pending: Vec<i32>,
    /// Interleaved samples of the full blocks of one `write`.
    full: Vec<i32>,
}

impl<'w> FlacWriter<'w> {
    fn new(
        out: &'w mut BufWriter<File>,
        depth: FlacDepth,
        sample_rate: u32,
        channels: usize,
    ) -> Result<Self, AudioError> {
        use flacenc::error::Verify;
        let bits = match depth {
            FlacDepth::Int16 => 16,
            FlacDepth::Int24 => 24,
        };
        let config = flacenc::config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| {
                AudioError::Encode(format!("invalid FLAC encoder configuration: {e}"))
            })?;
        let block_size = config.block_size;
        let info =
            flacenc::component::StreamInfo::new(sample_rate as usize, channels, bits as usize)
                .map_err(flac_error)?;
        let mut writer = Self {
            out,
            config,
            info,
            context: flacenc::source::Context::new(bits as usize, channels),
            channels,
            bits,
            block_size,
            pending: Vec::with_capacity(block_size * channels),
            full: Vec::new(),
        };
        // `encode_with_fixed_block_size` starts from these block sizes.
        writer
            .info
            .set_block_sizes(block_size, block_size)
            .map_err(flac_error)?;
        writer.write_header()?;
        Ok(writer)
    }

    /// "fLaC" and the STREAMINFO block, as `Stream::write` writes them.
    fn write_header(&mut self) -> Result<(), AudioError> {
        use flacenc::component::BitRepr;
        let stream = flacenc::component::Stream::with_stream_info(self.info.clone());
        let mut sink = flacenc::bitsink::ByteSink::new();
        stream.write(&mut sink).map_err(flac_error)?;
        self.out.write_all(sink.as_slice())?;
        Ok(())
    }

    fn write(&mut self, block: &[&[f32]]) -> Result<(), AudioError> {
        let n = block.first().map_or(0, |c| c.len());
        let block_len = self.block_size * self.channels;
        for i in 0..n {
            for c in block {
                self.pending.push(quantize(c[i], self.bits));
            }
            if self.pending.len() == block_len {
                self.full.extend_from_slice(&self.pending);
                self.pending.clear();
            }
        }
        let full = std::mem::take(&mut self.full);
        self.encode(&full)?;
        self.full = full;
        self.full.clear();
        Ok(())
    }

    /// Encodes whole blocks of `samples` (interleaved; the last one may be
    /// short), in parallel, and writes their frames in order.
    fn encode(&mut self, samples: &[i32]) -> Result<(), AudioError> {
        use flacenc::component::BitRepr;
        use flacenc::source::{Fill, FrameBuf};
        use rayon::prelude::*;
        if samples.is_empty() {
            return Ok(());
        }
        let mut jobs = Vec::new();
        for block in samples.chunks(self.block_size * self.channels) {
            let mut framebuf =
                FrameBuf::with_size(self.channels, self.block_size).map_err(flac_error)?;
            framebuf.fill_interleaved(block).map_err(flac_error)?;
            self.context.fill_interleaved(block).map_err(flac_error)?;
            let number = self
                .context
                .current_frame_number()
                .ok_or_else(|| flac_error("no frame number"))?;
            jobs.push((framebuf, number));
        }
        let (config, info) = (&self.config, &self.info);
        let frames = jobs
            .par_iter()
            .map(|(framebuf, number)| {
                let frame = flacenc::encode_fixed_size_frame(config, framebuf, *number, info)
                    .map_err(flac_error)?;
                let mut sink = flacenc::bitsink::ByteSink::new();
                frame.write(&mut sink).map_err(flac_error)?;
                Ok((frame, sink.into_inner()))
            })
            .collect::<Result<Vec<_>, AudioError>>()?;
        for (frame, bytes) in frames {
            self.info.update_frame_info(&frame);
            self.out.write_all(&bytes)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), AudioError> {
        let pending = std::mem::take(&mut self.pending);
        self.encode(&pending)?;
        self.info.set_md5_digest(&self.context.md5_digest());
        self.info.set_total_samples(self.context.total_samples());
        // flacenc lowers STREAMINFO's minimum block size to the size of the short
        // final block, which the FLAC format excludes from that field (and which
        // makes symphonia reject the file). In a fixed-blocksize stream both
        // fields are the block size, as the reference encoder writes them.
        self.info
            .set_block_sizes(self.block_size, self.block_size)
            .map_err(flac_error)?;
        self.out.seek(SeekFrom::Start(0))?;
        self.write_header()?;
        self.out.seek(SeekFrom::End(0))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::decode_file;
    use super::super::decode::tests::TestDir;
    use super::*;

    /// A deterministic test signal with full-scale, over-range and tiny values.
    fn signal(channels: usize, n: usize, rate: u32) -> Audio {
        let chans = (0..channels)
            .map(|c| {
                (0..n)
                    .map(|i| {
                        let t = i as f64 / f64::from(rate);
                        let v = 0.8
                            * (2.0 * std::f64::consts::PI * (220.0 * (c + 1) as f64) * t).sin()
                            + 0.15 * ((i * 7919 + c * 31) % 1000) as f64 / 1000.0
                            - 0.075;
                        match i {
                            0 => 1.0,
                            1 => -1.0,
                            2 => 1.5,
                            3 => -3.0,
                            4 => 1e-9,
                            _ => v as f32,
                        }
                    })
                    .collect()
            })
            .collect();
        Audio::new(rate, chans).unwrap()
    }

    fn quantized(audio: &Audio, bits: u32) -> Vec<Vec<f32>> {
        let full = f64::from(1u32 << (bits - 1));
        audio
            .channels
            .iter()
            .map(|c| {
                c.iter()
                    .map(|&x| (f64::from(quantize(x, bits)) / full) as f32)
                    .collect()
            })
            .collect()
    }

    fn assert_no_temp_files(dir: &Path) {
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".partial-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn quantize_matches_libsndfile() {
        assert_eq!(quantize(1.0, 16), 32767);
        assert_eq!(quantize(-1.0, 16), -32767);
        assert_eq!(quantize(2.0, 16), 32767);
        assert_eq!(quantize(-2.0, 16), -32767);
        assert_eq!(quantize(f32::NAN, 16), 0);
        assert_eq!(quantize(0.5, 16), 16384); // 16383.5 -> even
        assert_eq!(quantize(-0.5, 16), -16384);
        assert_eq!(quantize(0.5, 24), 4_194_304); // 4194303.5 -> even
        assert_eq!(quantize(1.0, 24), 8_388_607);
        assert_eq!(quantize(-1.0, 24), -8_388_607);
    }

    #[test]
    fn wav_float_round_trip_is_bit_exact() {
        let dir = TestDir::new("wavf32");
        let p = dir.path("out.wav");
        let a = signal(2, 10_000, 44100);
        write_audio_atomic(&p, &a, OutputFormat::Wav(PcmFormat::Float32)).unwrap();
        let b = decode_file(&p).unwrap();
        assert_eq!(b.sample_rate, 44100);
        for (x, y) in a.channels.iter().zip(&b.channels) {
            assert_eq!(
                x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        // hound writes WAVE_FORMAT_EXTENSIBLE (0xFFFE) for 32-bit samples,
        // with the KSDATAFORMAT_SUBTYPE_IEEE_FLOAT sub-format (GUID starting
        // with 0x0003).
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[20..22], &[0xFE, 0xFF]);
        assert_eq!(&bytes[44..46], &[3, 0]);
        assert_no_temp_files(&dir.0);
    }

    #[test]
    fn wav_int_round_trip_within_quantisation() {
        let dir = TestDir::new("wavint");
        let a = signal(2, 10_000, 48000);
        for (pcm, bits) in [(PcmFormat::Int16, 16), (PcmFormat::Int24, 24)] {
            let p = dir.path(&format!("out{bits}.wav"));
            write_audio_atomic(&p, &a, OutputFormat::Wav(pcm)).unwrap();
            let b = decode_file(&p).unwrap();
            assert_eq!(
                (b.sample_rate, b.num_channels(), b.frames()),
                (48000, 2, 10_000)
            );
            assert_eq!(b.channels, quantized(&a, bits), "{bits} bit");
            let step = 1.0 / f64::from(1u32 << (bits - 1));
            for (x, y) in a.channels.iter().zip(&b.channels) {
                for (&x, &y) in x.iter().zip(y) {
                    let x = f64::from(x.clamp(-1.0, 1.0));
                    assert!(
                        (x - f64::from(y)).abs() <= 1.5 * step,
                        "{bits} bit: {x} vs {y}"
                    );
                }
            }
        }
        assert_no_temp_files(&dir.0);
    }

    #[test]
    fn flac_round_trip_is_exact() {
        let dir = TestDir::new("flac");
        // Several blocks plus a short final one; stereo and mono.
        for (channels, n) in [(2usize, 3 * 4096 + 100), (1, 5000), (2, 1000)] {
            let a = signal(channels, n, 44100);
            for (depth, bits) in [(FlacDepth::Int16, 16u32), (FlacDepth::Int24, 24)] {
                let p = dir.path(&format!("out{channels}-{n}-{bits}.flac"));
                write_audio_atomic(&p, &a, OutputFormat::Flac(depth)).unwrap();
                let bytes = std::fs::read(&p).unwrap();
                // "fLaC", then the STREAMINFO block header (4 bytes), then
                // min and max block size (u16 big endian each).
                assert_eq!(&bytes[0..4], b"fLaC");
                assert_eq!(bytes[4] & 0x7f, 0, "first block is STREAMINFO");
                let min_bs = u16::from_be_bytes([bytes[8], bytes[9]]);
                let max_bs = u16::from_be_bytes([bytes[10], bytes[11]]);
                assert_eq!((min_bs, max_bs), (4096, 4096));
                let b = decode_file(&p).unwrap_or_else(|e| panic!("{e:#}"));
                assert_eq!(
                    (b.sample_rate, b.num_channels(), b.frames()),
                    (44100, channels, n)
                );
                assert_eq!(
                    b.channels,
                    quantized(&a, bits),
                    "{channels} ch, {n} frames, {bits} bit"
                );
            }
        }
        assert_no_temp_files(&dir.0);
    }

    /// The in-memory FLAC encoder `write_audio_atomic` used before streaming:
    /// the reference for the bytes of [`FlacWriter`].
    fn encode_flac_whole(audio: &Audio, bits: u32) -> Vec<u8> {
        use flacenc::component::BitRepr;
        use flacenc::error::Verify;
        let channels = audio.num_channels();
        let mut samples = Vec::new();
        for i in 0..audio.frames() {
            for c in &audio.channels {
                samples.push(quantize(c[i], bits));
            }
        }
        let config = flacenc::config::Encoder::default().into_verified().unwrap();
        let block_size = config.block_size;
        let source = flacenc::source::MemSource::from_samples(
            &samples,
            channels,
            bits as usize,
            audio.sample_rate as usize,
        );
        let mut stream =
            flacenc::encode_with_fixed_block_size(&config, source, block_size).unwrap();
        stream
            .stream_info_mut()
            .set_block_sizes(block_size, block_size)
            .unwrap();
        let mut sink = flacenc::bitsink::ByteSink::new();
        stream.write(&mut sink).unwrap();
        sink.into_inner()
    }

    /// Writes `audio` to `path` through a [`StreamWriter`], `piece` frames at a time.
    fn write_in_pieces(path: &Path, audio: &Audio, format: OutputFormat, piece: usize) {
        write_atomically(path, |w| -> Result<(), AudioError> {
            let mut writer = StreamWriter::new(w, format, audio.sample_rate, audio.num_channels())?;
            for start in (0..audio.frames()).step_by(piece) {
                let end = (start + piece).min(audio.frames());
                let block: Vec<&[f32]> = audio.channels.iter().map(|c| &c[start..end]).collect();
                writer.write(&block)?;
            }
            writer.finish()
        })
        .unwrap();
    }

    #[test]
    fn streamed_files_are_byte_identical_to_whole_ones() {
        let dir = TestDir::new("streamed");
        for (channels, n) in [(2usize, 5 * 4096 + 123), (1, 4096), (2, 100), (3, 9000)] {
            let a = signal(channels, n, 44100);
            for (depth, bits) in [(FlacDepth::Int16, 16u32), (FlacDepth::Int24, 24)] {
                let want = encode_flac_whole(&a, bits);
                let whole = dir.path("whole.flac");
                write_audio_atomic(&whole, &a, OutputFormat::Flac(depth)).unwrap();
                assert!(
                    std::fs::read(&whole).unwrap() == want,
                    "{channels} ch {n} {bits} bit"
                );
                for piece in [1000, 4096, 3 * 4096 + 5, 1 << 20] {
                    let p = dir.path("pieces.flac");
                    write_in_pieces(&p, &a, OutputFormat::Flac(depth), piece);
                    assert!(
                        std::fs::read(&p).unwrap() == want,
                        "{channels} ch {n} {bits} bit, pieces of {piece}"
                    );
                }
            }
            for pcm in [PcmFormat::Int16, PcmFormat::Int24, PcmFormat::Float32] {
                let whole = dir.path("whole.wav");
                write_audio_atomic(&whole, &a, OutputFormat::Wav(pcm)).unwrap();
                let want = std::fs::read(&whole).unwrap();
                for piece in [1, 1000] {
                    let p = dir.path("pieces.wav");
                    write_in_pieces(&p, &a, OutputFormat::Wav(pcm), piece);
                    assert!(
                        std::fs::read(&p).unwrap() == want,
                        "{pcm:?} pieces of {piece}"
                    );
                }
            }
        }
        assert_no_temp_files(&dir.0);
    }

    #[test]
    fn replaces_existing_file() {
        let dir = TestDir::new("replace");
        let p = dir.path("out.wav");
        std::fs::write(&p, b"old contents").unwrap();
        let a = signal(1, 100, 8000);
        write_audio_atomic(&p, &a, OutputFormat::Wav(PcmFormat::Float32)).unwrap();
        assert_eq!(decode_file(&p).unwrap(), a);
        assert_no_temp_files(&dir.0);
    }

    #[test]
    fn errors_leave_no_temp_file() {
        let dir = TestDir::new("atomicerr");
        let a = signal(2, 100, 44100);
        // Target directory does not exist.
        let p = dir.path("missing/out.wav");
        let e = format!(
            "{:#}",
            write_audio_atomic(&p, &a, OutputFormat::Wav(PcmFormat::Int16)).unwrap_err()
        );
        assert!(e.contains(&p.display().to_string()), "{e}");
        // Target is an existing directory: the rename fails after writing.
        let p = dir.path("adir");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("keep"), b"x").unwrap();
        for format in [
            OutputFormat::Wav(PcmFormat::Int24),
            OutputFormat::Flac(FlacDepth::Int16),
        ] {
            let e = format!("{:#}", write_audio_atomic(&p, &a, format).unwrap_err());
            assert!(e.contains(&p.display().to_string()), "{e}");
        }
        assert_no_temp_files(&dir.0);
        // Invalid audio is refused before any file is created.
        let bad = Audio {
            sample_rate: 44100,
            channels: vec![vec![0.0; 3], vec![0.0; 2]],
        };
        let p = dir.path("bad.wav");
        assert!(write_audio_atomic(&p, &bad, OutputFormat::Wav(PcmFormat::Int16)).is_err());
        assert!(!p.exists());
        let many = Audio::new(44100, vec![vec![0.0; 10]; 9]).unwrap();
        assert!(write_audio_atomic(&p, &many, OutputFormat::Flac(FlacDepth::Int16)).is_err());
        assert_no_temp_files(&dir.0);
    }

    #[cfg(unix)]
    #[test]
    fn read_only_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TestDir::new("readonly");
        let ro = dir.path("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let p = ro.join("out.wav");
        let r = write_audio_atomic(
            &p,
            &signal(1, 10, 8000),
            OutputFormat::Wav(PcmFormat::Int16),
        );
        // root ignores permissions: only check when the write was refused.
        if let Err(e) = r {
            let e = format!("{e:#}");
            assert!(e.contains(&p.display().to_string()), "{e}");
        } else {
            std::fs::remove_file(&p).unwrap();
        }
        assert_no_temp_files(&ro);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn zero_frames_wav_is_written_but_not_decodable() {
        let dir = TestDir::new("zeroframes");
        let p = dir.path("empty.wav");
        let a = Audio::new(44100, vec![vec![], vec![]]).unwrap();
        write_audio_atomic(&p, &a, OutputFormat::Wav(PcmFormat::Int16)).unwrap();
        let e = format!("{:#}", decode_file(&p).unwrap_err());
        assert!(e.contains("contains no audio samples"), "{e}");
    }
}
