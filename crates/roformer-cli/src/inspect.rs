//! `roformer inspect`: what a checkpoint holds and whether it fits a config; for a bag of
//! models, its models and weights.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use roformer::bag::{is_bag_yaml, Bag, BAG_METADATA_KEY};
use roformer::config::read_config_text;
use roformer::config::{Architecture, MsstConfig};
use roformer::engine::Engine;
use roformer::loaded_model::{demucs_package, is_htdemucs_config, LoadedModel, SeparationModel};
use roformer::model::{architecture_of, CONFIG_METADATA_KEY};
use roformer::weights::{load_state_dict, StateDict};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model weights (.ckpt/.pth/.safetensors), or a bag of models (.yaml, or converted).
    pub model: PathBuf,
    /// An MSST YAML config to describe and check the weights against.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

/// Distinct values of the path component after `prefix` in the keys (e.g. layer indices).
fn indices(state: &StateDict, prefix: &str) -> usize {
    state
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|rest| rest.split('.').next())
        .filter_map(|i| i.parse::<usize>().ok())
        .collect::<BTreeSet<_>>()
        .len()
}

fn dims(state: &StateDict, key: &str) -> Option<Vec<usize>> {
    state.get(key).map(|t| t.dims().to_vec())
}

/// A bag of models: its models (family, shape, chunking) and its weights matrix.
fn describe_bag(bag: &Bag) {
    println!(
        "Bag          {}: {} models, {:.2} M parameters",
        bag.source.display(),
        bag.models.len(),
        bag.parameters() as f64 / 1e6
    );
    let stems = bag.stems();
    println!("  stems      {}", stems.join(", "));
    println!(
        "  audio      {} Hz, {} channel(s)",
        bag.sample_rate(),
        bag.audio_channels()
    );
    match bag.segment {
        Some(s) => println!("  segment    {s} s (where a model's training segment allows)"),
        None => println!("  segment    each model's own"),
    }
    for (i, m) in bag.models.iter().enumerate() {
        println!("Model {:<6} {}", i + 1, m.name.display());
        println!("  family     {} ({})", m.model.family(), m.model.shape());
        println!(
            "  chunk      {} samples, overlap {}",
            m.demix.chunk_size, m.demix.num_overlap
        );
    }
    let width = stems.iter().map(String::len).max().unwrap_or(0).max(6);
    let header: Vec<String> = stems.iter().map(|s| format!("{s:>width$}")).collect();
    println!("Weights      {}", header.join(" "));
    for (i, row) in bag.weights.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|w| format!("{w:>width$}")).collect();
        println!("  model {:<4} {}", i + 1, cells.join(" "));
    }
}

