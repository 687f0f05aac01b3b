//! Training against PyTorch: for fixed batches, the loss and the gradient of every parameter of
//! MSST's own models (same weights), and the weights after Adam / AdamW (+ clipping) steps.
//! Truth: `tests/fixtures/train/*.safetensors` from `tools/gen_train_fixtures.py`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use roformer::config::MsstConfig;
use roformer::train::gradients::{loss_and_gradients, Examples};
use roformer::train::loss::{Loss, LossKind};
use roformer::train::optimizer::{clip_grad_norm, Adam, AdamSettings, OptimizerKind};
use roformer::train::params::Parameters;
use roformer::weights::{load_state_dict, StateDict};

use common::{flat, models_dir};

struct Case {
    config: MsstConfig,
    weights: BTreeMap<String, Tensor>,
    truth: StateDict,
}

fn case(name: &str) -> Case {
    let dir = models_dir().join(name);
    let config = MsstConfig::from_file(&dir.join("config.yaml")).unwrap();
    let weights = load_state_dict(&dir.join("model.ckpt")).unwrap().tensors;
    let truth_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/train")
        .join(format!("{name}.safetensors"));
    let truth = load_state_dict(&truth_path).unwrap();
    Case {
        config,
        weights,
        truth,
    }
}

impl Case {
    fn get(&self, key: &str) -> Tensor {
        self.truth
            .get(key)
            .unwrap_or_else(|| panic!("fixture has no {key}"))
            .clone()
    }

    fn scalar(&self, key: &str) -> f64 {
        f64::from(flat(&self.get(key))[0])
    }

    fn params(&self) -> Parameters {
        Parameters::new(self.weights.clone(), &Device::Cpu).unwrap()
    }

    /// Loss and gradients of the fixture batch at the parameters' current values.
    fn gradients(&self, params: &Parameters, kind: LossKind) -> (f64, Vec<Option<Tensor>>) {
        let mixture = flat(&self.get("mixture"));
        let targets = flat(&self.get("target"));
        let dims = self.get("mixture").dims().to_vec();
        let network = params.network(&self.config).unwrap();
        let loss = Loss::from_config(&self.config, kind).unwrap();
        let examples = Examples {
            mixture: &mixture,
            targets: &targets,
            batch: dims[0],
            len: dims[2],
        };
        loss_and_gradients(&network, params, &loss, examples, 1.0).unwrap()
    }

    /// Every fixture tensor under `prefix` against ours (by parameter name): relative L2 error.
    fn compare(&self, prefix: &str, ours: &BTreeMap<String, Tensor>, tolerance: f64) -> usize {
        let mut checked = 0;
        let mut worst = (0.0, String::new());
        for (key, truth) in &self.truth.tensors {
            let Some(name) = key.strip_prefix(prefix) else {
                continue;
            };
            let ours = ours
                .get(name)
                .unwrap_or_else(|| panic!("{prefix}{name}: no such trained tensor"));
            let err = relative_error(&flat(truth), &flat(ours));
            if err > worst.0 {
                worst = (err, name.to_string());
            }
            checked += 1;
        }
        assert!(checked > 0, "no {prefix}* tensors in the fixture");
        assert!(
            worst.0 <= tolerance,
            "{prefix}{}: relative error {:e} > {tolerance:e}",
            worst.1,
            worst.0
        );
        eprintln!(
            "{prefix}*: {checked} tensors, worst relative error {:e} ({})",
            worst.0, worst.1
        );
        checked
    }
}

/// `||ours - truth|| / ||truth||` (absolute when the truth is all zeros).
fn relative_error(truth: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(truth.len(), ours.len());
    let diff: f64 = truth
        .iter()
        .zip(ours)
        .map(|(&t, &o)| (f64::from(t) - f64::from(o)).powi(2))
        .sum();
    let norm: f64 = truth.iter().map(|&t| f64::from(t).powi(2)).sum();
    if norm > 0.0 {
        (diff / norm).sqrt()
    } else {
        diff.sqrt()
    }
}

