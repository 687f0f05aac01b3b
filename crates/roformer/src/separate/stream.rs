//! Streaming separation: MSST's `demix` (the rules are listed in [`super::demix`]), with optional
//! normalisation and test-time augmentation, over a track read block by block, its results given
//! away as soon as no later chunk touches them. Memory is bounded by the chunking (about
//! `chunk + batch * step` samples of input and of each output), not by the track length.
//!
//! The results are bit-identical to [`super::separate_track_with_tta`] on the whole track: the
//! same chunks go to the model in the same batches, every output sample receives the same
//! additions in the same order, and the normalisation, the augmentations and their undoing are
//! the same per-sample expressions. The track length must be known in advance (MSST pads the
//! end of the track with a reflection of its last samples, and the last chunk has no fade-out);
//! so must the normalisation, which depends on the whole track ([`super::MeanMeter`] measures it
//! in two earlier passes over the input).
//!
//! With `tta`, the three augmented passes run side by side, batch by batch, so their outputs are
//! complete at the same time and can be combined and given away together.

use super::demix::{chunk_window, reflect_index, ChunkPlan};
use super::{DemixOptions, Normalization, Progress, Separator};
use crate::error::{Error, Result};

/// Where the track comes from: planar frames, in order.
pub trait FrameSource {
    /// Appends the next frames, at most `max` (at least one unless the track has ended), to
    /// every channel of `out` (one `Vec` per channel); returns how many.
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize>;
}

/// Where the separated track goes: consecutive blocks, from the first frame to the last.
pub trait StemSink {
    /// `mix[channel]`: the input frames (as the source gave them) of this block;
    /// `stems[stem][channel]`: the separated frames, normalisation undone.
    fn write(&mut self, mix: &[&[f32]], stems: &[Vec<&[f32]>]) -> Result<()>;
}

/// How [`separate_stream`] separates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    pub demix: DemixOptions,
    /// MSST `inference.normalize`: the statistics of the whole track ([`super::MeanMeter`]).
    pub normalization: Option<Normalization>,
    /// MSST `--use_tta` ([`super::demix_tta`]).
    pub tta: bool,
}

/// Separates the `len` frames of `source` into `sink`; see the [module documentation](self).
/// Progress counts chunks (of all three passes with `tta`).
pub fn separate_stream(
    model: &dyn Separator,
    source: &mut dyn FrameSource,
    len: usize,
    options: &StreamOptions,
    sink: &mut dyn StemSink,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    Streamer::new(model, len, options)?.run(source, sink, progress)
}

/// The augmentations of [`super::demix_tta`], in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Plain,
    /// Channels in reverse order (in and out).
    Reversed,
    /// Polarity inverted (the output is subtracted).
    Inverted,
}

const TTA_PASSES: [Pass; 3] = [Pass::Plain, Pass::Reversed, Pass::Inverted];

struct Streamer<'a> {
    model: &'a dyn Separator,
    channels: usize,
    stems: usize,
    len: usize,
    chunk: usize,
    step: usize,
    batch_size: usize,
    /// Reflect padding at each end (`border` when the track is long enough, else 0).
    offset: usize,
    plan: ChunkPlan,
    /// Length of the padded track.
    total: usize,
    normalization: Option<Normalization>,
    passes: &'static [Pass],
    /// Windows of a middle, the first and the last chunk.
    windows: [Vec<f32>; 3],

    /// Input frames `[in_base, in_base + input[c].len())` of the track, as the source gave them.
    input: Vec<Vec<f32>>,
    in_base: usize,
    /// `sums[pass][stem][channel][t - out_base]`: `sum(window * out)` of the open frames.
    sums: Vec<Vec<Vec<Vec<f32>>>>,
    /// `sum(window)` of the open frames (the same for every pass).
    counter: Vec<f32>,
    /// First frame not given to the sink yet.
    out_base: usize,
    /// Finished output of one block: `[stem][channel][frame]`.
    block: Vec<Vec<Vec<f32>>>,
}

