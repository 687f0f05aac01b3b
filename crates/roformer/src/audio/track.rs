//! A track read block by block at a model's sample rate and channel count: the streaming form of
//! [`decode_file`](super::decode_file), [`resample`](super::resample) and
//! [`to_channels`](super::to_channels), with bit-identical samples.

use std::path::Path;

use super::decode::Decoder;
use super::resample::StreamResampler;
use super::{to_channels, Audio, AudioError};

/// A track read block by block at a model's sample rate and channel count:
/// the streaming form of [`decode_file`](super::decode_file),
/// [`resample`](super::resample) and [`to_channels`](super::to_channels), with
/// bit-identical samples.
pub struct TrackReader {
    decoder: Decoder,
    rate: u32,
    channels: usize,
    resampler: Option<StreamResampler>,
    decoded: Vec<Vec<f32>>,
    /// Frames of the last block not handed out by [`read`](Self::read) yet: `ready[c][pos..]`.
    ready: Vec<Vec<f32>>,
    pos: usize,
    ended: bool,
}

impl TrackReader {
    /// Opens `path`, to be read at `rate` Hz with `channels` channels.
    pub fn open(path: &Path, rate: u32, channels: usize) -> Result<Self, AudioError> {
        Ok(Self {
            decoder: Decoder::open(path)?,
            rate,
            channels,
            resampler: None,
            decoded: Vec::new(),
            ready: Vec::new(),
            pos: 0,
            ended: false,
        })
    }

    /// Leaves the decoder's warnings out (for a pass after the first).
    pub fn without_warnings(mut self) -> Self {
        self.decoder = self.decoder.without_warnings();
        self
    }

    /// The next frames (replacing `block`, one `Vec` per channel); `false` at the end.
    pub fn next_block(&mut self, block: &mut Vec<Vec<f32>>) -> Result<bool, AudioError> {
        while !self.ended {
            let more = self.decoder.next_block(&mut self.decoded)?;
            let from = self.decoder.sample_rate();
            let frames = if from == self.rate {
                if !more {
                    self.ended = true;
                    break;
                }
                std::mem::take(&mut self.decoded)
            } else {
                if self.resampler.is_none() {
                    let channels = self.decoder.channels();
                    self.resampler = Some(StreamResampler::new(channels, from, self.rate)?);
                }
                let resampler = self.resampler.as_mut().expect("created above");
                let mut out = vec![Vec::new(); self.decoder.channels()];
                if more {
                    resampler.push(&self.decoded, &mut out)?;
                } else {
                    self.ended = true;
                    resampler.finish(&mut out)?;
                }
                out
            };
            if frames.first().is_some_and(|c| !c.is_empty()) {
                let audio = Audio {
                    sample_rate: self.rate,
                    channels: frames,
                };
                *block = to_channels(audio, self.channels).0.channels;
                return Ok(true);
            }
        }
        block.clear();
        Ok(false)
    }

    /// Appends at most `max` frames to every channel of `out`; returns how many (0 at the end).
    pub fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize, AudioError> {
        while self.ready.first().is_none_or(|c| self.pos == c.len()) {
            let mut ready = std::mem::take(&mut self.ready);
            let more = self.next_block(&mut ready)?;
            self.ready = ready;
            self.pos = 0;
            if !more {
                return Ok(0);
            }
        }
        let n = max.min(self.ready[0].len() - self.pos);
        for (dst, src) in out.iter_mut().zip(&self.ready) {
            dst.extend_from_slice(&src[self.pos..self.pos + n]);
        }
        self.pos += n;
        Ok(n)
    }

    /// Sample rate of the file (0 before the first block).
    pub fn file_rate(&self) -> u32 {
        self.decoder.sample_rate()
    }

    /// Channels of the file (0 before the first block).
    pub fn file_channels(&self) -> usize {
        self.decoder.channels()
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::tests::{fixture, TestDir};
    use super::super::{decode_file, resample};
    use super::*;

    fn bits(x: &[Vec<f32>]) -> Vec<Vec<u32>> {
        x.iter()
            .map(|c| c.iter().map(|v| v.to_bits()).collect())
            .collect()
    }

    /// decode, resample and adapt in one go, as `separate` did before streaming.
    fn whole(path: &Path, rate: u32, channels: usize) -> Vec<Vec<f32>> {
        let audio = decode_file(path).unwrap();
        let audio = if audio.sample_rate != rate {
            resample(&audio, rate).unwrap()
        } else {
            audio
        };
        to_channels(audio, channels).0.channels
    }

    fn streamed(path: &Path, rate: u32, channels: usize, max: usize) -> Vec<Vec<f32>> {
        let mut reader = TrackReader::open(path, rate, channels).unwrap();
        let mut out = vec![Vec::new(); channels];
        while reader.read(&mut out, max).unwrap() > 0 {}
        out
    }

    #[test]
    fn streamed_track_is_bit_identical_to_the_whole_file_path() {
        let dir = TestDir::new("track");
        // A WAV long enough for many resampler blocks, in 6 channels (downmixed) and mono.
        let n = 44100 + 4321;
        for file_channels in [1u16, 2, 6] {
            let path = dir.path(&format!("in{file_channels}.wav"));
            let spec = hound::WavSpec {
                channels: file_channels,
                sample_rate: 44100,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for i in 0..n * file_channels as usize {
                w.write_sample(((i * 7919 % 20011) as i32 - 10005) as i16)
                    .unwrap();
            }
            w.finalize().unwrap();
            for (rate, channels) in [(44100, 2), (48000, 2), (32000, 1), (22050, 2)] {
                let want = whole(&path, rate, channels);
                for max in [1000, 1 << 20] {
                    let got = streamed(&path, rate, channels, max);
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{file_channels} ch -> {rate} Hz {channels} ch, reads of {max}"
                    );
                }
            }
        }
        // Lossy input, resampled.
        for name in ["sine.mp3", "sine.ogg"] {
            let path = fixture(name);
            let want = whole(&path, 48000, 2);
            assert_eq!(bits(&streamed(&path, 48000, 2, 777)), bits(&want), "{name}");
        }
    }
}
