//! Archive benchmark: write rate of the Parquet archive, and three representative queries run
//! by DataFusion (`credwatch query`) and by DuckDB on the same files in the same run.
//!
//! Run: `cargo bench --bench archive` (10 million events; `CREDWATCH_BENCH_EVENTS=N` for
//! another size). DuckDB runs through its Python package (`pip install duckdb pytz`); without it
//! the DuckDB column is skipped with a note. Figures: rows/s of `Archive::event` through
//! `finish` (sealing, sorting, zstd, fsync and rename included), with the CPU seconds used by
//! both threads, and for each query the median of 5 runs after a warm-up.
//!
//! `CREDWATCH_BENCH_ARCHIVE=DIR` keeps the archive in DIR (with `bench-params.txt`, the day and
//! the credential the queries select); a later run with the same setting reuses it and times
//! only the queries, which is what iterating on the read side needs.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credwatch::archive::{Archive, ArchiveOptions};
use credwatch::config::Config;
use credwatch::demo::World;
use credwatch::event::Event;
use credwatch::query::Query;

/// User and system CPU seconds of this process so far (Linux), if known.
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Events of the demo's synthetic organisation, about `target` of them, in time order.
fn events(target: usize) -> Vec<Event> {
    // A demo credential averages about 2,850 events a day.
    let credentials = (target / 2_850).max(100);
    let mut world = World::generate(11, credentials);
    world.sort();
    world
        .plan
        .iter()
        .take(target)
        .enumerate()
        .map(|(i, planned)| world.render(planned, i as u64))
        .collect()
}

struct Timed {
    name: &'static str,
    sql: String,
    rows: usize,
    /// credwatch's plan (with its dense GROUP BY).
    time: Duration,
    /// DataFusion's own plan (`SET credwatch.dense_group_by = false`), in the same rounds.
    plain: Duration,
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no other arguments.
    let target: usize = std::env::var("CREDWATCH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    // `CREDWATCH_BENCH_ARCHIVE=DIR` keeps the archive in DIR, and a later run with the same
    // setting reuses it and times only the queries (for iterating on the read side).
    let (archive_dir, kept) = match std::env::var_os("CREDWATCH_BENCH_ARCHIVE") {
        Some(kept) => (std::path::PathBuf::from(kept), true),
        None => (dir.path().join("archive"), false),
    };
    let params_file = archive_dir.join("bench-params.txt");
    let (day, credential, config) = match std::fs::read_to_string(&params_file) {
        Ok(params) if kept => {
            let (day, credential) = params.trim().split_once(' ').expect("bench params");
            println!(
                "reusing the archive in {} (written by an earlier run; write not measured)",
                archive_dir.display()
            );
            let config =
                Config::parse("demo config", credwatch::demo::DEMO_CONFIG).expect("demo config");
            (day.to_owned(), credential.to_owned(), Arc::new(config))
        }
        _ => {
            let (day, credential, config) = write(target, &archive_dir);
            if kept {
                std::fs::write(&params_file, format!("{day} {credential}\n"))
                    .expect("write bench params");
            }
            (day, credential, config)
        }
    };
    queries(&archive_dir, &day, &credential, config);
}

/// Archives about `target` events into `archive_dir` and prints the write figures; returns the
/// day and the credential the queries select, and the configuration used.
fn write(target: usize, archive_dir: &Path) -> (String, String, Arc<Config>) {
    let started = Instant::now();
    let events = events(target);
    println!(
        "generated {} events in {:.1}s",
        events.len(),
        started.elapsed().as_secs_f64()
    );

    // The demo organisation's zones: prod, staging, ci, corp, vendors.
    let config =
        Arc::new(Config::parse("demo config", credwatch::demo::DEMO_CONFIG).expect("demo config"));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut archive =
        Archive::open(ArchiveOptions::new(archive_dir), Arc::clone(&config)).expect("open archive");
    for event in &events {
        // The zones stage's placement, as the engine would hand it over.
        let ip = event
            .source_ip
            .as_deref()
            .and_then(credwatch::zones::parse_ip);
        let zone = config.zones.classify(ip, event.zone.as_deref());
        let network = ip.map(credwatch::zones::Network::of);
        archive.event(event, zone, network).expect("archive event");
    }
    let appended = started.elapsed().as_secs_f64();
    let summary = archive.finish().expect("finish archive");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| (after.0 - before.0, after.1 - before.1));
    println!(
        "write: {} rows in {:.2}s = {:.0} rows/s wall; {} files, {:.1} MiB ({:.1} bytes/row)",
        summary.written.rows,
        wall,
        summary.written.rows as f64 / wall,
        summary.written.files,
        summary.written.bytes as f64 / 1048576.0,
        summary.written.bytes as f64 / summary.written.rows.max(1) as f64,
    );
    println!(
        "write: appending took {appended:.2}s (the file thread working alongside), \
         finishing the last files {:.2}s",
        wall - appended
    );
    if let Some((user, system)) = cpu {
        println!(
            "write: {:.2} CPU-s over both threads ({user:.2} user, {system:.2} system) \
             = {:.0} rows per CPU-second (per core)",
            user + system,
            summary.written.rows as f64 / (user + system)
        );
    }

