//! Decoding audio files (WAV, FLAC, MP3, Ogg/Vorbis, M4A/AAC, AIFF, ...) to
//! planar `f32` with symphonia.
//!
//! Integer samples are scaled like libsndfile (and therefore soundfile and
//! librosa) do: `i / 2^(bits-1)`, e.g. `i16 / 32768`, `i24 / 8388608`,
//! `i32 / 2147483648`; unsigned samples are re-centred first (`(u8 - 128) /
//! 128`). 32-bit float samples are copied bit for bit.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use symphonia::core::audio::Audio as _;
use symphonia::core::audio::GenericAudioBufferRef;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{Audio, AudioError};

/// Upper bound on the number of frames pre-allocated from a container's
/// (untrusted) length field: one hour at 192 kHz.
const MAX_PREALLOC_FRAMES: u64 = 192_000 * 3600;

/// Decodes the whole file at `path` into planar `f32`.
///
/// Errors (each naming the file): it cannot be opened ([`AudioError::Open`]);
/// it is not audio or uses an unsupported container/codec
/// ([`AudioError::Unsupported`], [`AudioError::UnsupportedCodec`]); its stream
/// is corrupt and not a single packet decodes ([`AudioError::Corrupt`]); it
/// decodes to no samples ([`AudioError::NoSamples`]). Individual corrupt packets are skipped (with a warning),
/// as symphonia recommends; a demuxing error after some audio was decoded
/// ends the stream early (with a warning) like a truncated file.
pub fn decode_file(path: &Path) -> Result<Audio, AudioError> {
    let mut decoder = Decoder::open(path)?;
    let reserve = decoder
        .expected_frames
        .map_or(0, |n| n.min(MAX_PREALLOC_FRAMES) as usize);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut block = Vec::new();
    while decoder.next_block(&mut block)? {
        if channels.is_empty() {
            channels = (0..block.len())
                .map(|_| Vec::with_capacity(reserve))
                .collect();
        }
        for (dst, src) in channels.iter_mut().zip(&block) {
            dst.extend_from_slice(src);
        }
    }
    Audio::new(decoder.sample_rate, channels).map_err(|_| AudioError::NoSamples {
        path: decoder.path.clone(),
    })
}

/// An audio file being decoded block by block (one block per packet), with the
/// error handling of [`decode_file`], which is built on it.
pub struct Decoder {
    path: PathBuf,
    shown: String,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    expected_frames: Option<u64>,
    sample_rate: u32,
    channels: usize,
    frames: usize,
    bad_packets: usize,
    last_error: Option<SymError>,
    ended: bool,
    warn: bool,
}

