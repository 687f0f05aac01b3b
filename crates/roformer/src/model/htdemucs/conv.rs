//! The convolutions of HT Demucs with PyTorch's weight layouts: `Conv1d` over time, the
//! `Conv2d` with a `[k, 1]` kernel that runs along the frequency axis only, square `Conv2d`
//! (the decoder's context rewrite), and the transposed twins of the first two.

use candle_core::{Device, Result as CResult, Tensor};

use crate::error::Result;
use crate::weights::WeightsView;

/// What a convolution slides over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    /// `[b, c, t]`, `Conv1d`.
    Time,
    /// `[b, c, f, t]` with a `[k, 1]` kernel: frequency only.
    Freq,
    /// `[b, c, f, t]` with a `[k, k]` kernel.
    Square,
}

#[derive(Debug, Clone)]
pub struct Conv {
    /// `[out, in, k]` (`[out, in, k, k]` for `Square`).
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) axis: Axis,
    pub(crate) stride: usize,
    pub(crate) padding: usize,
    pub(crate) dilation: usize,
}

impl Conv {
    /// `nn.Conv1d(cin, cout, k, stride, padding, dilation)`.
    #[allow(clippy::too_many_arguments)]
    pub fn time(
        vb: &mut WeightsView<'_>,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        device: &Device,
    ) -> Result<Self> {
        let weight = vb.take("weight", &[cout, cin, k])?.to_device(device)?;
        Self::with_bias(
            vb,
            weight,
            cout,
            Axis::Time,
            stride,
            padding,
            dilation,
            device,
        )
    }

    /// `nn.Conv2d(cin, cout, [k, 1], [stride, 1], [padding, 0])`.
    pub fn freq(
        vb: &mut WeightsView<'_>,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        device: &Device,
    ) -> Result<Self> {
        let weight = vb
            .take("weight", &[cout, cin, k, 1])?
            .reshape((cout, cin, k))?
            .to_device(device)?;
        Self::with_bias(vb, weight, cout, Axis::Freq, stride, padding, 1, device)
    }

    /// `nn.Conv2d(cin, cout, k, 1, padding)`.
    pub fn square(
        vb: &mut WeightsView<'_>,
        cin: usize,
        cout: usize,
        k: usize,
        padding: usize,
        device: &Device,
    ) -> Result<Self> {
        let weight = vb.take("weight", &[cout, cin, k, k])?.to_device(device)?;
        Self::with_bias(vb, weight, cout, Axis::Square, 1, padding, 1, device)
    }

    #[allow(clippy::too_many_arguments)]
    fn with_bias(
        vb: &mut WeightsView<'_>,
        weight: Tensor,
        cout: usize,
        axis: Axis,
        stride: usize,
        padding: usize,
        dilation: usize,
        device: &Device,
    ) -> Result<Self> {
        let bias = vb.take("bias", &[cout])?.to_device(device)?;
        Ok(Self {
            weight,
            bias,
            axis,
            stride,
            padding,
            dilation,
        })
    }

    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self.axis {
            Axis::Time => {
                let y = x.conv1d(&self.weight, self.padding, self.stride, self.dilation, 1)?;
                add_channel_bias(&y, &self.bias)
            }
            Axis::Square => {
                let y = x.conv2d(&self.weight, self.padding, self.stride, self.dilation, 1)?;
                add_channel_bias(&y, &self.bias)
            }
            Axis::Freq => along_freq(x, |rows| {
                rows.conv1d(&self.weight, self.padding, self.stride, 1, 1)
            })
            .and_then(|y| add_channel_bias(&y, &self.bias)),
        }
    }
}

/// `nn.ConvTranspose1d(cin, cout, k, stride)` or `nn.ConvTranspose2d(cin, cout, [k, 1],
/// [stride, 1])`, without padding (the decoder layers trim their output themselves).
///
/// Computed as one matrix product and an overlap-add of its `k / stride` phases rather than
/// with candle's `conv_transpose1d`, which (candle 0.11.1, CPU) gives wrong values for every
/// batch item after the first.
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    /// `[in, out * taps]`: the kernel zero-padded to `taps = phases * stride`, grouped by
    /// output channel.
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) freq: bool,
    pub(crate) stride: usize,
    pub(crate) kernel: usize,
    pub(crate) cout: usize,
}

impl ConvTranspose {
    pub fn load(
        vb: &mut WeightsView<'_>,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        freq: bool,
        device: &Device,
    ) -> Result<Self> {
        let weight = if freq {
            vb.take("weight", &[cin, cout, k, 1])?
                .reshape((cin, cout, k))?
        } else {
            vb.take("weight", &[cin, cout, k])?
        };
        let taps = k.div_ceil(stride) * stride;
        let weight = weight
            .pad_with_zeros(2, 0, taps - k)?
            .reshape((cin, cout * taps))?
            .to_device(device)?;
        let bias = vb.take("bias", &[cout])?.to_device(device)?;
        Ok(Self {
            weight,
            bias,
            freq,
            stride,
            kernel: k,
            cout,
        })
    }

    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = if self.freq {
            along_freq(x, |rows| self.transposed(rows))?
        } else {
            self.transposed(x)?
        };
        add_channel_bias(&y, &self.bias)
    }

    /// `[b, cin, l]` to `[b, cout, (l - 1) * stride + kernel]`.
    fn transposed(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, cin, l) = x.dims3()?;
        let (s, cout) = (self.stride, self.cout);
        let phases = self.kernel.div_ceil(s);
        // [b * l, cin] x [cin, cout * phases * s]: every input step's contribution.
        let m = x
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * l, cin))?
            .matmul(&self.weight)?
            .reshape((b, l, cout, phases, s))?;
        let mut y: Option<Tensor> = None;
        for q in 0..phases {
            // Phase q lands `q * stride` samples after the input step's start.
            let part = m
                .narrow(3, q, 1)?
                .squeeze(3)?
                .permute((0, 2, 1, 3))?
                .contiguous()?
                .reshape((b, cout, l * s))?
                .pad_with_zeros(2, q * s, (phases - 1 - q) * s)?;
            y = Some(match y {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        let y = y.ok_or_else(|| candle_core::Error::Msg("empty transposed convolution".into()))?;
        y.narrow(2, 0, (l - 1) * s + self.kernel)
    }
}

/// Runs a 1-D operation along the frequency axis of `[b, c, f, t]`: every time step becomes a
/// row of `[b * t, c, f]`.
fn along_freq(x: &Tensor, op: impl Fn(&Tensor) -> CResult<Tensor>) -> CResult<Tensor> {
    let (b, c, f, t) = x.dims4()?;
    let rows = x
        .permute((0, 3, 1, 2))?
        .contiguous()?
        .reshape((b * t, c, f))?;
    let y = op(&rows)?;
    let (_, cout, fout) = y.dims3()?;
    y.reshape((b, t, cout, fout))?
        .permute((0, 2, 3, 1))?
        .contiguous()
}

/// `y + bias` with the bias on axis 1.
fn add_channel_bias(y: &Tensor, bias: &Tensor) -> CResult<Tensor> {
    let mut shape = vec![1; y.rank()];
    shape[1] = bias.dims1()?;
    y.broadcast_add(&bias.reshape(shape)?)
}
