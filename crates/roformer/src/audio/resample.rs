//! Sample-rate conversion with rubato's synchronous FFT resampler.

use rayon::prelude::*;
use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::{Audio, AudioError};
use crate::error::full_message;

/// [`AudioError::Resample`] with `message`.
fn resample_error(message: impl Into<String>) -> AudioError {
    AudioError::Resample(message.into())
}

/// The error of a failed conversion from `from` to `to` Hz, because of `reason`.
fn cannot_resample(from: u32, to: u32, reason: &str) -> AudioError {
    resample_error(format!(
        "cannot resample from {from} Hz to {to} Hz: {reason}"
    ))
}

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
pub fn resample(audio: &Audio, target_rate: u32) -> Result<Audio, AudioError> {
    let from = audio.sample_rate;
    if target_rate == 0 || from == 0 {
        return Err(resample_error(format!(
            "cannot resample from {from} Hz to {target_rate} Hz"
        )));
    }
    if from == target_rate {
        return Ok(audio.clone());
    }
    let n = audio.frames();
    if audio.channels.iter().any(|c| c.len() != n) {
        return Err(resample_error(
            "cannot resample: the channels have different lengths",
        ));
    }
    let out_len = resampled_len(n, from, target_rate);
    let channels = audio
        .channels
        .par_iter()
        .map(|ch| resample_channel(ch, from, target_rate, out_len))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| cannot_resample(from, target_rate, &e))?;
    Ok(Audio {
        sample_rate: target_rate,
        channels,
    })
}

/// The number of frames [`resample`] makes of `n` frames from `from` to `to`
/// Hz: `round(n * to / from)`, exactly, halves rounded up.
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

/// Largest magnitude the resampler takes: beyond it the FFT's sums could overflow `f32`.
/// Real audio is near `[-1, 1]`; such values only come from corrupt float files.
const MAX_MAGNITUDE: f32 = 1e30;

/// A sample as the resampler takes it: NaN and infinities become silence and absurd magnitudes
/// are clamped to [`MAX_MAGNITUDE`]. rubato's inverse FFT fails (panics) on the non-finite
/// spectrum either makes, and a separation of such input gives silent stems anyway (MSST's
/// `nan_to_num`); the separator warns about non-finite input (`Notice::NonFinite`).
fn sanitised(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE)
    } else {
        0.0
    }
}

/// One channel resampled to `out_len` frames, or rubato's error.
fn resample_channel(input: &[f32], from: u32, to: u32, out_len: usize) -> Result<Vec<f32>, String> {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let cleaned: Vec<f32>;
    let input = if input.iter().all(|&x| sanitised(x) == x) {
        input
    } else {
        cleaned = input.iter().copied().map(sanitised).collect();
        &cleaned
    };
    let mut resampler = channel_resampler(from, to)?;
    let adapter = SequentialSlice::new(input, 1, input.len()).map_err(|e| full_message(&e))?;
    let output = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| full_message(&e))?;
    let mut data = output.take_data();
    // process_all yields ceil(n * ratio) frames; keep round(n * ratio).
    data.resize(out_len, 0.0);
    Ok(data)
}

/// The resampler of one channel, or rubato's error.
fn channel_resampler(from: u32, to: u32) -> Result<Fft<f32>, String> {
    Fft::<f32>::new_custom(
        from as usize,
        to as usize,
        fft_block_in(from, to),
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Both,
    )
    .map_err(|e| full_message(&e))
}

/// [`resample`] for a signal given block by block: the output, delivered as
/// it comes, is bit-identical to `resample` on the whole signal.
///
/// `process_all` (what `resample` runs) feeds the resampler fixed blocks of
/// input, the last one zero-padded, then blocks of zeros until there is
/// enough output, and drops the resampler delay from the start of it. That is
/// the signal followed by silence, cut into fixed blocks, which is what this
/// does too, one block as soon as its input is there; [`finish`](Self::finish)
/// then pads and keeps `round(frames * to / from)` frames in all.
pub struct StreamResampler {
    from: u32,
    to: u32,
    resamplers: Vec<Fft<f32>>,
    block_in: usize,
    /// Input not resampled yet (less than a block after each call).
    pending: Vec<Vec<f32>>,
    /// Output of one block, per channel.
    scratch: Vec<Vec<f32>>,
    /// Output frames still to drop (the resampler delay).
    skip: usize,
    frames_in: usize,
    frames_out: usize,
}

