//! Separates an audio file into one WAV per stem with the library alone:
//! `cargo run --release -p roformer --example separate_file -- song.flac out/ [model.ckpt model.yaml]`
//! Without a model, the built-in 4-stem model separates.

use roformer::{FileOptions, Hooks, Separator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(out_dir)) = (args.first(), args.get(1)) else {
        return Err("usage: separate_file INPUT OUT_DIR [MODEL [CONFIG]]".into());
    };
    let mut builder = match args.get(2) {
        Some(model) => Separator::builder(model),
        None => Separator::builtin(),
    };
    if let Some(config) = args.get(3) {
        builder = builder.config(config);
    }
    let separator = builder.open()?;
    let mut hooks = Hooks::new()
        .progress(|p| eprint!("\r{}/{} chunks", p.chunks_done, p.chunks_total))
        .notice(|n| eprintln!("{n}"));
    let options = FileOptions::default();
    let outcome =
        separator.separate_file(input.as_ref(), out_dir.as_ref(), &options, &mut hooks)?;
    eprintln!("\n{outcome:?}");
    Ok(())
}