impl<'a> Streamer<'a> {
    fn new(model: &'a dyn Separator, len: usize, options: &StreamOptions) -> Result<Self> {
        let channels = model.channels();
        let stems = model.num_stems();
        let (chunk, batch_size) = (options.demix.chunk_size, options.demix.batch_size);
        let plan = ChunkPlan::new(&options.demix, len)?;
        let ChunkPlan {
            step, fade, offset, ..
        } = plan;
        let passes: &'static [Pass] = if options.tta {
            &TTA_PASSES
        } else {
            &TTA_PASSES[..1]
        };
        Ok(Self {
            model,
            channels,
            stems,
            len,
            chunk,
            step,
            batch_size,
            offset,
            plan,
            total: len + 2 * offset,
            normalization: options.normalization,
            passes,
            windows: [
                chunk_window(chunk, fade, false, false),
                chunk_window(chunk, fade, true, false),
                chunk_window(chunk, fade, false, true),
            ],
            input: vec![Vec::new(); channels],
            in_base: 0,
            sums: vec![vec![vec![Vec::new(); channels]; stems]; passes.len()],
            counter: Vec::new(),
            out_base: 0,
            block: vec![vec![Vec::new(); channels]; stems],
        })
    }

    fn in_end(&self) -> usize {
        self.in_base + self.input[0].len()
    }

    fn run(
        mut self,
        source: &mut dyn FrameSource,
        sink: &mut dyn StemSink,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let chunks = self.total.div_ceil(self.step);
        let chunks_total = chunks * self.passes.len();
        let mut done = 0;
        let mut first = 0;
        while first < chunks {
            let end = chunks.min(first + self.batch_size);
            let starts: Vec<usize> = (first..end).map(|i| i * self.step).collect();
            let last = starts[starts.len() - 1];
            // Track frames the batch reads: its own span, the head the first chunks reflect
            // (frames 1..=offset), and the tail the last ones reflect (below `len`).
            let need = (last + self.chunk)
                .saturating_sub(self.offset)
                .max(self.offset + 1)
                .min(self.len);
            self.read_until(source, need)?;
            // Track frames the batch adds to.
            let reach = (last + self.chunk.min(self.total - last))
                .saturating_sub(self.offset)
                .min(self.len);
            self.open_until(reach);
            for (p, &pass) in self.passes.iter().enumerate() {
                let batch_input = self.batch_input(&starts, pass);
                let out = self
                    .model
                    .separate_batch(&batch_input, starts.len(), self.chunk)?;
                drop(batch_input);
                self.accumulate(&starts, p, &out);
                done += starts.len();
                progress(Progress {
                    chunks_done: done,
                    chunks_total,
                });
            }
            first = end;
            // Frames no later chunk touches are final.
            let next = (first < chunks).then_some(first * self.step);
            let ready = next.map_or(self.len, |s| s.saturating_sub(self.offset).min(self.len));
            self.open_until(ready);
            self.emit(ready, sink)?;
            // Input still needed: the mix of the frames not given away yet, the next chunks'
            // span, and the tail the last chunks reflect.
            let keep = match next {
                Some(s) => self
                    .out_base
                    .min(s.saturating_sub(self.offset))
                    .min(self.len.saturating_sub(self.offset + 1)),
                None => self.len,
            };
            let drop_n = keep.saturating_sub(self.in_base).min(self.input[0].len());
            for ch in &mut self.input {
                ch.drain(..drop_n);
            }
            self.in_base += drop_n;
        }
        Ok(())
    }

    /// Reads from `source` until the input holds the track frames below `end`.
    fn read_until(&mut self, source: &mut dyn FrameSource, end: usize) -> Result<()> {
        while self.in_end() < end {
            let want = end - self.in_end();
            let got = source.read(&mut self.input, want)?;
            if got == 0 || self.input.iter().any(|c| c.len() != self.input[0].len()) {
                return Err(Error::TrackEnded {
                    read: self.in_end(),
                    expected: self.len,
                });
            }
        }
        Ok(())
    }

    /// Input sample of track frame `i`, channel `c`, as the model sees it in `pass`.
    fn value(&self, pass: Pass, c: usize, i: usize) -> f32 {
        let c = match pass {
            Pass::Reversed => self.channels - 1 - c,
            _ => c,
        };
        let x = self.input[c][i - self.in_base];
        // Exactly `Normalization::apply`, then `-x` as `demix_tta` does.
        let x = match &self.normalization {
            Some(n) => (x - n.mean) / n.std,
            None => x,
        };
        match pass {
            Pass::Inverted => -x,
            _ => x,
        }
    }

    /// The model input of the chunks at `starts` (padded track positions), as `demix` builds it.
    fn batch_input(&self, starts: &[usize], pass: Pass) -> Vec<f32> {
        let chunk = self.chunk;
        let mut input = Vec::with_capacity(starts.len() * self.channels * chunk);
        for &start in starts {
            let seg = chunk.min(self.total - start);
            for c in 0..self.channels {
                let base = input.len();
                input.extend((start..start + seg).map(|p| {
                    let i = reflect_index(p as isize - self.offset as isize, self.len);
                    self.value(pass, c, i)
                }));
                self.plan.pad_tail(&mut input, base, seg, chunk);
            }
        }
        input
    }

    /// Makes the open span reach track frame `end` (exclusive).
    fn open_until(&mut self, end: usize) {
        let n = end.saturating_sub(self.out_base);
        if self.counter.len() < n {
            self.counter.resize(n, 0.0);
            for ch in self.sums.iter_mut().flatten().flatten() {
                ch.resize(n, 0.0);
            }
        }
    }

    /// Adds the windowed output of pass `p` (the batch at `starts`) to the open span.
    fn accumulate(&mut self, starts: &[usize], p: usize, out: &[f32]) {
        let (chunk, offset, len, base) = (self.chunk, self.offset, self.len, self.out_base);
        for (j, &start) in starts.iter().enumerate() {
            let seg = chunk.min(self.total - start);
            let window = if start == 0 {
                &self.windows[1]
            } else if start + self.step >= self.total {
                &self.windows[2]
            } else {
                &self.windows[0]
            };
            let lo = offset.saturating_sub(start);
            let hi = seg.min((offset + len).saturating_sub(start));
            if p == 0 && lo < hi {
                let counter =
                    &mut self.counter[start + lo - offset - base..start + hi - offset - base];
                for (n, w) in counter.iter_mut().zip(&window[lo..hi]) {
                    *n += w;
                }
            }
            for (n, stem) in self.sums[p].iter_mut().enumerate() {
                for (c, dst) in stem.iter_mut().enumerate() {
                    let src = &out[((j * self.stems + n) * self.channels + c) * chunk..][..chunk];
                    for k in lo..hi {
                        dst[start + k - offset - base] += src[k] * window[k];
                    }
                }
            }
        }
    }

    /// Finishes the open frames below `end` and gives them to the sink.
    fn emit(&mut self, end: usize, sink: &mut dyn StemSink) -> Result<()> {
        let n = end.saturating_sub(self.out_base);
        if n == 0 {
            return Ok(());
        }
        let channels = self.channels;
        let mut block = std::mem::take(&mut self.block);
        for (s, stem) in block.iter_mut().enumerate() {
            for (c, dst) in stem.iter_mut().enumerate() {
                dst.clear();
                dst.extend((0..n).map(|i| {
                    // `demix`'s final division, per pass.
                    let finish = |p: usize, c: usize| {
                        let v = self.sums[p][s][c][i] / self.counter[i];
                        if v.is_nan() {
                            0.0
                        } else {
                            v
                        }
                    };
                    let mut x = finish(0, c);
                    if self.passes.len() == 3 {
                        // `demix_tta`: (y(x) + rev(y(rev(x))) - y(-x)) / 3, in its order.
                        x += finish(1, channels - 1 - c);
                        x -= finish(2, c);
                        x /= 3.0;
                    }
                    match &self.normalization {
                        // `Normalization::invert`
                        Some(norm) => x * norm.std + norm.mean,
                        None => x,
                    }
                }));
            }
        }
        let from = self.out_base - self.in_base;
        let mix: Vec<&[f32]> = self.input.iter().map(|c| &c[from..from + n]).collect();
        let stems: Vec<Vec<&[f32]>> = block
            .iter()
            .map(|stem| stem.iter().map(Vec::as_slice).collect())
            .collect();
        let written = sink.write(&mix, &stems);
        drop((mix, stems));
        self.block = block;
        written?;
        self.counter.drain(..n);
        for ch in self.sums.iter_mut().flatten().flatten() {
            ch.drain(..n);
        }
        self.out_base = end;
        Ok(())
    }
}

