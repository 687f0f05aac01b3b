//! Training and fine-tuning: gradients through the network, the losses, the optimiser, and the
//! training loop with checkpoints and validation.

pub mod augment;
pub mod data;
pub mod ema;
pub mod gradients;
pub mod loss;
pub mod optimizer;
pub mod params;
pub mod plateau;
pub mod trainer;
