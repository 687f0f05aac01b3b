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
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use roformer::atomic_file::write_atomically;

use super::Audio;

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
pub fn quantize(x: f32, bits: u32) -> i32 {
    let scale = f64::from((1u32 << (bits - 1)) - 1);
    let x = if x.is_nan() {
        0.0
    } else {
        f64::from(x.clamp(-1.0, 1.0))
    };
    (x * scale).round_ties_even() as i32
}

/// Writes `audio` to `path` in `format` without ever leaving a partial file at
/// `path` ([`roformer::atomic_file`]): the data goes to a temporary sibling
/// (`.<name>.partial-<pid>-<n>` in the same directory), is flushed and fsynced,
/// then renamed over `path` (replacing an existing file). On any error the
/// temporary file is removed and the error names `path`.
pub fn write_audio_atomic(path: &Path, audio: &Audio, format: OutputFormat) -> Result<()> {
    write_atomic_inner(path, audio, format)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn write_atomic_inner(path: &Path, audio: &Audio, format: OutputFormat) -> Result<()> {
    audio.validate()?;
    // Encode FLAC in memory first: a failure then touches no file at all.
    let flac_bytes = match format {
        OutputFormat::Flac(depth) => Some(encode_flac(audio, depth)?),
        OutputFormat::Wav(_) => None,
    };
    if let OutputFormat::Wav(_) = format {
        if audio.num_channels() > usize::from(u16::MAX) {
            bail!("WAV cannot hold {} channels", audio.num_channels());
        }
    }

    write_atomically(path, |w| -> Result<()> {
        match (format, flac_bytes) {
            (_, Some(bytes)) => w.write_all(&bytes)?,
            (OutputFormat::Wav(pcm), None) => write_wav(w, audio, pcm)?,
            (OutputFormat::Flac(_), None) => unreachable!("FLAC is encoded above"),
        }
        Ok(())
    })
}

fn write_wav(out: &mut BufWriter<File>, audio: &Audio, pcm: PcmFormat) -> Result<()> {
    let (bits, sample_format) = match pcm {
        PcmFormat::Int16 => (16, hound::SampleFormat::Int),
        PcmFormat::Int24 => (24, hound::SampleFormat::Int),
        PcmFormat::Float32 => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec {
        channels: audio.num_channels() as u16,
        sample_rate: audio.sample_rate,
        bits_per_sample: bits,
        sample_format,
    };
    let mut w = hound::WavWriter::new(out, spec)?;
    let n = audio.frames();
    match pcm {
        PcmFormat::Int16 => {
            for i in 0..n {
                for c in &audio.channels {
                    w.write_sample(quantize(c[i], 16) as i16)?;
                }
            }
        }
        PcmFormat::Int24 => {
            for i in 0..n {
                for c in &audio.channels {
                    w.write_sample(quantize(c[i], 24))?;
                }
            }
        }
        PcmFormat::Float32 => {
            for i in 0..n {
                for c in &audio.channels {
                    w.write_sample(c[i])?;
                }
            }
        }
    }
    w.finalize()?;
    Ok(())
}

/// Encodes `audio` as a complete FLAC file in memory.
fn encode_flac(audio: &Audio, depth: FlacDepth) -> Result<Vec<u8>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;

    let channels = audio.num_channels();
    if channels > FLAC_MAX_CHANNELS {
        bail!("FLAC cannot hold {channels} channels (at most {FLAC_MAX_CHANNELS})");
    }
    let bits = match depth {
        FlacDepth::Int16 => 16,
        FlacDepth::Int24 => 24,
    };
    let n = audio.frames();
    let mut samples = Vec::with_capacity(n * channels);
    for i in 0..n {
        for c in &audio.channels {
            samples.push(quantize(c[i], bits));
        }
    }
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| anyhow!("invalid FLAC encoder configuration: {e}"))?;
    let block_size = config.block_size;
    let source = flacenc::source::MemSource::from_samples(
        &samples,
        channels,
        bits as usize,
        audio.sample_rate as usize,
    );
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, block_size)
        .map_err(|e| anyhow!("FLAC encoding failed: {e}"))?;
    // flacenc lowers STREAMINFO's minimum block size to the size of the short
    // final block, which the FLAC format excludes from that field (and which
    // makes symphonia reject the file). In a fixed-blocksize stream both
    // fields are the block size, as the reference encoder writes them.
    stream
        .stream_info_mut()
        .set_block_sizes(block_size, block_size)
        .map_err(|e| anyhow!("FLAC encoding failed: {e}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| anyhow!("FLAC encoding failed: {e}"))?;
    Ok(sink.into_inner())
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
