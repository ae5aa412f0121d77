//! The `credwatch` binary: argument parsing and wiring; all behaviour lives in the library.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use credwatch::alerts::{AlertSink, JsonLinesSink, TextSink};
use credwatch::config::Config;
use credwatch::decode::Format;
use credwatch::demo::{self, DemoOptions};
use credwatch::engine::Engine;
use credwatch::replay::{DeadLetters, Replay};
use credwatch::rules::{run_cases, CaseOutcome, RuleSet};

#[derive(Parser)]
#[command(
    name = "credwatch",
    version,
    about = "Catch misuse of API credentials within seconds of the event that betrays it",
    long_about = "credwatch reads access and credential-lifecycle logs (issue, revoke, leak), keeps a \
behavioural baseline per credential and raises alerts on reuse across trust zones, use after a \
leak report, use after revocation or expiry, new networks or endpoints, call-rate spikes, \
dormant credentials waking up and credentials nobody issued.\n\n\
Start with `credwatch demo`, then `credwatch replay events.jsonl`; `credwatch run` is the \
Kafka stream processor. \
Logs go to stderr; set RUST_LOG=debug for more.",
    after_help = "Examples:\n  credwatch demo\n  credwatch replay --config credwatch.toml access.jsonl lifecycle.jsonl\n  \
cat events.jsonl | credwatch replay --output json - > alerts.jsonl\n  credwatch rules test --rules rules/\n  \
credwatch config check --config credwatch.toml\n  \
credwatch send --brokers localhost:9092 --topic trail --format cloudtrail --partitions 6 trail/*.json\n  \
credwatch run --config credwatch.toml --console text"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Diagnostics on stderr: human lines, or one JSON object per line (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Replay log files (or stdin) through the detectors; alerts on stdout, summary on stderr.
    Replay(ReplayArgs),
    /// Run as a Kafka stream processor: input topics in, alerts to a topic and/or console/file.
    Run(RunArgs),
    /// Publish log files into a Kafka topic, keyed by credential id (backfills, demos).
    Send(SendArgs),
    /// Run a synthetic day of traffic with injected misuse and show what was caught.
    Demo(DemoArgs),
    /// Write the demo's synthetic day to a file (native JSON lines) with its ground truth.
    Gen(GenArgs),
    /// Validate rule files or run their inline test cases.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Validate a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Args)]
struct Setup {
    /// Configuration file (TOML: zones, issuers, learning, state, kafka, respond, api; see the
    /// README). Default: built-in defaults.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of rule files (*.toml). Default: the rule set built into credwatch.
    #[arg(long, short, value_name = "DIR")]
    rules: Option<PathBuf>,
}

impl Setup {
    fn config(&self) -> Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::load(path)?),
            None => Ok(Config::builtin()),
        }
    }

    fn rules(&self, config: &Config) -> Result<RuleSet> {
        match &self.rules {
            Some(dir) => Ok(RuleSet::load_dir(dir, config)?),
            None => Ok(RuleSet::builtin(config)?),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// One human line per alert.
    Text,
    /// One OCSF-shaped JSON object per line; identical bytes for identical input.
    Json,
    /// Print no alerts (the summary still goes to stderr).
    None,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    setup: Setup,
    /// How to print alerts on stdout.
    #[arg(long, short, value_enum, default_value = "text")]
    output: Output,
    /// Write rejected records here, one JSON line each with the reason and origin.
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Input format: native, cloudtrail, vault, k8s, github-secret-scanning, leak, or auto
    /// (recognise each record). JSON lines and whole JSON documents (arrays, CloudTrail
    /// `{"Records": [...]}` files, Kubernetes EventLists) are both accepted.
    #[arg(long, short, default_value = "native")]
    format: Format,
    /// Input files, read in order; `-` reads stdin.
    #[arg(value_name = "FILE", required = true)]
    inputs: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    setup: Setup,
    /// Override `[kafka] brokers` of the config (host:port,...).
    #[arg(long, value_name = "BROKERS")]
    brokers: Option<String>,
    /// Also print alerts on stdout.
    #[arg(long, value_enum, default_value = "none")]
    console: Output,
    /// Also append alerts to this NDJSON file.
    #[arg(long, value_name = "FILE")]
    alerts_file: Option<PathBuf>,
    /// Stop cleanly after this long without input (`30s`, `5m`): for backfills.
    #[arg(long, value_name = "DURATION")]
    exit_when_idle: Option<credwatch::time::Period>,
}

#[derive(Args)]
struct SendArgs {
    /// Kafka bootstrap servers (host:port,...).
    #[arg(long, value_name = "BROKERS")]
    brokers: String,
    /// Topic to publish to.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// Format of the files, used to find each record's credential id for the message key.
    #[arg(long, short, default_value = "native")]
    format: Format,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// Files to publish, in order; `-` reads stdin.
    #[arg(value_name = "FILE", required = true)]
    inputs: Vec<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Seed of the synthetic world; the same seed gives the same day and the same alerts.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How many credentials the synthetic organisation has (at least 100).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..))]
    credentials: u32,
    /// Print the alerts raised (text), besides the summary table.
    #[arg(long)]
    alerts: bool,
    /// Write the generated events to this file (native JSON lines) for `credwatch replay`.
    #[arg(long, value_name = "FILE")]
    write_events: Option<PathBuf>,
    /// Send the day through this Kafka cluster (a new topic) and detect with the Kafka
    /// consumer path instead of in memory.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
}

