//! `roformer convert`: one `.safetensors` file carrying the weights and the MSST config, for
//! RoFormers and HT Demucs (a Facebook `.th` package's config is written from its keyword
//! arguments), or a whole bag of models (a bag YAML: see `roformer::bag`).
//!
//! The tensors keep their PyTorch state-dict names (floats as F32, integers as I64), so MSST's
//! PyTorch code loads the file with `safetensors.torch.load_file` + `load_state_dict`. The YAML
//! config is stored verbatim in the metadata under `msst_config`, which `roformer separate`
//! reads when no `--config` is given.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use roformer::bag::{converted, is_bag_yaml, Bag, BagYaml};
use roformer::engine::Engine;
use roformer::loaded_model::{weights_with_config, SeparationModel};
use roformer::model::CONFIG_METADATA_KEY;
use roformer::weights::{load_state_dict, save_safetensors, StateDict};
use roformer::Tensor;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Model weights (.ckpt/.pth/.th, a .safetensors to re-embed a config into, or a bag of
    /// models' .yaml).
    pub model: PathBuf,
    /// The model's MSST YAML config, stored verbatim in the output (default: the config
    /// already embedded in MODEL).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The .safetensors file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// What goes into the output: tensors, metadata, and the parameter count.
type Converted = (BTreeMap<String, Tensor>, HashMap<String, String>, usize);

/// The weights, the config text to embed and where that came from: `--config`, else the
/// config the file carries (a Facebook demucs package's from its keyword arguments).
fn read_model(args: &ConvertArgs) -> Result<(StateDict, String, &Path)> {
    if let Some(path) = &args.config {
        let yaml = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let state = load_state_dict(&args.model)
            .with_context(|| format!("cannot read {}", args.model.display()))?;
        return Ok((state, yaml, path));
    }
    let (state, yaml) = weights_with_config(&args.model)?;
    Ok((state, yaml, &args.model))
}

/// A bag YAML as one file: every model's tensors under `models.N.`, their configs and the bag's
/// weights and segment in the metadata. Returns the tensors, metadata and parameter count.
fn convert_bag(args: &ConvertArgs) -> Result<Converted> {
    if args.config.is_some() {
        bail!(
            "{} is a bag of models, whose models carry their configs: give no --config",
            args.model.display()
        );
    }
    let yaml = BagYaml::read(&args.model)?;
    let parts = yaml.parts()?;
    // The models must form the bag (stems, weights): build it (on the CPU) before writing.
    let bag = Bag::from_parts(
        yaml.source.clone(),
        parts.clone(),
        yaml.weights.clone(),
        yaml.segment,
        &roformer::Device::Cpu,
        Engine::Reference,
    )
    .with_context(|| {
        format!(
            "{} is not a usable bag; nothing written",
            args.model.display()
        )
    })?;
    let (tensors, metadata) = converted(&parts, &bag.weights, bag.segment)?;
    Ok((tensors, metadata, bag.parameters()))
}

/// One model: its tensors, its config in the metadata, and its parameter count.
fn convert_model(args: &ConvertArgs) -> Result<Converted> {
    let (state, yaml, config_origin) = read_model(args)?;

    // The weights must fit the config: build the network (on the CPU) before writing anything.
    let tensors = state.tensors.clone();
    let parameters = state.num_parameters();
    let mut metadata = state.metadata.clone();
    SeparationModel::from_config_text(
        &yaml,
        config_origin,
        state,
        &roformer::Device::Cpu,
        Engine::Reference,
    )
    .with_context(|| {
        format!(
            "the weights in {} do not fit {}; nothing written",
            args.model.display(),
            config_origin.display()
        )
    })?;
    // Keep what a safetensors input carried; ours wins.
    metadata.insert(CONFIG_METADATA_KEY.to_string(), yaml);
    Ok((tensors, metadata, parameters))
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let out = &args.output;
    if out.is_dir() {
        bail!("{} is a folder: give the file to write", out.display());
    }
    if out.exists() && !args.overwrite {
        bail!(
            "{} already exists: pass --overwrite to replace it",
            out.display()
        );
    }

    let (tensors, mut metadata, parameters) = if is_bag_yaml(&args.model) {
        convert_bag(&args)?
    } else {
        convert_model(&args)?
    };
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        "roformer_version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    save_safetensors(&tensors, &metadata, out)?;

    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "Wrote {}: {} tensors, {:.2} M parameters, {:.1} MB, from {}",
        out.display(),
        tensors.len(),
        parameters as f64 / 1e6,
        size as f64 / 1e6,
        args.config.as_ref().unwrap_or(&args.model).display()
    );
    Ok(())
}