impl StreamResampler {
    /// A resampler of `channels` channels from `from` to `to` Hz.
    pub fn new(channels: usize, from: u32, to: u32) -> Result<Self, AudioError> {
        if to == 0 || from == 0 {
            return Err(resample_error(format!(
                "cannot resample from {from} Hz to {to} Hz"
            )));
        }
        let resamplers = (0..channels)
            .map(|_| channel_resampler(from, to))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| cannot_resample(from, to, &e))?;
        let (block_in, block_out, skip) = match resamplers.first() {
            Some(r) => (
                r.input_frames_next(),
                r.output_frames_next(),
                r.output_delay(),
            ),
            None => (1, 1, 0),
        };
        Ok(Self {
            from,
            to,
            resamplers,
            block_in,
            pending: vec![Vec::with_capacity(block_in); channels],
            scratch: vec![vec![0.0; block_out]; channels],
            skip,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Resamples `input` (one slice per channel, all of one length); appends
    /// the output that is ready to `out` (one `Vec` per channel).
    pub fn push<C: AsRef<[f32]>>(
        &mut self,
        input: &[C],
        out: &mut [Vec<f32>],
    ) -> Result<(), AudioError> {
        if input.len() != self.pending.len() {
            return Err(resample_error(format!(
                "cannot resample: {} channel(s) given to a resampler for {}",
                input.len(),
                self.pending.len()
            )));
        }
        let n = input.first().map_or(0, |c| c.as_ref().len());
        if input.iter().any(|c| c.as_ref().len() != n) {
            return Err(resample_error(
                "cannot resample: the channels have different lengths",
            ));
        }
        self.frames_in += n;
        let mut taken = 0;
        while taken < n {
            let room = self.block_in - self.pending[0].len();
            let k = room.min(n - taken);
            for (p, c) in self.pending.iter_mut().zip(input) {
                p.extend(c.as_ref()[taken..taken + k].iter().copied().map(sanitised));
            }
            taken += k;
            if self.pending[0].len() == self.block_in {
                self.process(out, usize::MAX)?;
            }
        }
        Ok(())
    }

    /// Ends the input: appends the rest of the output to `out`, which then
    /// holds `round(frames * to / from)` frames in all.
    pub fn finish(&mut self, out: &mut [Vec<f32>]) -> Result<(), AudioError> {
        let want = resampled_len(self.frames_in, self.from, self.to);
        if self.frames_out > want {
            return Err(resample_error(
                "cannot resample: more output than the input allows (internal error)",
            ));
        }
        while self.frames_out < want {
            self.process(out, want)?;
        }
        Ok(())
    }

    /// Resamples one block (the pending input, zero-padded), keeping the output
    /// frames below `limit`.
    fn process(&mut self, out: &mut [Vec<f32>], limit: usize) -> Result<(), AudioError> {
        let block_in = self.block_in;
        self.resamplers
            .par_iter_mut()
            .zip(self.pending.par_iter_mut())
            .zip(self.scratch.par_iter_mut())
            .try_for_each(|((r, input), output)| -> Result<(), String> {
                input.resize(block_in, 0.0);
                let frames_out = output.len();
                let adapter_in =
                    SequentialSlice::new(&input[..], 1, block_in).map_err(|e| full_message(&e))?;
                let mut adapter_out = SequentialSlice::new_mut(&mut output[..], 1, frames_out)
                    .map_err(|e| full_message(&e))?;
                r.process_into_buffer(&adapter_in, &mut adapter_out, None)
                    .map_err(|e| full_message(&e))?;
                input.clear();
                Ok(())
            })
            .map_err(|e| cannot_resample(self.from, self.to, &e))?;
        let produced = self.scratch.first().map_or(0, Vec::len);
        let skip = self.skip.min(produced);
        self.skip -= skip;
        let keep = (produced - skip).min(limit.saturating_sub(self.frames_out));
        for (o, s) in out.iter_mut().zip(&self.scratch) {
            o.extend_from_slice(&s[skip..skip + keep]);
        }
        self.frames_out += keep;
        Ok(())
    }
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
    fn non_finite_samples_resample_as_silence_whole_or_streamed() {
        // A fuzzed float WAV at 44132 Hz with NaN and 3.3e38 samples made rubato panic.
        let n = 5000;
        let mut left = sine(440.0, 44132, n, 0.0);
        left[100] = f32::NAN;
        left[2000] = f32::INFINITY;
        left[3000] = 3.3e38;
        let audio = Audio::new(44132, vec![left.clone(), left]).unwrap();
        let whole = resample(&audio, 44100).unwrap();
        let mut clean = audio.clone();
        for c in clean.channels.iter_mut() {
            c[100] = 0.0;
            c[2000] = 0.0;
            c[3000] = MAX_MAGNITUDE;
        }
        assert_eq!(whole, resample(&clean, 44100).unwrap());
        let mut r = StreamResampler::new(2, 44132, 44100).unwrap();
        let mut out = vec![Vec::new(); 2];
        r.push(&audio.channels, &mut out).unwrap();
        r.finish(&mut out).unwrap();
        assert_eq!(out, whole.channels);
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
    fn streaming_is_bit_identical_to_the_whole_signal() {
        for (from, to) in [
            (48000u32, 44100u32),
            (44100, 48000),
            (22050, 44100),
            (44100, 32000),
        ] {
            let block_in = fft_block_in(from, to);
            for n in [
                1,
                5,
                block_in - 1,
                block_in,
                3 * block_in,
                3 * block_in + 17,
                20011,
            ] {
                let audio = Audio::new(
                    from,
                    vec![sine(440.0, from, n, 0.3), sine(1234.5, from, n, 1.0)],
                )
                .unwrap();
                let want = resample(&audio, to).unwrap();
                for piece in [1usize, 1000, block_in, 1 << 20] {
                    let mut r = StreamResampler::new(2, from, to).unwrap();
                    let mut out = vec![Vec::new(); 2];
                    for start in (0..n).step_by(piece) {
                        let end = (start + piece).min(n);
                        let block: Vec<&[f32]> =
                            audio.channels.iter().map(|c| &c[start..end]).collect();
                        r.push(&block, &mut out).unwrap();
                    }
                    r.finish(&mut out).unwrap();
                    for (c, (got, want)) in out.iter().zip(&want.channels).enumerate() {
                        let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                        let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(got, want, "{from}->{to} n {n} pieces of {piece} ch {c}");
                    }
                }
            }
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
