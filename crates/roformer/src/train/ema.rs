//! An exponential moving average of the weights (`torch.optim.swa_utils.AveragedModel` with
//! `get_ema_multi_avg_fn(decay)`), which MSST validates and saves when `ema_momentum > 0`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use super::params::Parameters;
use crate::error::Result;

#[derive(Debug)]
pub struct Ema {
    decay: f64,
    /// The averages of the trained tensors, by name (CPU).
    averages: BTreeMap<String, Tensor>,
    /// `AveragedModel.n_averaged`: the first update copies the weights.
    updates: u64,
}

impl Ema {
    /// Starts from the current weights, as `AveragedModel` deep-copies the model.
    pub fn new(decay: f64, params: &Parameters) -> Result<Self> {
        Ok(Self {
            decay,
            averages: params.snapshot()?,
            updates: 0,
        })
    }

    /// After an optimiser step: `ema += (1 - decay) * (w - ema)` (the first time, `ema = w`).
    pub fn update(&mut self, params: &Parameters) -> Result<()> {
        for (name, var) in params.trainable() {
            let w = var.as_detached_tensor().to_device(&Device::Cpu)?;
            let avg = match self.averages.get(name) {
                Some(avg) if self.updates > 0 => (avg + ((&w - avg)? * (1.0 - self.decay))?)?,
                _ => w,
            };
            self.averages.insert(name.to_string(), avg);
        }
        self.updates += 1;
        Ok(())
    }

    /// The averaged weights (frozen tensors as they are).
    pub fn weights(&self) -> &BTreeMap<String, Tensor> {
        &self.averages
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Restores a saved average.
    pub fn restore(decay: f64, averages: BTreeMap<String, Tensor>, updates: u64) -> Self {
        Self {
            decay,
            averages,
            updates,
        }
    }
}
