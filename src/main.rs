//! The `credwatch` binary: argument parsing and wiring; all behaviour lives in the library.

use std::io::{self, IsTerminal, Read, Write};
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
    /// Run SQL over an archive (tables events, alerts, credentials); a prompt when no SQL is
    /// given on a terminal.
    #[command(after_help = QUERY_HELP)]
    Query(QueryArgs),
    /// Show one credential's timeline and alerts from an archive.
    Explain(ExplainArgs),
    /// Replay archived events through a rule set with fresh state; alerts per rule per day.
    Backtest(BacktestArgs),
    /// Validate rule files or run their inline test cases.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Validate a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect checkpoints written by `replay --checkpoint` and `run --checkpoint`.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Show who wrote the checkpoint in DIR, where its input stood and how much state it
    /// holds (for `run`: every partition's file, its offset and its share of the state);
    /// fails when a file is damaged or of another format version.
    Show {
        /// The checkpoint directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
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
    /// Directory of exception files (*.toml with [[exceptions]]: owner, reason, expiry and
    /// scope). Default: the `exceptions` directory inside --rules, when there is one.
    #[arg(long, value_name = "DIR")]
    exceptions: Option<PathBuf>,
}

impl Setup {
    fn config(&self) -> Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::load(path)?),
            None => Ok(Config::builtin()),
        }
    }

    fn rules(&self, config: &Config) -> Result<RuleSet> {
        let rules = match &self.rules {
            Some(dir) => RuleSet::load_dir(dir, config)?,
            None => RuleSet::builtin(config)?,
        };
        match &self.exceptions {
            Some(dir) => Ok(rules.with_exceptions_from(dir, config, true)?),
            None => Ok(rules),
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
    /// Archive events and alerts as Parquet under DIR (overrides `[archive] dir`), and the
    /// credentials' state at the end; query it with `credwatch query`.
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// Threads: 2 decodes JSON lines on a second thread while the engine runs the events
    /// before them; 1 keeps both on one. The output is the same either way. Default: 2 where
    /// at least two cores are available (1.3 to 1.7 times the events/s of 1 from a file in
    /// the runs so far; BENCHMARKS.md, section 7), else 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: Option<u8>,
    /// Input files, read in order; `-` reads stdin (which cannot be checkpointed).
    #[arg(value_name = "FILE", required = true)]
    inputs: Vec<String>,
}

const QUERY_HELP: &str = "\
Tables (see README, \"Archive and query\"):
  events       one row per event: time, credential, kind, outcome, principal, owner, source_ip,
               zone, network, declared_zone, endpoint, user_agent, expires_at, allowed_zones,
               leak_source, leak_url, event_id, format; partitions date ('YYYY-MM-DD'), hour ('HH')
  alerts       one row per alert: time, credential, id, activity, rule, detector, severity,
               action, count, summary, owner, source_ip, endpoint, user_agent, event_id,
               first_seen, last_seen, ocsf (the full alert JSON); partitions date, hour
  credentials  the state at the last export: owner, accesses, first_seen, last_seen, issued_at,
               expires_at, revoked_at, leaked_at, allowed_zones, seen_zones, networks, ...
Functions: zone_of(ip) (zones of --config), ip_in_cidr(ip, cidr), and DataFusion's own.
Filter on date (and hour) to read only those directories.

Examples:
  credwatch query --archive arch \"SELECT zone, count(*) FROM events WHERE date = '2026-11-23' GROUP BY zone\"
  credwatch query --archive arch --format csv --file examples/queries/internet-use.sql
  credwatch query --archive arch     (interactive, on a terminal)";

#[derive(Args)]
struct QueryArgs {
    /// The archive directory (written by `replay --archive` or `run`).
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// Configuration whose zones `zone_of()` uses. Default: built-in defaults.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: credwatch::query::OutputFormat,
    /// Read the SQL from this file (several statements separated by `;`).
    #[arg(long, value_name = "FILE", conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// The SQL; several statements may be separated by `;`.
    #[arg(value_name = "SQL")]
    sql: Option<String>,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
credwatch backtest --archive arch --rules candidate-rules/ --since 2026-11-01\n  \
credwatch backtest --archive arch --config credwatch.toml --format csv > volume.csv")]
struct BacktestArgs {
    #[command(flatten)]
    setup: Setup,
    /// The archive directory.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// Only events at or after this time (RFC 3339, or a date `YYYY-MM-DD` meaning its start).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<credwatch::time::Timestamp>,
    /// Only events before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<credwatch::time::Timestamp>,
    /// `text`: a day × rule table with totals; `csv`: date,rule,alerts,folded.
    #[arg(long, value_enum, default_value = "text")]
    format: BacktestFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum BacktestFormat {
    Text,
    Csv,
}

/// The exceptions of `rules check`, each active or expired as of now (the wall clock: this is
/// for the person editing the files; detection judges expiry in event time).
fn describe_exceptions(rules: &RuleSet) -> String {
    use std::fmt::Write as _;
    let exceptions = rules.exceptions().all();
    let mut text = String::new();
    if exceptions.is_empty() {
        return text;
    }
    let now = credwatch::time::Timestamp::from_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64),
    );
    let expired = exceptions.iter().filter(|e| e.is_expired(now)).count();
    let _ = writeln!(
        text,
        "{} exceptions ({} expired: they no longer apply; renew or delete them)",
        exceptions.len(),
        expired
    );
    for exception in exceptions {
        let _ = writeln!(
            text,
            "  {:<22} {:<8} expires {}  owner {}  [{}]\n  {:<22} {}",
            exception.id,
            if exception.is_expired(now) {
                "EXPIRED"
            } else {
                "active"
            },
            exception.expires,
            exception.owner,
            exception.scope,
            "",
            exception.reason
        );
    }
    text
}

fn parse_time(text: &str) -> Result<credwatch::time::Timestamp, String> {
    credwatch::time::Timestamp::parse_rfc3339(text)
        .or_else(|_| credwatch::time::Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z")))
        .map_err(|_| {
            format!("`{text}` is neither RFC 3339 (2026-11-23T10:00:00Z) nor a date (2026-11-23)")
        })
}

#[derive(Args)]
struct ExplainArgs {
    /// The archive directory.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// The credential id (an access key id, a Vault accessor, ...).
    #[arg(value_name = "CREDENTIAL")]
    credential: String,
    /// Show at most this many of the most recent events.
    #[arg(long, default_value_t = 50)]
    limit: usize,
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
    /// Archive events and alerts as Parquet under DIR (overrides `[archive] dir`). Offsets
    /// are then committed when the archive publishes its files.
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// Threads: 2 decodes messages on a second thread, up to 32 messages ahead of the
    /// engine, which runs on the first and sees every message in order; 1 (the default)
    /// keeps both on one. The output is the same either way. Experimental: no faster where
    /// the broker is the limit, as tansu on loopback is (BENCHMARKS.md, section 2).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: Option<u8>,
}

/// `replay --threads`, or its default: 2 where two cores are available. Reading a file, the
/// engine and the decoding split the work about evenly (docs/performance-log.md, section 7).
fn replay_threads(requested: Option<u8>) -> u8 {
    requested.unwrap_or_else(|| default_replay_threads(cores()))
}

fn default_replay_threads(cores: usize) -> u8 {
    if cores >= 2 {
        2
    } else {
        1
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `run --threads`, or its default: 1. From Kafka the consumer, not decoding, is the limit,
/// and a second thread was slightly slower (BENCHMARKS.md, section 2).
fn run_threads(requested: Option<u8>) -> u8 {
    requested.unwrap_or(1)
}

#[derive(Args)]
struct CheckpointArgs {
    /// Checkpoint the state with the input position into DIR every --checkpoint-interval,
    /// on SIGINT/SIGTERM and at the end; when DIR holds a checkpoint, restore it and resume
    /// there: same state, same alerts, nothing relearned. Alerts after the last checkpoint
    /// are raised again on resume, with the same ids. `replay` writes one file (state, file
    /// and byte offset). `run` writes one file per assigned partition (its offset and the
    /// state of the credentials whose latest event came from it, under DIR/partitions/),
    /// commits offsets only at checkpoints, and reads a partition's file whenever the
    /// partition is assigned to it: give every member of a consumer group the same DIR on a
    /// shared volume and a rebalance moves state with the partitions. A partition without a
    /// file is rebuilt from the topic's beginning.
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// How often to checkpoint (`30s`, `5m`).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        requires = "checkpoint"
    )]
    checkpoint_interval: credwatch::time::Period,
}

impl CheckpointArgs {
    fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.checkpoint_interval.micros().max(0) as u64)
    }
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
        Command::Query(args) => query(args),
        Command::Explain(args) => explain(args),
        Command::Backtest(args) => backtest(args),
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
            let progress = io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(0);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{elapsed} generating: {bar:40} {pos}/{len} events",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            let generated = credwatch::demo::generate(
                args.seed,
                args.credentials as usize,
                &args.out,
                args.truth.as_deref(),
                progress.as_ref(),
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
            print!("{}", describe_exceptions(&rules));
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
        Command::Checkpoint(CheckpointCommand::Show { dir }) => {
            use credwatch::checkpoint::PartitionCheckpoint;
            if PartitionCheckpoint::present(&dir) {
                let partitions = PartitionCheckpoint::read_all(&dir)?;
                let bytes: u64 = partitions.iter().map(|(_, bytes)| bytes).sum();
                let credentials: usize = partitions
                    .iter()
                    .map(|(p, _)| p.share.store.credentials.len())
                    .sum();
                println!(
                    "checkpoint: {} ({} partition files, {bytes} bytes)",
                    dir.display(),
                    partitions.len()
                );
                println!(
                    "written by: credwatch run (format version {})",
                    credwatch::checkpoint::FORMAT_VERSION
                );
                println!("state: {credentials} credentials");
                println!("partitions:");
                for (partition, _) in &partitions {
                    print!("{}", partition.describe());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let path = credwatch::checkpoint::Checkpoint::path(&dir);
            let checkpoint = credwatch::checkpoint::Checkpoint::read(&dir)?.with_context(|| {
                format!(
                    "no checkpoint in {} ({} is missing)",
                    dir.display(),
                    path.display()
                )
            })?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            println!("checkpoint: {} ({bytes} bytes)", path.display());
            print!("{}", checkpoint.describe());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let config = args.setup.config()?;
    let rules = args.setup.rules(&config)?;
    let webhook = config.webhook.clone();
    let archive = config.archive.options(args.archive.as_deref());
    let mut engine = Engine::new(config, rules);
    let engine_config = engine.shared_config();
    if args.checkpoints.checkpoint.is_some() && args.inputs.iter().any(|input| input == "-") {
        anyhow::bail!("--checkpoint needs files: stdin cannot be resumed at a position");
    }
    if let Some(dir) = args.checkpoints.checkpoint.as_deref() {
        if credwatch::checkpoint::PartitionCheckpoint::present(dir) {
            anyhow::bail!(
                "{} holds the per-partition checkpoints of `credwatch run`; give replay a directory of its own",
                dir.display()
            );
        }
    }
    let resuming = args
        .checkpoints
        .checkpoint
        .as_deref()
        .is_some_and(|dir| credwatch::checkpoint::Checkpoint::path(dir).exists());
    let dead_letters = match args.dead_letter {
        Some(path) => DeadLetters::to_file(path, resuming)?,
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
    let mut replay = Replay::new(&mut engine, sink, dead_letters, args.format)
        .with_decode_thread(replay_threads(args.threads) >= 2);
    if io::stderr().is_terminal() {
        replay = replay.with_progress(spinner("replaying"));
    }
    if let Some(webhook) = webhook {
        replay = replay.with_responder(credwatch::respond::Responder::start(webhook)?);
    }
    if let Some(options) = archive {
        let dir = options.dir.display().to_string();
        let archive = credwatch::archive::Archive::open(options, engine_config)
            .with_context(|| format!("cannot open the archive {dir}"))?;
        replay = replay.with_archive(archive);
    }
    if let Some(dir) = args.checkpoints.checkpoint.clone() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))?;
        }
        let interval = args.checkpoints.interval();
        let shown = dir.display().to_string();
        replay = replay
            .with_checkpoints(dir, interval, &args.inputs, stop)
            .with_context(|| format!("cannot resume from the checkpoint in {shown}"))?;
    }
    replay.inputs(&args.inputs)?;
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
    let archive_options = config.archive.options(args.archive.as_deref());
    let mut engine = Engine::new(config, rules).with_allowed_lateness(kafka.allowed_lateness);
    let mut archive = match archive_options {
        Some(options) => {
            let dir = options.dir.display().to_string();
            Some(
                credwatch::archive::Archive::open(options, engine.shared_config())
                    .with_context(|| format!("cannot open the archive {dir}"))?,
            )
        }
        None => None,
    };

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
        checkpoint_interval: args.checkpoints.interval(),
        checkpoint: args.checkpoints.checkpoint,
        decode_thread: run_threads(args.threads) >= 2,
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
        archive.as_mut(),
        &options,
        &shutdown,
    )?;
    eprint!("{}", summary.render());
    if let Some(archive) = archive {
        let dir = archive.dir().to_owned();
        eprint!("{}", archive.finish()?.render(&dir));
    }
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

