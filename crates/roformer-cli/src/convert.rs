//! `roformer convert`: one `.safetensors` file carrying the weights and the MSST config, for
//! RoFormers and HT Demucs (a Facebook `.th` package's config is written from its keyword
//! arguments).
//!
//! The tensors keep their PyTorch state-dict names (floats as F32, integers as I64), so MSST's
//! PyTorch code loads the file with `safetensors.torch.load_file` + `load_state_dict`. The YAML
//! config is stored verbatim in the metadata under `msst_config`, which `roformer separate`
//! reads when no `--config` is given.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use roformer::engine::Engine;
use roformer::loaded_model::{config_from_package, demucs_package, SeparationModel};
use roformer::model::CONFIG_METADATA_KEY;
use roformer::weights::{load_state_dict, save_safetensors, StateDict};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Model weights (.ckpt/.pth, or a .safetensors to re-embed a config into).
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

/// The weights, the config text to embed and where that came from: `--config`, else a
/// Facebook demucs package's own keyword arguments, else the config the file carries.
fn read_model(args: &ConvertArgs) -> Result<(StateDict, String, &Path)> {
    let read_state = || {
        load_state_dict(&args.model)
            .with_context(|| format!("cannot read {}", args.model.display()))
    };
    if let Some(path) = &args.config {
        let yaml = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        return Ok((read_state()?, yaml, path));
    }
    if let Some(package) = demucs_package(&args.model)? {
        let yaml = config_from_package(&package)?.to_yaml()?;
        return Ok((package.state, yaml, &args.model));
    }
    let state = read_state()?;
    match state.metadata.get(CONFIG_METADATA_KEY) {
        Some(text) => {
            let yaml = text.clone();
            Ok((state, yaml, &args.model))
        }
        None => bail!(
            "{} carries no config: pass the model's YAML config with --config",
            args.model.display()
        ),
    }
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

    let (state, yaml, config_origin) = read_model(&args)?;

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
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        "roformer_version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    save_safetensors(&tensors, &metadata, out)?;

    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "Wrote {}: {} tensors, {:.2} M parameters, {:.1} MB, config from {}",
        out.display(),
        tensors.len(),
        parameters as f64 / 1e6,
        size as f64 / 1e6,
        config_origin.display()
    );
    Ok(())
}