#[derive(Args)]
struct GenArgs {
    /// Seed of the synthetic world; the same seed and size give the same bytes.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How many credentials (at least 100).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..))]
    credentials: u32,
    /// Where to write the events.
    #[arg(long, short, value_name = "FILE")]
    out: PathBuf,
    /// Where to write the injected scenarios (one JSON object per line).
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load and validate every rule (fields, detector parameters, test cases).
    Check(Setup),
    /// Run every rule's inline test cases; exit 1 when any fails.
    Test(Setup),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and summarise it.
    Check {
        /// Configuration file (default: the built-in defaults).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay(args),
        Command::Run(args) => run_kafka(args),
        Command::Send(args) => {
            let kafka = credwatch::config::KafkaConfig {
                brokers: args.brokers,
                group_id: "credwatch-send".into(),
                inputs: Vec::new(),
                alerts_topic: None,
                dead_letter_topic: None,
                commit_interval: credwatch::time::Period::from_secs(1),
                allowed_lateness: credwatch::time::Period::ZERO,
                properties: Default::default(),
            };
            if let Some(partitions) = args.partitions {
                credwatch::send::ensure_topic(&kafka, &args.topic, partitions)?;
            }
            let progress = io::stderr().is_terminal().then(|| spinner("sending"));
            let summary = credwatch::send::send(
                &kafka,
                &args.topic,
                args.format,
                &args.inputs,
                progress.as_ref(),
            )?;
            if let Some(progress) = progress {
                progress.finish_and_clear();
            }
            eprintln!(
                "credwatch send: {} records to {} ({} without a credential key)",
                summary.records, args.topic, summary.undecodable
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let options = DemoOptions {
                seed: args.seed,
                credentials: args.credentials as usize,
                write_events: args.write_events,
                kafka: args.kafka,
            };
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let mut sink = TextSink::new(&mut out);
            let sink: Option<&mut dyn AlertSink> = if args.alerts { Some(&mut sink) } else { None };
            let report = demo::run(&options, sink)?;
            print!("{}", report.render());
            Ok(if report.all_caught() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Gen(args) => {
            let generated = credwatch::demo::generate(
                args.seed,
                args.credentials as usize,
                &args.out,
                args.truth.as_deref(),
            )?;
            eprintln!(
                "credwatch gen: {} events for {} credentials, {} injected scenarios, to {}",
                generated.events,
                generated.credentials,
                generated.scenarios,
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(RulesCommand::Check(setup)) => {
            let config = setup.config()?;
            let rules = setup.rules(&config)?;
            let cases: usize = rules.rules().iter().map(|r| r.tests.len()).sum();
            println!("{} rules valid ({} test cases)", rules.len(), cases);
            for rule in rules.rules() {
                let firing = rule.tests.iter().filter(|c| c.fires()).count();
                println!(
                    "  {:<22} {:<18} {:<13} {:<6} {} firing / {} quiet cases{}",
                    rule.id,
                    rule.kind.as_str(),
                    rule.severity.as_str(),
                    format!("{:?}", rule.action).to_lowercase(),
                    firing,
                    rule.tests.len() - firing,
                    if rule.enabled { "" } else { " (disabled)" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(RulesCommand::Test(setup)) => {
            let config = setup.config()?;
            let rules = setup.rules(&config)?;
            let reports = run_cases(&rules, &config);
            let mut failed = 0;
            for report in &reports {
                match &report.outcome {
                    CaseOutcome::Pass => println!("pass  {}: {}", report.rule, report.case),
                    CaseOutcome::Fail(why) => {
                        failed += 1;
                        println!(
                            "FAIL  {}: {} ({})\n      {why}",
                            report.rule, report.case, report.file
                        );
                    }
                }
            }
            println!(
                "rules test: {} passed, {} failed",
                reports.len() - failed,
                failed
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::builtin(),
            };
            print!("{}", config.describe());
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let config = args.setup.config()?;
    let rules = args.setup.rules(&config)?;
    let webhook = config.webhook.clone();
    let mut engine = Engine::new(config, rules);
    let dead_letters = match args.dead_letter {
        Some(path) => DeadLetters::to_file(path)?,
        None => DeadLetters::Discard,
    };
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    let mut text;
    let mut json;
    let mut none = NoSink;
    let sink: &mut dyn AlertSink = match args.output {
        Output::Text => {
            text = TextSink::new(out);
            &mut text
        }
        Output::Json => {
            json = JsonLinesSink::new(out);
            &mut json
        }
        Output::None => &mut none,
    };
    let mut replay = Replay::new(&mut engine, sink, dead_letters, args.format);
    if io::stderr().is_terminal() {
        replay = replay.with_progress(spinner("replaying"));
    }
    if let Some(webhook) = webhook {
        replay = replay.with_responder(credwatch::respond::Responder::start(webhook)?);
    }
    for input in &args.inputs {
        replay
            .input(input)
            .with_context(|| format!("replaying {input}"))?;
    }
    let summary = replay.finish()?;
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(summary.render().as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn run_kafka(args: RunArgs) -> Result<ExitCode> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let config = args.setup.config()?;
    let mut kafka = config.kafka.clone().with_context(|| {
        format!(
            "{} has no [kafka] section: `credwatch run` needs one (see README, \"Kafka\")",
            config.origin
        )
    })?;
    if let Some(brokers) = args.brokers {
        kafka.brokers = brokers;
    }
    let rules = args.setup.rules(&config)?;
    let webhook = config.webhook.clone();
    let config_api = config.api.clone();
    let mut engine = Engine::new(config, rules).with_allowed_lateness(kafka.allowed_lateness);

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown))
            .context("cannot install signal handlers")?;
    }
    let mut sinks = credwatch::alerts::Fanout::default();
    if let Some(topic) = &kafka.alerts_topic {
        let producer = credwatch::alerts::Producer::connect(&kafka)
            .context("cannot create the Kafka producer")?;
        sinks.push(Box::new(credwatch::alerts::KafkaAlertSink::new(
            producer,
            topic.clone(),
        )));
    }
    match args.console {
        Output::Text => sinks.push(Box::new(TextSink::new(io::stdout()))),
        Output::Json => sinks.push(Box::new(JsonLinesSink::new(io::stdout()))),
        Output::None => {}
    }
    if let Some(path) = &args.alerts_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        sinks.push(Box::new(JsonLinesSink::new(io::BufWriter::new(file))));
    }
    // The server lives until the end of this function, after the loop has stopped.
    let (api, _api_server) = match config_api {
        Some(api) => {
            let listener = std::net::TcpListener::bind(api.listen)
                .with_context(|| format!("cannot listen on {}", api.listen))?;
            let producer = credwatch::alerts::Producer::connect(&kafka)
                .context("cannot create the Kafka producer")?;
            let shared = credwatch::api::Shared::new(
                engine.shared_config(),
                api,
                engine.shared_state(),
                Some(producer),
            );
            sinks.push(Box::new(credwatch::api::RingSink(std::sync::Arc::clone(
                &shared,
            ))));
            let server = credwatch::api::BackgroundServer::start(
                listener,
                credwatch::api::router(std::sync::Arc::clone(&shared)),
                "credwatch-api",
            )
            .context("cannot start the HTTP API")?;
            tracing::info!(address = %server.address, "HTTP API listening.");
            (Some(shared), Some(server))
        }
        None => (None, None),
    };
    if sinks.is_empty() {
        anyhow::bail!(
            "no alert destination: set [kafka] alerts_topic, [api], --console or --alerts-file"
        );
    }
    let options = credwatch::run::RunOptions {
        api,
        exit_when_idle: args
            .exit_when_idle
            .map(|p| std::time::Duration::from_micros(p.micros().max(0) as u64)),
        stop_after_messages: None,
    };
    let mut responder = match webhook {
        Some(webhook) => Some(credwatch::respond::Responder::start(webhook)?),
        None => None,
    };
    let summary = credwatch::run::run(
        &mut engine,
        &kafka,
        &mut sinks,
        responder.as_mut(),
        &options,
        &shutdown,
    )?;
    eprint!("{}", summary.render());
    if let Some(responder) = responder {
        eprint!(
            "{}",
            responder
                .finish(std::time::Duration::from_secs(30))
                .render()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A spinner on stderr for long runs (callers show it only on a terminal).
fn spinner(what: &str) -> indicatif::ProgressBar {
    let progress = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {prefix}: {msg}")
    {
        progress.set_style(style);
    }
    progress.set_prefix(what.to_owned());
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    progress
}

/// `--output none`: alerts are only counted.
struct NoSink;

impl AlertSink for NoSink {
    fn emit(&mut self, _alert: &credwatch::alerts::Alert) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