fn query(args: QueryArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::builtin(),
    };
    let query = credwatch::query::Query::open(&args.archive, std::sync::Arc::new(config))?;
    let script = match (&args.file, &args.sql) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, Some(sql)) => sql.clone(),
        (None, None) if io::stdin().is_terminal() => {
            credwatch::query::prompt::run(&query, args.format)?;
            return Ok(ExitCode::SUCCESS);
        }
        (None, None) => {
            let mut script = String::new();
            io::stdin()
                .read_to_string(&mut script)
                .context("cannot read SQL from stdin")?;
            script
        }
    };
    let statements = credwatch::query::statements(&script);
    if statements.is_empty() {
        anyhow::bail!("no SQL statement given");
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for statement in &statements {
        let results = query
            .sql(statement)
            .with_context(|| format!("query failed: {statement}"))?;
        credwatch::query::write(&results, args.format, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let query =
        credwatch::query::Query::open(&args.archive, std::sync::Arc::new(Config::builtin()))?;
    let report = credwatch::query::explain::explain(&query, &args.credential, args.limit)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn backtest(args: BacktestArgs) -> Result<ExitCode> {
    let config = args.setup.config()?;
    let rules = args.setup.rules(&config)?;
    let mut engine = Engine::new(config, rules);
    let query = credwatch::query::Query::open(&args.archive, engine.shared_config())?;
    let report = credwatch::backtest::backtest(&query, &mut engine, args.since, args.until)?;
    match args.format {
        BacktestFormat::Text => print!("{}", report.render()),
        BacktestFormat::Csv => print!("{}", report.to_csv()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_decodes_on_a_second_thread_only_where_there_is_a_second_core() {
        assert_eq!(default_replay_threads(1), 1);
        assert_eq!(default_replay_threads(2), 2);
        assert_eq!(default_replay_threads(16), 2);
        assert_eq!(replay_threads(Some(1)), 1);
        assert_eq!(run_threads(None), 1);
        assert_eq!(run_threads(Some(2)), 2);
    }
}