    let day = events[events.len() / 2].ts.to_rfc3339()[..10].to_owned();
    // A busy credential: the one of the middle event.
    let credential = events[events.len() / 2].credential.clone();
    (day, credential, config)
}

/// Times the three queries with DataFusion, then with DuckDB, and prints the comparison.
fn queries(archive_dir: &Path, day: &str, credential: &str, config: Arc<Config>) {
    let queries = [
        (
            "count by zone for a day",
            format!(
                "SELECT zone, count(*) AS events FROM events WHERE date = '{day}' \
                 GROUP BY zone ORDER BY events DESC, zone"
            ),
        ),
        (
            "top credentials by distinct networks",
            "SELECT credential, count(DISTINCT network) AS networks FROM events \
             GROUP BY credential ORDER BY networks DESC, credential LIMIT 10"
                .to_owned(),
        ),
        (
            "one credential's timeline",
            format!(
                "SELECT time, kind, zone, source_ip, endpoint FROM events \
                 WHERE credential = '{credential}' ORDER BY time, event_id"
            ),
        ),
    ];

    let query = Query::open(archive_dir, config).expect("open query");
    let dense = |on: bool| {
        query
            .sql(&format!("SET credwatch.dense_group_by = {on}"))
            .expect("set credwatch.dense_group_by");
    };
    let mut timed = Vec::new();
    for (name, sql) in &queries {
        let warm = query.sql(sql).expect("query");
        let (mut samples, mut plain) = (Vec::new(), Vec::new());
        // Alternate the two plans, so that noise on this shared machine hits both alike.
        for _ in 0..5 {
            for (on, samples) in [(true, &mut samples), (false, &mut plain)] {
                dense(on);
                let started = Instant::now();
                let results = query.sql(sql).expect("query");
                samples.push(started.elapsed());
                assert_eq!(results.rows(), warm.rows());
            }
        }
        dense(true);
        timed.push(Timed {
            name,
            sql: sql.clone(),
            rows: warm.rows(),
            time: median(samples),
            plain: median(plain),
        });
    }

    let duckdb = run_duckdb(archive_dir, &timed);
    println!();
    println!(
        "{:<40} {:>8} {:>14} {:>14} {:>12} {:>18}",
        "query", "rows", "DataFusion ms", "(own plan ms)", "DuckDB ms", "DuckDB/DataFusion"
    );
    for (i, query) in timed.iter().enumerate() {
        let datafusion = query.time.as_secs_f64() * 1000.0;
        let plain = query.plain.as_secs_f64() * 1000.0;
        match duckdb.as_ref().map(|d| d[i]) {
            Some((rows, ms)) => {
                assert_eq!(
                    rows, query.rows,
                    "DuckDB and DataFusion disagree on {}",
                    query.name
                );
                println!(
                    "{:<40} {:>8} {:>14.1} {:>14.1} {:>12.1} {:>18.2}",
                    query.name,
                    query.rows,
                    datafusion,
                    plain,
                    ms,
                    ms / datafusion
                );
            }
            None => println!(
                "{:<40} {:>8} {:>14.1} {:>14.1} {:>12} {:>18}",
                query.name, query.rows, datafusion, plain, "-", "-"
            ),
        }
    }
    println!(
        "(DataFusion is credwatch's plan, with its dense GROUP BY; \"own plan\" is DataFusion's \
         hash aggregation, measured in the same rounds; a ratio above 1 means credwatch was faster)"
    );
}

/// Runs the same queries with DuckDB over the same files: (rows, median ms) per query.
fn run_duckdb(archive: &Path, queries: &[Timed]) -> Option<Vec<(usize, f64)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_queries.py");
    let mut command = Command::new("python3");
    command.arg(&script).arg(archive);
    for query in queries {
        command.arg(&query.sql);
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => {
            println!("DuckDB skipped: cannot run python3 ({e})");
            return None;
        }
    };
    if !output.status.success() {
        println!(
            "DuckDB skipped: {} (install it with `pip install duckdb pytz`)",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let results: Vec<(usize, f64)> = text
        .lines()
        .filter_map(|line| {
            let (rows, ms) = line.split_once(' ')?;
            Some((rows.parse().ok()?, ms.parse().ok()?))
        })
        .collect();
    (results.len() == queries.len()).then_some(results)
}