/// A [`FrameSource`] over planar channels in memory, read `block` frames at a time.
pub struct SliceSource<'a> {
    channels: &'a [Vec<f32>],
    pos: usize,
    block: usize,
}

impl<'a> SliceSource<'a> {
    pub fn new(channels: &'a [Vec<f32>], block: usize) -> Self {
        Self {
            channels,
            pos: 0,
            block: block.max(1),
        }
    }
}

impl FrameSource for SliceSource<'_> {
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize> {
        let len = self.channels.first().map_or(0, Vec::len);
        let n = max.min(self.block).min(len - self.pos);
        for (dst, src) in out.iter_mut().zip(self.channels) {
            dst.extend_from_slice(&src[self.pos..self.pos + n]);
        }
        self.pos += n;
        Ok(n)
    }
}

/// A [`StemSink`] that keeps everything: `[stem][channel][frame]`, and the mix it was given.
#[derive(Debug, Default)]
pub struct CollectSink {
    pub mix: Vec<Vec<f32>>,
    pub stems: Vec<Vec<Vec<f32>>>,
}

impl StemSink for CollectSink {
    fn write(&mut self, mix: &[&[f32]], stems: &[Vec<&[f32]>]) -> Result<()> {
        self.mix.resize(mix.len(), Vec::new());
        for (dst, src) in self.mix.iter_mut().zip(mix) {
            dst.extend_from_slice(src);
        }
        self.stems.resize(stems.len(), vec![Vec::new(); mix.len()]);
        for (dst, src) in self.stems.iter_mut().zip(stems) {
            dst.resize(src.len(), Vec::new());
            for (d, s) in dst.iter_mut().zip(src) {
                d.extend_from_slice(s);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::separate_track_with_tta;
    use super::*;

    /// A stereo separator with two stems, non-linear and channel-asymmetric, that also sees
    /// where a chunk is: any mix-up of chunks, passes or channels shows in the output.
    struct Mangler;
    impl Separator for Mangler {
        fn channels(&self) -> usize {
            2
        }
        fn num_stems(&self) -> usize {
            2
        }
        fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
            let mut out = Vec::with_capacity(audio.len() * 2);
            for b in 0..batch {
                let (l, r) = audio[b * 2 * len..(b + 1) * 2 * len].split_at(len);
                let bias = l.iter().take(7).sum::<f32>() * 0.01;
                out.extend(l.iter().zip(r).map(|(l, r)| l * l - 0.3 * r + bias));
                out.extend(r.iter().enumerate().map(|(k, r)| r * 0.5 + k as f32 * 1e-4));
                out.extend(l.iter().zip(r).map(|(l, r)| (l - r).sin()));
                out.extend(r.iter().map(|r| r * r * r + 0.1));
            }
            Ok(out)
        }
    }

    fn track(len: usize) -> Vec<Vec<f32>> {
        (0..2)
            .map(|c| {
                (0..len)
                    .map(|i| (((i * 37 + c * 11) % 101) as f32 / 50.0 - 1.0) * 0.7 + 0.05)
                    .collect()
            })
            .collect()
    }

    fn bits(x: &[Vec<Vec<f32>>]) -> Vec<u32> {
        x.iter().flatten().flatten().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn bit_identical_to_the_whole_track_path() {
        // Short tracks (no padding, a single short chunk), tracks just over 2 * border, long
        // ones; overlaps 1..5; batches 1..4; read blocks smaller and larger than a chunk.
        let cases = [
            (30, 100, 2, 1),
            (60, 100, 4, 3),
            (151, 100, 2, 2),
            (152, 120, 4, 1),
            (1000, 120, 4, 2),
            (1003, 100, 1, 3),
            (2500, 128, 5, 4),
            (777, 64, 3, 1),
        ];
        for (len, chunk, overlap, batch) in cases {
            let mix = track(len);
            let demix = DemixOptions {
                chunk_size: chunk,
                num_overlap: overlap,
                batch_size: batch,
                mode: Default::default(),
            };
            for normalize in [false, true] {
                for tta in [false, true] {
                    let want = separate_track_with_tta(
                        &Mangler,
                        &mix,
                        &demix,
                        normalize,
                        tta,
                        &mut |_| {},
                    )
                    .unwrap();
                    let options = StreamOptions {
                        demix,
                        normalization: normalize.then(|| Normalization::measure(&mix)),
                        tta,
                    };
                    for block in [1, 17, 4096] {
                        let mut sink = CollectSink::default();
                        let mut last = None;
                        separate_stream(
                            &Mangler,
                            &mut SliceSource::new(&mix, block),
                            len,
                            &options,
                            &mut sink,
                            &mut |p| last = Some(p),
                        )
                        .unwrap();
                        let what = format!(
                            "len {len} chunk {chunk} overlap {overlap} batch {batch} \
                             normalize {normalize} tta {tta} block {block}"
                        );
                        assert_eq!(sink.mix, mix, "{what}");
                        assert_eq!(bits(&sink.stems), bits(&want), "{what}");
                        let last = last.unwrap();
                        assert_eq!(last.chunks_done, last.chunks_total, "{what}");
                    }
                }
            }
        }
    }

    /// Counts what the streamer holds at once through a sink that checks block sizes.
    struct SizeSink {
        frames: usize,
        largest: usize,
    }
    impl StemSink for SizeSink {
        fn write(&mut self, mix: &[&[f32]], stems: &[Vec<&[f32]>]) -> Result<()> {
            assert_eq!(stems.len(), 2);
            self.frames += mix[0].len();
            self.largest = self.largest.max(mix[0].len());
            Ok(())
        }
    }

    #[test]
    fn output_comes_in_blocks_of_about_a_batch() {
        let len = 100_000;
        let mix = track(len);
        let options = StreamOptions {
            demix: DemixOptions {
                chunk_size: 256,
                num_overlap: 4,
                batch_size: 3,
                mode: Default::default(),
            },
            normalization: None,
            tta: false,
        };
        let mut sink = SizeSink {
            frames: 0,
            largest: 0,
        };
        separate_stream(
            &Mangler,
            &mut SliceSource::new(&mix, 1000),
            len,
            &options,
            &mut sink,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(sink.frames, len);
        // 3 chunks of step 64 per batch; the final block also holds the end padding's share.
        assert!(sink.largest <= 256 + 3 * 64, "{}", sink.largest);
    }

    #[test]
    fn a_source_that_ends_early_is_an_error() {
        let mix = track(500);
        let options = StreamOptions {
            demix: DemixOptions {
                chunk_size: 100,
                num_overlap: 2,
                batch_size: 1,
                mode: Default::default(),
            },
            normalization: None,
            tta: false,
        };
        let err = separate_stream(
            &Mangler,
            &mut SliceSource::new(&mix, 64),
            600,
            &options,
            &mut CollectSink::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("500 of 600"), "{err}");
    }
}
