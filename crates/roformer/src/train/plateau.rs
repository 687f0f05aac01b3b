//! `torch.optim.lr_scheduler.ReduceLROnPlateau` in mode `max` (the validation SDR should rise), as
//! MSST builds it: `patience` and `factor` from the config, torch's defaults otherwise (relative
//! threshold 1e-4, no cooldown, no floor).

#[derive(Debug, Clone, PartialEq)]
pub struct ReduceLrOnPlateau {
    pub patience: usize,
    pub factor: f64,
    pub best: f64,
    pub bad_epochs: usize,
}

const THRESHOLD: f64 = 1e-4;
/// torch ignores reductions smaller than this.
const MIN_CHANGE: f64 = 1e-8;

impl ReduceLrOnPlateau {
    pub fn new(patience: usize, factor: f64) -> Self {
        Self {
            patience,
            factor,
            best: f64::NEG_INFINITY,
            bad_epochs: 0,
        }
    }

    /// Records an epoch's metric and returns the learning rate to use from now on.
    pub fn step(&mut self, metric: f64, lr: f64) -> f64 {
        // mode max, threshold_mode rel: better when above best * (1 + threshold).
        if metric > self.best * (1.0 + THRESHOLD) {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.bad_epochs > self.patience {
            self.bad_epochs = 0;
            let reduced = lr * self.factor;
            if lr - reduced > MIN_CHANGE {
                return reduced;
            }
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_after_patience_epochs_without_improvement() {
        // Traced from torch: ReduceLROnPlateau(opt, 'max', patience=1, factor=0.5), lr 1.0,
        // metrics 1, 2, 2, 2, 3, 1, 1 give lrs 1, 1, 1, 0.5, 0.5, 0.5, 0.25.
        let mut s = ReduceLrOnPlateau::new(1, 0.5);
        let mut lr = 1.0;
        let mut lrs = vec![];
        for m in [1.0, 2.0, 2.0, 2.0, 3.0, 1.0, 1.0] {
            lr = s.step(m, lr);
            lrs.push(lr);
        }
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
    }

    #[test]
    fn negative_metrics_follow_torchs_relative_threshold() {
        // best * (1 + 1e-4) for best = -10 is -10.001: -10.0005 counts as better.
        let mut s = ReduceLrOnPlateau::new(0, 0.5);
        assert_eq!(s.step(-10.0, 1.0), 1.0);
        assert_eq!(s.step(-10.0005, 1.0), 1.0);
        assert_eq!(s.best, -10.0005);
    }
}