fn by_name(params: &Parameters, grads: Vec<Option<Tensor>>) -> BTreeMap<String, Tensor> {
    params
        .trainable()
        .zip(grads)
        .filter_map(|((name, _), g)| g.map(|g| (name.to_string(), g)))
        .collect()
}

fn weights(params: &Parameters) -> BTreeMap<String, Tensor> {
    params.snapshot().unwrap()
}

fn adam(kind: OptimizerKind, weight_decay: f64, params: &Parameters) -> Adam {
    let settings = AdamSettings {
        kind,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay,
    };
    Adam::new(settings, params.trainable().count())
}

fn check_model(name: &str) {
    let c = case(name);

    // The model's own loss and its gradients.
    let params = c.params();
    let (loss, grads) = c.gradients(&params, LossKind::Model);
    let want = c.scalar("loss.model");
    assert!(
        ((loss - want) / want).abs() < 1e-5,
        "{name}: model loss {loss} vs PyTorch {want}"
    );
    let grads = by_name(&params, grads);
    let n = c.compare("grad.model.", &grads, 1e-4);
    // Every trained tensor has a gradient in the fixture, and we produced one for each.
    assert_eq!(n, params.trainable().count(), "{name}: gradient count");
    assert_eq!(grads.len(), n);

    // masked_loss.
    let (loss, grads) = c.gradients(&params, LossKind::Masked);
    let want = c.scalar("loss.masked");
    assert!(
        ((loss - want) / want).abs() < 1e-5,
        "{name}: masked loss {loss} vs PyTorch {want}"
    );
    c.compare("grad.masked.", &by_name(&params, grads), 1e-4);

    // Adam: one step, then a second on a recomputed gradient.
    let params = c.params();
    let mut opt = adam(OptimizerKind::Adam, 0.0, &params);
    let vars: Vec<_> = params.trainable().map(|(_, v)| v.clone()).collect();
    let vars: Vec<_> = vars.iter().collect();
    let (_, g) = c.gradients(&params, LossKind::Model);
    opt.step(&vars, &g).unwrap();
    c.compare("adam1.", &weights(&params), 1e-5);
    let (loss2, g) = c.gradients(&params, LossKind::Model);
    let want = c.scalar("loss.adam2_step2");
    assert!(
        ((loss2 - want) / want).abs() < 1e-5,
        "{name}: loss after one step {loss2} vs {want}"
    );
    opt.step(&vars, &g).unwrap();
    c.compare("adam2.", &weights(&params), 1e-5);

    // AdamW with gradient clipping, two steps. Adam hides a constant gradient scale, so the clip
    // moves the weights by only ~3e-4 (relative; see the fixture README): 1e-5 still sees it.
    let params = c.params();
    let mut opt = adam(OptimizerKind::AdamW, 0.01, &params);
    let vars: Vec<_> = params.trainable().map(|(_, v)| v.clone()).collect();
    let vars: Vec<_> = vars.iter().collect();
    let max_norm = c.scalar("clip.max_norm");
    for (step, norm_key) in ["clip.total_norm", "clip.total_norm_step2"]
        .iter()
        .enumerate()
    {
        let (_, mut g) = c.gradients(&params, LossKind::Model);
        let total = clip_grad_norm(&mut g, max_norm).unwrap();
        let want = c.scalar(norm_key);
        assert!(
            ((total - want) / want).abs() < 1e-4,
            "{name}: step {step} gradient norm {total} vs {want}"
        );
        opt.step(&vars, &g).unwrap();
    }
    c.compare("adamw_clip2.", &weights(&params), 1e-5);
}

#[test]
fn bs_roformer_training_matches_pytorch() {
    check_model("bs_stereo_2stem_hop512");
}

#[test]
fn mel_band_roformer_training_matches_pytorch() {
    check_model("mel_tiny_stereo");
}

#[test]
fn bs_roformer_with_linear_attention_and_skips_training_matches_pytorch() {
    check_model("bs_4stem_linear_skip");
}
