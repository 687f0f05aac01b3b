//! Adam and AdamW exactly as `torch.optim` computes them, and `clip_grad_norm_`.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

use crate::config::MsstConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// L2 penalty added to the gradient (`torch.optim.Adam(weight_decay=..)`).
    Adam,
    /// Decoupled weight decay (`torch.optim.AdamW`).
    AdamW,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamSettings {
    /// `training.optimizer` and `training.lr`, with the `optimizer:` section's keyword arguments.
    pub fn from_config(config: &MsstConfig) -> Result<Self> {
        let kind = match config.training.optimizer.as_str() {
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::AdamW,
            other => {
                return Err(Error::Unsupported(format!(
                    "training.optimizer `{other}`: the trainer has `adam` and `adamw`"
                )))
            }
        };
        let o = &config.optimizer;
        let [beta1, beta2] = o.betas[..] else {
            return Err(Error::Unsupported(format!(
                "optimizer.betas needs two values, got {:?}",
                o.betas
            )));
        };
        Ok(Self {
            kind,
            lr: config.training.lr,
            beta1,
            beta2,
            eps: o.eps,
            // torch's defaults: Adam 0, AdamW 0.01.
            weight_decay: o.weight_decay.unwrap_or(match kind {
                OptimizerKind::Adam => 0.0,
                OptimizerKind::AdamW => 0.01,
            }),
        })
    }
}

/// Adam's running moments, one pair per trained tensor (`None` until its first gradient, as torch
/// creates state lazily), and the step counts.
#[derive(Debug)]
pub struct Adam {
    pub settings: AdamSettings,
    moments: Vec<Option<Moments>>,
}

#[derive(Debug, Clone)]
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    pub fn new(settings: AdamSettings, tensors: usize) -> Self {
        Self {
            settings,
            moments: vec![None; tensors],
        }
    }

    /// One step over `vars` with `grads` (same order); tensors without a gradient are skipped.
    pub fn step(&mut self, vars: &[&Var], grads: &[Option<Tensor>]) -> Result<()> {
        let AdamSettings {
            kind,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.settings;
        for ((var, grad), state) in vars.iter().zip(grads).zip(&mut self.moments) {
            let Some(grad) = grad else { continue };
            let mut param = var.as_detached_tensor();
            let mut grad = grad.detach();
            match kind {
                OptimizerKind::Adam if weight_decay != 0.0 => {
                    grad = (grad + (&param * weight_decay)?)?;
                }
                OptimizerKind::AdamW if weight_decay != 0.0 => {
                    param = (param * (1.0 - lr * weight_decay))?;
                }
                _ => {}
            }
            let m = match state {
                Some(m) => m,
                None => state.insert(Moments {
                    step: 0,
                    exp_avg: grad.zeros_like()?,
                    exp_avg_sq: grad.zeros_like()?,
                }),
            };
            m.step += 1;
            // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            m.exp_avg = (&m.exp_avg + ((&grad - &m.exp_avg)? * (1.0 - beta1))?)?;
            m.exp_avg_sq = ((&m.exp_avg_sq * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let bias1 = 1.0 - beta1.powi(m.step as i32);
            let bias2_sqrt = (1.0 - beta2.powi(m.step as i32)).sqrt();
            let denom = ((m.exp_avg_sq.sqrt()? / bias2_sqrt)? + eps)?;
            let update = ((&m.exp_avg / denom)? * (lr / bias1))?;
            var.set(&(param - update)?)?;
        }
        Ok(())
    }

    /// The moments and step counts by tensor index, for a checkpoint.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (i, m) in self.moments.iter().enumerate() {
            if let Some(m) = m {
                let cpu = candle_core::Device::Cpu;
                out.insert(format!("{i}.exp_avg"), m.exp_avg.to_device(&cpu)?);
                out.insert(format!("{i}.exp_avg_sq"), m.exp_avg_sq.to_device(&cpu)?);
                out.insert(format!("{i}.step"), Tensor::new(&[m.step as f64], &cpu)?);
            }
        }
        Ok(out)
    }

    /// Restores what [`state`](Self::state) saved.
    pub fn load_state(
        &mut self,
        saved: &BTreeMap<String, Tensor>,
        device: &candle_core::Device,
    ) -> Result<()> {
        for (i, slot) in self.moments.iter_mut().enumerate() {
            let get = |what: &str| saved.get(&format!("{i}.{what}"));
            *slot = match (get("exp_avg"), get("exp_avg_sq"), get("step")) {
                (Some(a), Some(b), Some(s)) => Some(Moments {
                    // Saved as f32 (exact below 2^24 steps).
                    step: s
                        .to_dtype(candle_core::DType::F64)?
                        .flatten_all()?
                        .to_vec1::<f64>()?[0] as u64,
                    exp_avg: a.to_device(device)?,
                    exp_avg_sq: b.to_device(device)?,
                }),
                _ => None,
            };
        }
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_norm_`: scales all gradients by `max_norm / (total + 1e-6)` when
/// that is below 1, `total` being the L2 norm over all of them. Returns `total`.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for g in grads.iter().flatten() {
        // torch takes each tensor's norm in f32, then the norm of the norms.
        let n = g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
        sq += f64::from(n) * f64::from(n);
    }
    let total = sq.sqrt() as f32;
    let coef = (max_norm as f32 / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = (&*g * f64::from(coef))?;
        }
    }
    Ok(f64::from(total))
}
