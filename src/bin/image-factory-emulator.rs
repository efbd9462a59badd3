//! The Image Factory emulator as a program: serves the contract on 127.0.0.1 for trying
//! imagegen by hand, with the same switches the tests use to make it misbehave.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use imagegen::duration;
use imagegen::factory::emulator::{self, Emulator, EmulatorConfig, Fault};

/// Serves Image Factory's token endpoint and jobs API on 127.0.0.1, per docs/image-factory-api.md.
#[derive(Debug, Parser)]
#[command(
    name = "image-factory-emulator",
    version,
    max_term_width = 100,
    after_help = "\
Examples:
  image-factory-emulator --port 8400
  image-factory-emulator --queued-for 2s --running-for 10s --fail-images 'ja-JP'
  image-factory-emulator --fault-rate 0.3 --faults 429:2,500,reset

It prints the environment imagegen needs, then serves until stopped (Ctrl-C).
GET /_emulator/requests returns the log of every request received."
)]
struct Arguments {
    /// The port on 127.0.0.1; 0 picks a free one
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// How long a new job stays Queued
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    queued_for: Duration,

    /// How long a job then stays Running
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse)]
    running_for: Duration,

    /// Jobs producing an image whose name matches this regular expression fail
    #[arg(long, value_name = "REGEX")]
    fail_images: Option<regex::Regex>,

    /// How long tokens work, whatever expires_in claims (to test early expiry)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration::parse_positive)]
    token_lifetime: Duration,

    /// The share of jobs API requests that misbehave, from 0 to 1
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = parse_share)]
    fault_rate: f64,

    /// How they misbehave: 429, 429:SECONDS, 500 (any 5xx), slow:DURATION, late:DURATION, reset,
    /// replay, no-images, status:NAME
    #[arg(
        long,
        value_name = "FAULT",
        value_delimiter = ',',
        default_value = "429:1,500,reset"
    )]
    faults: Vec<Fault>,

    /// Seeds which requests misbehave, so a run can be repeated
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// The tenant id the token endpoint accepts
    #[arg(long, default_value = emulator::DEFAULT_TENANT_ID)]
    tenant_id: String,

    /// The client id the token endpoint accepts
    #[arg(long, default_value = emulator::DEFAULT_CLIENT_ID)]
    client_id: String,

    /// The client secret the token endpoint accepts (a test value, never a real one)
    #[arg(long, default_value = emulator::DEFAULT_CLIENT_SECRET)]
    client_secret: String,

    /// The resource id tokens are asked for
    #[arg(long, default_value = emulator::DEFAULT_RESOURCE_ID)]
    resource_id: String,

    /// Another application's resource id (repeatable): tokens are issued for it, and the jobs
    /// API refuses them with 401, as the service refuses a token for another resource
    #[arg(long, value_name = "RESOURCE_ID")]
    other_resource: Vec<String>,
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share from 0 to 1")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let config = EmulatorConfig {
        port: arguments.port,
        tenant_id: arguments.tenant_id,
        client_id: arguments.client_id,
        client_secret: arguments.client_secret,
        resource_id: arguments.resource_id,
        other_resources: arguments.other_resource,
        queued_for: arguments.queued_for,
        running_for: arguments.running_for,
        fail_images: arguments.fail_images,
        token_lifetime: arguments.token_lifetime,
        fault_rate: arguments.fault_rate,
        fault_kinds: arguments.faults,
        seed: arguments.seed,
        ..EmulatorConfig::default()
    };
    let emulator = match Emulator::start(config).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!(
                "error: cannot listen on 127.0.0.1:{}: {error}",
                arguments.port
            );
            return ExitCode::FAILURE;
        }
    };
    println!("Image Factory emulator listening on {}", emulator.url());
    println!("Set these for imagegen (test values, not secrets):");
    for (name, value) in emulator.environment() {
        println!("  export {name}={value}");
    }
    let _ = tokio::signal::ctrl_c().await;
    drop(emulator);
    ExitCode::SUCCESS
}
