//! The weights being trained: every floating-point tensor of the state dict as a candle `Var`
//! (except the rotary frequencies, which PyTorch keeps with `requires_grad=False`), and the
//! network rebuilt from them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};

use crate::config::MsstConfig;
use crate::error::Result;
use crate::model::{backend, Network};
use crate::weights::StateDict;

/// Named tensors in a fixed (sorted) order; the trainable ones are `Var`s on the training device.
#[derive(Debug)]
pub struct Parameters {
    names: Vec<String>,
    /// `Some` for trained tensors, `None` for frozen ones (kept in `frozen`).
    vars: Vec<Option<Var>>,
    frozen: BTreeMap<String, Tensor>,
    device: Device,
}

/// Tensors PyTorch registers as parameters without gradients.
fn is_frozen(name: &str, t: &Tensor) -> bool {
    name.ends_with("rotary_embed.freqs") || t.dtype() != DType::F32
}

impl Parameters {
    /// Takes every tensor of `state` (a checkpoint, or [`initial_state`]).
    pub fn new(state: BTreeMap<String, Tensor>, device: &Device) -> Result<Self> {
        let mut names = Vec::with_capacity(state.len());
        let mut vars = Vec::with_capacity(state.len());
        let mut frozen = BTreeMap::new();
        for (name, t) in state {
            if is_frozen(&name, &t) {
                frozen.insert(name.clone(), t);
                vars.push(None);
            } else {
                vars.push(Some(Var::from_tensor(&t.to_device(device)?)?));
            }
            names.push(name);
        }
        Ok(Self {
            names,
            vars,
            frozen,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trained tensors, in a fixed order (the optimiser's state follows it).
    pub fn trainable(&self) -> impl Iterator<Item = (&str, &Var)> + '_ {
        self.names
            .iter()
            .zip(&self.vars)
            .filter_map(|(n, v)| v.as_ref().map(|v| (n.as_str(), v)))
    }

    /// Scalars that are trained.
    pub fn num_trainable(&self) -> usize {
        self.trainable().map(|(_, v)| v.elem_count()).sum()
    }

    /// The network over the current values; its outputs carry the gradient graph back to the
    /// `Var`s. Rebuilt after every optimiser step, since loading derives a few tensors.
    pub fn network(&self, config: &MsstConfig) -> Result<Network> {
        let mut state = StateDict::new(
            self.tensors(|v| Ok(v.as_tensor().clone()))?,
            HashMap::new(),
            PathBuf::from("<weights being trained>"),
        );
        let network = Network::load(config, &mut state, &self.device, &backend::Reference)?;
        state.finish()?;
        Ok(network)
    }

    /// The current values, detached, on the CPU: what checkpoints store.
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        self.tensors(|v| Ok(v.as_detached_tensor().to_device(&Device::Cpu)?))
    }

    fn tensors(
        &self,
        trained: impl Fn(&Var) -> Result<Tensor>,
    ) -> Result<BTreeMap<String, Tensor>> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(name, var)| {
                let t = match var {
                    Some(v) => trained(v)?,
                    None => self.frozen[name].clone(),
                };
                Ok((name.clone(), t))
            })
            .collect()
    }

    /// Overwrites the trained values with `values` (same names and shapes), e.g. on resume.
    pub fn load_values(&self, values: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.trainable() {
            let t = values.get(name).ok_or_else(|| {
                crate::error::Error::Unsupported(format!("the saved state has no tensor `{name}`"))
            })?;
            var.set(&t.to_device(&self.device)?)?;
        }
        Ok(())
    }
}

/// Fresh weights for `config`: PyTorch-like initial values (see `weights::synthetic`),
/// deterministic from `seed`.
pub fn initial_state(config: &MsstConfig, seed: u64) -> Result<BTreeMap<String, Tensor>> {
    let mut state = StateDict::synthetic_recorded(seed);
    Network::load(config, &mut state, &Device::Cpu, &backend::Reference)?;
    Ok(state.take_made())
}
