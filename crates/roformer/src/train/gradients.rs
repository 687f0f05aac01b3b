//! One forward and backward pass: the loss of a batch and the gradient of every trained tensor.
//!
//! The network (band split, transformers, mask heads) runs in candle with autograd; the spectral
//! ends (STFT of the mixture, complex masking, iSTFT) and the loss run on the CPU with their
//! gradients written out by hand (`dsp::stft`'s adjoints, `spectral::reconstruct_adjoint`,
//! `train::loss`). The two meet at the masks: the network's gradient comes from backpropagating
//! `sum(masks * dL/dmasks)` with the hand-computed `dL/dmasks` held constant.

use candle_core::Tensor;

use super::loss::Loss;
use super::params::Parameters;
use crate::audio::AudioError;
use crate::error::{Error, Result};
use crate::model::spectral::{analyse_batch, reconstruct, reconstruct_adjoint, Reconstruction};
use crate::model::Network;

/// A batch of training examples: `mixture` is `[b][channel][len]`, `targets` is
/// `[b][stem][channel][len]` for the model's stems, flattened.
#[derive(Debug, Clone, Copy)]
pub struct Examples<'a> {
    pub mixture: &'a [f32],
    pub targets: &'a [f32],
    pub batch: usize,
    pub len: usize,
}

/// The loss of one batch and the gradients of the trained tensors (in [`Parameters::trainable`]
/// order), each multiplied by `scale` (1 / gradient-accumulation steps, as MSST divides the loss).
/// A tensor the loss does not reach gets `None`, as torch leaves its `.grad` unset (and the
/// optimiser then skips it).
pub fn loss_and_gradients(
    network: &Network,
    params: &Parameters,
    loss: &Loss,
    examples: Examples<'_>,
    scale: f64,
) -> Result<(f64, Vec<Option<Tensor>>)> {
    let Examples {
        mixture,
        targets,
        batch,
        len,
    } = examples;
    let backbone = network.backbone();
    let (stems, channels) = (backbone.num_stems(), backbone.channels());
    if targets.len() != batch * stems * channels * len {
        return Err(Error::Audio(AudioError::Other(format!(
            "expected {batch} x {stems} x {channels} x {len} target samples, got {}",
            targets.len()
        ))));
    }
    let (specs, x) = analyse_batch(
        &backbone.stft,
        mixture,
        batch,
        channels,
        len,
        &backbone.device,
    )?;
    let raw = network.raw_masks(&x)?;
    let raw_values = crate::model::spectral::to_cpu_vec(&raw)?;
    let masks = network.bin_masks(raw_values);
    let rec = Reconstruction {
        stems,
        channels,
        zero_dc: backbone.config.zero_dc,
        istft_len: network.istft_len(len),
    };
    let estimate = reconstruct(&backbone.stft, &specs, &masks, batch, rec)?;
    // MSST crops the target to the reconstruction (`target[..., :recon.shape[-1]]`).
    let target: Vec<Vec<f32>> = targets
        .chunks(len)
        .map(|t| t[..rec.istft_len].to_vec())
        .collect();
    let (value, grad_audio) = loss.value_and_grad(&estimate, &target, stems, channels)?;
    let grad_masks = reconstruct_adjoint(&backbone.stft, &specs, &grad_audio, batch, rec)?;
    let grad_raw = network.bin_masks_adjoint(grad_masks);
    let grad_raw = Tensor::from_vec(grad_raw, raw.shape(), raw.device())?;
    let surrogate = (raw * grad_raw)?.sum_all()?;
    let store = surrogate.backward()?;
    let grads = params
        .trainable()
        .map(|(_, var)| {
            store
                .get(var.as_tensor())
                .map(|g| Ok((g * scale)?))
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((value, grads))
}
