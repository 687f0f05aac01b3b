//! `roformer`: separate songs into stems with BS-RoFormer models (MSST checkpoints and configs).

mod allocator;
mod bench;
mod bench_train;
mod convert;
mod eval;
mod inputs;
mod inspect;
mod separate;
mod train;
mod train_data;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "roformer", version, about = "Music source separation with BS-RoFormer", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Separate audio files (or every audio file in folders) into stems.
    Separate(separate::SeparateArgs),
    /// Describe a checkpoint (and, with --config, check that it fits the config).
    Inspect(inspect::InspectArgs),
    /// Write one .safetensors file holding the weights and the YAML config (PyTorch-loadable).
    Convert(convert::ConvertArgs),
    /// Score separated stems against references: global SDR, SI-SDR, BSSEval v4, fullness, bleedless.
    Eval(eval::EvalArgs),
    /// Time the network on synthetic input: seconds per chunk, GFLOP/s, the matmul floor, memory.
    Bench(bench::BenchArgs),
    /// Train or fine-tune a model on a MUSDB18-style folder (checkpoints, validation SDR, resume).
    Train(train::TrainArgs),
    /// Time training steps of a config's model on a synthetic batch.
    BenchTrain(bench_train::BenchTrainArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    // Library warnings (e.g. skipped corrupt packets) go to stderr; RUST_LOG overrides the level.
    // symphonia's own log lines are off: our errors already say what they say, with the file.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,symphonia=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    let result = match cli.command {
        Command::Separate(args) => separate::run(args),
        Command::Inspect(args) => inspect::run(args).map(|()| ExitCode::SUCCESS),
        Command::Convert(args) => convert::run(args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Train(args) => train::run(args).map(|()| ExitCode::SUCCESS),
        Command::BenchTrain(args) => bench_train::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