pub fn run(args: InspectArgs) -> Result<()> {
    let open_bag = || {
        if args.config.is_some() {
            bail!(
                "{} is a bag of models, whose models carry their configs: give no --config",
                args.model.display()
            );
        }
        Ok(())
    };
    if is_bag_yaml(&args.model) {
        open_bag()?;
        describe_bag(&Bag::open(
            &args.model,
            None,
            &roformer::Device::Cpu,
            Engine::Reference,
        )?);
        return Ok(());
    }
    if let Some(origin) = htdemucs_origin(&args)? {
        return inspect_htdemucs(&args, origin);
    }
    let state = load_state_dict(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    if state.metadata.contains_key(BAG_METADATA_KEY) {
        open_bag()?;
        describe_bag(&Bag::from_converted(
            state,
            &roformer::Device::Cpu,
            Engine::Reference,
        )?);
        return Ok(());
    }
    println!("Checkpoint   {}", args.model.display());
    println!(
        "Tensors      {} ({:.2} M parameters)",
        state.len(),
        state.num_parameters() as f64 / 1e6
    );
    // What the key tree says, independent of any config.
    let architecture = architecture_of(&state);
    let norm_key = match architecture {
        Some(Architecture::BsRoformer) => "final_norm.gamma",
        Some(Architecture::MelBandRoformer) => "layers.0.0.norm.gamma",
        None => "",
    };
    match architecture {
        Some(a) => println!("Looks like   {a}"),
        None => {
            println!("Looks like   unknown (neither an MSST BS- nor Mel-Band RoFormer key layout)")
        }
    }
    if let Some(d) = dims(&state, norm_key) {
        println!("  dim        {}", d[0]);
    }
    println!("  depth      {}", indices(&state, "layers."));
    println!(
        "  bands      {}",
        indices(&state, "band_split.to_features.")
    );
    println!("  stems      {}", indices(&state, "mask_estimators."));
    let attn = state
        .keys()
        .find(|k| k.ends_with(".to_gates.weight"))
        .map(str::to_string);
    if let Some(key) = attn {
        if let Some(d) = dims(&state, &key) {
            println!("  heads      {}", d[0]);
        }
    }
    if let Some(key) = state
        .keys()
        .find(|k| k.ends_with("rotary_embed.freqs"))
        .map(str::to_string)
    {
        if let Some(d) = dims(&state, &key) {
            println!("  dim_head   {}", d[0] * 2);
        }
    }
    if !state.metadata.is_empty() {
        let keys: Vec<&str> = state.metadata.keys().map(String::as_str).collect();
        println!("Metadata     {}", keys.join(", "));
    }

    let Some(config_path) = args.config else {
        println!("(pass --config to check the weights against a config)");
        return Ok(());
    };
    let config = MsstConfig::from_file(&config_path)?;
    let m = &config.model;
    println!("Config       {}", config_path.display());
    println!(
        "  model      {} dim {} depth {} heads {}x{} (time {}, freq {}, linear {})",
        m.architecture(),
        m.dim,
        m.depth,
        m.heads,
        m.dim_head,
        m.time_transformer_depth,
        m.freq_transformer_depth,
        m.linear_transformer_depth
    );
    println!(
        "  audio      {} Hz, {}, chunk {} samples, overlap {}, batch {}",
        config.audio.sample_rate,
        if m.stereo { "stereo" } else { "mono" },
        config.chunk_size(),
        config.inference.num_overlap,
        config.inference.batch_size
    );
    println!(
        "  STFT       n_fft {}, hop {}, window {}, {} bands, zero_dc {}",
        m.stft_n_fft,
        m.stft_hop_length,
        m.stft_win_length,
        match m.architecture() {
            Architecture::BsRoformer => m.freqs_per_bands().len(),
            Architecture::MelBandRoformer => m.num_bands.unwrap_or(0),
        },
        m.zero_dc
    );
    println!(
        "  masks      depth {}, mlp x{}, skip_connection {}",
        m.mask_depth(),
        m.mlp_expansion_factor,
        m.skip_connection
    );
    println!("  stems      {}", config.stem_names().join(", "));
    match LoadedModel::from_state_dict(config, state, &roformer::Device::Cpu, Engine::Reference) {
        Ok(_) => println!("Weights      match the config"),
        Err(e) => {
            println!("Weights      DO NOT match the config: {e}");
            anyhow::bail!(
                "the weights in {} do not fit {}",
                args.model.display(),
                config_path.display()
            );
        }
    }
    Ok(())
}

/// Where an HT Demucs model's config comes from, when `args` names one.
enum HtDemucsOrigin {
    /// A Facebook demucs `.th` package (its class and keyword arguments).
    Package(String),
    /// An MSST config file.
    Config,
    /// The config `roformer convert` embedded in a safetensors file.
    Embedded,
}

/// Whether `args` names an HT Demucs model: a `.th` package, an HT Demucs config, or weights
/// carrying one.
fn htdemucs_origin(args: &InspectArgs) -> Result<Option<HtDemucsOrigin>> {
    let cannot = || format!("cannot read {}", args.model.display());
    if let Some(package) = demucs_package(&args.model).with_context(cannot)? {
        return Ok(Some(HtDemucsOrigin::Package(package.class_name.clone())));
    }
    if let Some(config) = &args.config {
        let text = read_config_text(config)?;
        return Ok(is_htdemucs_config(&text).then_some(HtDemucsOrigin::Config));
    }
    let state = load_state_dict(&args.model).with_context(cannot)?;
    let embedded = state.metadata.get(CONFIG_METADATA_KEY);
    Ok(embedded
        .is_some_and(|text| is_htdemucs_config(text))
        .then_some(HtDemucsOrigin::Embedded))
}

/// The family, shape, audio layout and stems of an HT Demucs model, and whether its weights
/// build it.
fn inspect_htdemucs(args: &InspectArgs, origin: HtDemucsOrigin) -> Result<()> {
    println!("Checkpoint   {}", args.model.display());
    let source = match &origin {
        HtDemucsOrigin::Package(class) => format!("a Facebook demucs package ({class})"),
        HtDemucsOrigin::Config => format!(
            "an MSST checkpoint with config {}",
            args.config.as_deref().unwrap_or(&args.model).display()
        ),
        HtDemucsOrigin::Embedded => "a safetensors file with its config".to_string(),
    };
    println!("Family       HT Demucs (Hybrid Transformer Demucs v4), {source}");
    let opened = SeparationModel::open(
        &args.model,
        args.config.as_deref(),
        &roformer::Device::Cpu,
        Engine::Reference,
    );
    let model = match opened {
        Ok(SeparationModel::HtDemucs(m)) => m,
        Ok(SeparationModel::Roformer(_)) => {
            anyhow::bail!("{} opened as a RoFormer", args.model.display())
        }
        Err(e) => {
            println!("Weights      DO NOT build the model: {e}");
            anyhow::bail!("{} does not fit its HT Demucs config", args.model.display());
        }
    };
    let c = &model.config;
    println!("Parameters   {:.2} M", model.parameters as f64 / 1e6);
    println!("  shape      {}", c.htdemucs.shape());
    println!(
        "  audio      {} Hz, {} channel(s), segment {} s (chunk {} samples), overlap {}, batch {}",
        c.training.samplerate,
        c.training.channels,
        c.training.segment,
        c.chunk_size(),
        c.inference.num_overlap,
        c.inference.batch_size
    );
    println!(
        "  stems      {} ({})",
        c.training.instruments.len(),
        c.training.instruments.join(", ")
    );
    println!("Weights      match the config");
    Ok(())
}