impl Decoder {
    /// Opens `path` and finds its audio track and codec.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let shown = path.display().to_string();
        let cannot_open = |source| AudioError::Open {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(cannot_open)?;
        if meta.is_dir() {
            return Err(cannot_open(io::Error::new(
                ErrorKind::IsADirectory,
                "it is a directory",
            )));
        }
        let file = File::open(path).map_err(cannot_open)?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());

        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| AudioError::Unsupported {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;

        let no_track = || AudioError::Unsupported {
            path: path.to_path_buf(),
            reason: "it has no audio track".into(),
        };
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(no_track)?;
        let track_id = track.id;
        let expected_frames = track.num_frames;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(no_track)?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| AudioError::UnsupportedCodec {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            shown,
            format,
            decoder,
            track_id,
            expected_frames,
            sample_rate: 0,
            channels: 0,
            frames: 0,
            bad_packets: 0,
            last_error: None,
            ended: false,
            warn: true,
        })
    }

    /// Leaves the warnings about corrupt or cut-short data out (for a second
    /// pass over a file whose first pass gave them).
    pub fn without_warnings(mut self) -> Self {
        self.warn = false;
        self
    }

    /// Sample rate of the decoded audio (0 before the first block).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channels of the decoded audio (0 before the first block).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Decodes the next frames into `block` (one `Vec` per channel, replaced);
    /// returns `false`, with `block` empty, once the stream has ended. The end
    /// of a stream without any sample, or whose packets all failed to decode,
    /// is an error.
    pub fn next_block(&mut self, block: &mut Vec<Vec<f32>>) -> Result<bool, AudioError> {
        for ch in block.iter_mut() {
            ch.clear();
        }
        while !self.ended {
            let shown = &self.shown;
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                // A truncated file: keep what was decoded.
                Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
                // Chained streams (e.g. concatenated Ogg files) are not supported:
                // keep the first one.
                Err(SymError::ResetRequired) if self.frames > 0 => {
                    if self.warn {
                        tracing::warn!(
                            "{shown}: only the first of several chained streams was decoded"
                        );
                    }
                    break;
                }
                Err(e) if self.frames > 0 => {
                    if self.warn {
                        tracing::warn!(
                            "{shown}: stopped reading at corrupt data ({e}); the audio may be cut short"
                        );
                    }
                    break;
                }
                Err(e) => {
                    return Err(AudioError::Corrupt {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    });
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    let n = convert(&buf, &mut self.sample_rate, &mut self.channels, block)
                        .map_err(|reason| AudioError::Decode {
                            path: self.path.clone(),
                            reason,
                        })?;
                    if n > 0 {
                        self.frames += n;
                        return Ok(true);
                    }
                }
                // Invalid data in this packet: skip it.
                Err(e @ (SymError::DecodeError(_) | SymError::IoError(_))) => {
                    self.bad_packets += 1;
                    self.last_error = Some(e);
                }
                Err(e) => {
                    return Err(AudioError::Decode {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.ended = true;
        block.clear();
        let shown = &self.shown;
        if self.frames == 0 {
            if let Some(e) = &self.last_error {
                return Err(AudioError::Corrupt {
                    path: self.path.clone(),
                    reason: format!(
                        "none of its {} audio packet(s) could be decoded (last error: {e})",
                        self.bad_packets
                    ),
                });
            }
            return Err(AudioError::NoSamples {
                path: self.path.clone(),
            });
        }
        if self.bad_packets > 0 && self.warn {
            let e = self
                .last_error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::warn!(
                "{shown}: skipped {} corrupt audio packet(s) ({e})",
                self.bad_packets
            );
            self.warn = false;
        }
        Ok(false)
    }
}

/// Converts a decoded buffer into planar `f32` in `block` (one `Vec` per
/// channel, appended to); the first non-empty buffer sets `rate` and
/// `channels`, which later ones must keep. Returns the frames converted, or
/// what is wrong.
fn convert(
    buf: &GenericAudioBufferRef<'_>,
    rate: &mut u32,
    channels: &mut usize,
    block: &mut Vec<Vec<f32>>,
) -> Result<usize, String> {
    if buf.frames() == 0 {
        return Ok(0);
    }
    let buf_rate = buf.spec().rate();
    let planes = buf.num_planes();
    if planes == 0 {
        return Err("the decoder produced audio without channels".into());
    }
    if buf_rate == 0 {
        return Err("the stream has a sample rate of 0 Hz".into());
    }
    if *channels == 0 {
        *rate = buf_rate;
        *channels = planes;
    } else if buf_rate != *rate || planes != *channels {
        return Err(format!(
            "the stream changes from {} Hz, {} channel(s) to {buf_rate} Hz, {planes} channel(s) part way; this is not supported",
            *rate,
            *channels
        ));
    }
    block.resize(planes, Vec::new());
    match buf {
        GenericAudioBufferRef::U8(b) => {
            extend(block, |i| b.plane(i), |x| (f32::from(x) - 128.0) / 128.0)
        }
        GenericAudioBufferRef::U16(b) => extend(
            block,
            |i| b.plane(i),
            |x| (f32::from(x) - 32768.0) / 32768.0,
        ),
        GenericAudioBufferRef::U24(b) => extend(
            block,
            |i| b.plane(i),
            |x| (x.inner() as f32 - 8_388_608.0) / 8_388_608.0,
        ),
        GenericAudioBufferRef::U32(b) => extend(
            block,
            |i| b.plane(i),
            |x| ((f64::from(x) - 2_147_483_648.0) / 2_147_483_648.0) as f32,
        ),
        GenericAudioBufferRef::S8(b) => extend(block, |i| b.plane(i), |x| f32::from(x) / 128.0),
        GenericAudioBufferRef::S16(b) => extend(block, |i| b.plane(i), |x| f32::from(x) / 32768.0),
        GenericAudioBufferRef::S24(b) => {
            extend(block, |i| b.plane(i), |x| x.inner() as f32 / 8_388_608.0)
        }
        GenericAudioBufferRef::S32(b) => extend(
            block,
            |i| b.plane(i),
            |x| (f64::from(x) / 2_147_483_648.0) as f32,
        ),
        GenericAudioBufferRef::F32(b) => extend(block, |i| b.plane(i), |x| x),
        GenericAudioBufferRef::F64(b) => extend(block, |i| b.plane(i), |x| x as f32),
    }?;
    Ok(buf.frames())
}

fn extend<'a, S: Copy + 'a>(
    block: &mut [Vec<f32>],
    plane: impl Fn(usize) -> Option<&'a [S]>,
    convert: impl Fn(S) -> f32,
) -> Result<(), String> {
    for (i, dst) in block.iter_mut().enumerate() {
        let src = plane(i).ok_or("the decoder produced a missing channel")?;
        dst.extend(src.iter().map(|&x| convert(x)));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A scratch directory removed on drop.
    pub(crate) struct TestDir(pub PathBuf);

    impl TestDir {
        pub(crate) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "roformer-audio-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TestDir(dir)
        }

        pub(crate) fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/audio")
            .join(name)
    }

    fn write_wav_int(path: &Path, bits: u16, channels: u16, samples: &[i32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 22050,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            match bits {
                8 => w.write_sample(s as i8).unwrap(),
                16 => w.write_sample(s as i16).unwrap(),
                _ => w.write_sample(s).unwrap(),
            }
        }
        w.finalize().unwrap();
    }

    fn err_text(r: Result<Audio, AudioError>) -> String {
        crate::error::full_message(&r.expect_err("expected an error"))
    }

    #[test]
    fn integer_wavs_scale_like_libsndfile() {
        let dir = TestDir::new("intwav");
        for (bits, full) in [
            (8u16, 128i64),
            (16, 32768),
            (24, 8_388_608),
            (32, 2_147_483_648),
        ] {
            let max = (full - 1) as i32;
            let min = (-full) as i32;
            // Interleaved stereo: (min, max), (0, 1), (-1, max/3).
            let samples = [min, max, 0, 1, -1, max / 3];
            let p = dir.path(&format!("i{bits}.wav"));
            write_wav_int(&p, bits, 2, &samples);
            let a = decode_file(&p).unwrap();
            assert_eq!((a.sample_rate, a.num_channels(), a.frames()), (22050, 2, 3));
            let expect = |s: i32| (s as f64 / full as f64) as f32;
            assert_eq!(
                a.channels[0],
                vec![expect(min), expect(0), expect(-1)],
                "{bits} bit"
            );
            assert_eq!(
                a.channels[1],
                vec![expect(max), expect(1), expect(max / 3)],
                "{bits} bit"
            );
            assert_eq!(a.channels[0][0], -1.0);
        }
    }

    #[test]
    fn float_wav_is_bit_exact() {
        let dir = TestDir::new("f32wav");
        let p = dir.path("f.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let vals: Vec<f32> = vec![
            0.1,
            -0.3,
            1.5,
            -2.0,
            f32::MIN_POSITIVE,
            1e-40,
            0.123_456_79,
            -0.0,
        ];
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for &v in &vals {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let a = decode_file(&p).unwrap();
        let l: Vec<u32> = vals.iter().step_by(2).map(|v| v.to_bits()).collect();
        let r: Vec<u32> = vals
            .iter()
            .skip(1)
            .step_by(2)
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(
            a.channels[0]
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            l
        );
        assert_eq!(
            a.channels[1]
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            r
        );
    }

    #[test]
    fn surround_wav_keeps_channels() {
        let dir = TestDir::new("surround");
        let p = dir.path("s.wav");
        let samples: Vec<i32> = (0..6 * 4).map(|i| (i % 6) * 1000).collect();
        write_wav_int(&p, 16, 6, &samples);
        let a = decode_file(&p).unwrap();
        assert_eq!(a.num_channels(), 6);
        for (c, ch) in a.channels.iter().enumerate() {
            assert!(ch.iter().all(|&x| x == (c as f32 * 1000.0) / 32768.0));
        }
    }

    #[test]
    fn missing_file() {
        let e = err_text(decode_file(Path::new("/nonexistent/dir/song.wav")));
        assert!(e.contains("cannot open /nonexistent/dir/song.wav"), "{e}");
        let dir = TestDir::new("isdir");
        let e = err_text(decode_file(&dir.0));
        assert!(e.contains("cannot open") && e.contains("directory"), "{e}");
    }

    #[test]
    fn not_audio() {
        let dir = TestDir::new("notaudio");
        // Deterministic pseudo-random bytes.
        let mut x = 0x1234_5678u32;
        let bytes: Vec<u8> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for (name, data) in [
            ("random.wav", &bytes[..]),
            ("random.mp3", &bytes[..]),
            ("empty.flac", &[][..]),
            ("text.txt", &b"hello, this is not audio\n"[..]),
        ] {
            let p = dir.path(name);
            std::fs::write(&p, data).unwrap();
            let e = err_text(decode_file(&p));
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(
                e.contains("is not a supported audio file") || e.contains("is corrupt"),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn truncated_and_empty_wav() {
        let dir = TestDir::new("truncated");
        let full = dir.path("full.wav");
        let samples: Vec<i32> = (0..2000).map(|i| (i * 7) % 3000 - 1500).collect();
        write_wav_int(&full, 16, 2, &samples);
        let bytes = std::fs::read(&full).unwrap();
        // Header cut in the middle of the fmt chunk.
        for cut in [4usize, 12, 20, 30, 40] {
            let p = dir.path(&format!("cut{cut}.wav"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = err_text(decode_file(&p));
            assert!(e.contains(&p.display().to_string()), "{cut}: {e}");
        }
        // Header intact, data cut: what is there decodes (no panic either way).
        let p = dir.path("cutdata.wav");
        std::fs::write(&p, &bytes[..bytes.len() / 2 + 1]).unwrap();
        if let Ok(a) = decode_file(&p) {
            assert_eq!(a.num_channels(), 2);
            assert!(a.frames() > 0 && a.frames() < 1000);
        }
        // Zero frames.
        let p = dir.path("empty.wav");
        write_wav_int(&p, 16, 2, &[]);
        let e = err_text(decode_file(&p));
        assert!(e.contains("contains no audio samples"), "{e}");
    }

    /// Relative energy of the best-matching sine at `freq` (Goertzel-style
    /// projection), in `[0, 1]`: 1 for a pure sine at that frequency.
    pub(crate) fn tone_purity(x: &[f32], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
        let (mut s, mut c, mut e) = (0.0f64, 0.0f64, 0.0f64);
        for (n, &v) in x.iter().enumerate() {
            let v = f64::from(v);
            s += v * (w * n as f64).sin();
            c += v * (w * n as f64).cos();
            e += v * v;
        }
        (s * s + c * c) * 2.0 / x.len() as f64 / e
    }

    /// Lossy fixtures: 0.5 s of stereo 44.1 kHz, a 440 Hz sine on the left
    /// and 660 Hz on the right (see tests/fixtures/audio/README.md).
    #[test]
    fn lossy_fixtures() {
        for name in ["sine.mp3", "sine.ogg", "sine.m4a"] {
            let p = fixture(name);
            let a = decode_file(&p).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(a.sample_rate, 44100, "{name}");
            assert_eq!(a.num_channels(), 2, "{name}");
            let n = a.frames() as i64;
            // 0.5 s, give or take encoder delay/padding the container does
            // not signal.
            assert!((n - 22050).abs() <= 2200, "{name}: {n} frames");
            // Skip the edges (encoder delay, fades).
            let mid = |c: &Vec<f32>| c[4000..18000].to_vec();
            let l = tone_purity(&mid(&a.channels[0]), 44100, 440.0);
            let r = tone_purity(&mid(&a.channels[1]), 44100, 660.0);
            assert!(l > 0.99 && r > 0.99, "{name}: purity {l} {r}");
            let peak = a.channels[0][4000..18000]
                .iter()
                .fold(0.0f32, |m, &x| m.max(x.abs()));
            assert!((peak - 0.5).abs() < 0.05, "{name}: peak {peak}");
        }
    }

    /// The AIFF fixture holds known 16-bit big-endian samples: decoded values
    /// must be exactly `round(0.5 * 32767 * sin(2 pi 1000 n / 22050)) / 32768`.
    #[test]
    fn aiff_fixture_is_exact() {
        let a = decode_file(&fixture("sine.aiff")).unwrap();
        assert_eq!(
            (a.sample_rate, a.num_channels(), a.frames()),
            (22050, 1, 2205)
        );
        for (n, &x) in a.channels[0].iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 22050.0;
            let q = (0.5 * 32767.0 * w.sin()).round();
            assert_eq!(x, (q / 32768.0) as f32, "sample {n}");
        }
    }
}
