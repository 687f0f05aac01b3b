//! Sample-rate conversion with rubato's synchronous FFT resampler.

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::Audio;

/// Smallest FFT block in input frames. The actual block is a multiple of the
/// minimum block for the rate pair (`rate / gcd(from, to)` on each side), see
/// [`fft_block_in`]. One sub-chunk per chunk gives the longest FFT and
/// therefore the steepest anti-aliasing filter; the resampler delay this adds
/// is trimmed by `process_all`.
const MIN_BLOCK_FRAMES: usize = 2048;

/// Resamples `audio` to `target_rate` Hz.
///
/// Returns a copy when the rates are already equal. Otherwise every channel
/// is resampled as a whole signal (in parallel across channels) with rubato's
/// `Fft` resampler (Blackman-Harris² anti-aliasing window), the resampler
/// delay is removed, and the result holds exactly
/// `round(frames * target_rate / sample_rate)` frames.
pub fn resample(audio: &Audio, target_rate: u32) -> Result<Audio> {
    let from = audio.sample_rate;
    if target_rate == 0 || from == 0 {
        bail!("cannot resample from {from} Hz to {target_rate} Hz");
    }
    if from == target_rate {
        return Ok(audio.clone());
    }
    let n = audio.frames();
    if audio.channels.iter().any(|c| c.len() != n) {
        bail!("cannot resample: the channels have different lengths");
    }
    let out_len = resampled_len(n, from, target_rate);
    let channels = audio
        .channels
        .par_iter()
        .map(|ch| resample_channel(ch, from, target_rate, out_len))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("cannot resample from {from} Hz to {target_rate} Hz"))?;
    Ok(Audio {
        sample_rate: target_rate,
        channels,
    })
}

/// `round(n * to / from)`, exactly, halves rounded up.
pub fn resampled_len(n: usize, from: u32, to: u32) -> usize {
    let (n, from, to) = (n as u128, u128::from(from), u128::from(to));
    ((2 * n * to + from) / (2 * from)) as usize
}

/// The FFT block length (input frames) for a rate pair: the smallest even
/// multiple of the minimum block that reaches [`MIN_BLOCK_FRAMES`]. An even
/// multiple makes both the input and output blocks even, so rubato's delay of
/// half an output block is a whole number of frames and `process_all` trims it
/// exactly (with an odd output block the result would lag by half a frame).
fn fft_block_in(from: u32, to: u32) -> usize {
    let (from, to) = (from as usize, to as usize);
    let min_in = from / gcd(from, to);
    let mut blocks = MIN_BLOCK_FRAMES.div_ceil(min_in).max(1);
    blocks += blocks % 2;
    blocks * min_in
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn resample_channel(input: &[f32], from: u32, to: u32, out_len: usize) -> Result<Vec<f32>> {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let mut resampler = Fft::<f32>::new_custom(
        from as usize,
        to as usize,
        fft_block_in(from, to),
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Both,
    )?;
    let adapter = SequentialSlice::new(input, 1, input.len())?;
    let output = resampler.process_all(&adapter, input.len(), None)?;
    let mut data = output.take_data();
    // process_all yields ceil(n * ratio) frames; keep round(n * ratio).
    data.resize(out_len, 0.0);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize, phase: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate) + phase)
                    .sin()) as f32
            })
            .collect()
    }

    fn snr_db(got: &[f32], want: &[f32]) -> f64 {
        let (mut s, mut e) = (0.0f64, 0.0f64);
        for (&g, &w) in got.iter().zip(want) {
            s += f64::from(w) * f64::from(w);
            e += (f64::from(g) - f64::from(w)).powi(2);
        }
        10.0 * (s / e.max(1e-30)).log10()
    }

    #[test]
    fn sine_48k_to_44k1() {
        let n = 48000 + 123;
        let audio = Audio::new(
            48000,
            vec![sine(1000.0, 48000, n, 0.0), sine(1000.0, 48000, n, 1.0)],
        )
        .unwrap();
        let out = resample(&audio, 44100).unwrap();
        assert_eq!(out.sample_rate, 44100);
        assert_eq!(out.frames(), resampled_len(n, 48000, 44100));
        assert_eq!(
            out.frames(),
            (n as f64 * 44100.0 / 48000.0).round() as usize
        );
        for (c, phase) in [(0, 0.0), (1, 1.0)] {
            let want = sine(1000.0, 44100, out.frames(), phase);
            // Away from the edges (the signal starts and stops abruptly).
            let (a, b) = (2000, out.frames() - 2000);
            let snr = snr_db(&out.channels[c][a..b], &want[a..b]);
            assert!(snr > 60.0, "channel {c}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn upsampling_and_odd_rates() {
        for (from, to) in [
            (44100u32, 48000u32),
            (22050, 44100),
            (44100, 32000),
            (11025, 44100),
        ] {
            let n = from as usize / 2 + 7;
            let audio = Audio::new(from, vec![sine(440.0, from, n, 0.3)]).unwrap();
            let out = resample(&audio, to).unwrap();
            assert_eq!(out.frames(), resampled_len(n, from, to));
            let want = sine(440.0, to, out.frames(), 0.3);
            let edge = to as usize / 20;
            let snr = snr_db(
                &out.channels[0][edge..out.frames() - edge],
                &want[edge..out.frames() - edge],
            );
            assert!(snr > 60.0, "{from}->{to}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn short_and_trivial_inputs() {
        let a = Audio::new(44100, vec![vec![0.25; 5], vec![-0.25; 5]]).unwrap();
        assert_eq!(resample(&a, 44100).unwrap(), a);
        let b = resample(&a, 48000).unwrap();
        assert_eq!(b.frames(), 5);
        assert_eq!(b.num_channels(), 2);
        let empty = Audio {
            sample_rate: 48000,
            channels: vec![vec![], vec![]],
        };
        assert_eq!(resample(&empty, 44100).unwrap().frames(), 0);
        assert!(resample(&a, 0).is_err());
        assert_eq!(resampled_len(3, 2, 1), 2); // 1.5 rounds up
        assert_eq!(resampled_len(48000, 48000, 44100), 44100);
    }
}
