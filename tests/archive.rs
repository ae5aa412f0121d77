//! The Parquet archive and `credwatch query`: events replayed into an archive come back
//! identical, the SQL surface works from the command line, and a writer killed mid-file leaves
//! a readable archive with no finished file lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credwatch::archive::read::events_from_batch;
use credwatch::config::Config;
use credwatch::decode::{Decoder, NativeDecoder};
use credwatch::event::Event;
use credwatch::query::Query;

use crate::util::{credwatch, repo, stderr, success};

/// The events of a native JSON-lines file, decoded as replay does.
fn decode_file(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).expect("read events");
    let mut events = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        NativeDecoder::new()
            .decode(line.as_bytes(), &mut events)
            .expect("valid event");
    }
    events
}

fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| {
        (a.ts, &a.credential, &a.event_id).cmp(&(b.ts, &b.credential, &b.event_id))
    });
    events
}

fn archived_events(query: &Query) -> Vec<Event> {
    let results = query.sql("SELECT * FROM events").expect("select events");
    results
        .batches
        .iter()
        .flat_map(|batch| events_from_batch(batch).expect("archived events"))
        .collect()
}

fn parquet_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path);
            }
        }
    }
    files
}

/// A synthetic day of `credentials` credentials, written by `credwatch gen`.
fn generated_day(dir: &Path, credentials: u32) -> PathBuf {
    let path = dir.join("day.jsonl");
    success(
        &credwatch()
            .args(["gen", "--seed", "3", "--credentials"])
            .arg(credentials.to_string())
            .arg("--out")
            .arg(&path)
            .output()
            .expect("run gen"),
    );
    path
}

/// `credwatch replay --output OUTPUT --config CONFIG --archive ARCHIVE INPUT`, which must
/// succeed; returns its output.
fn replay_into(config: &Path, archive: &Path, input: &Path, output: &str) -> std::process::Output {
    let result = credwatch()
        .args(["replay", "--output", output, "--config"])
        .arg(config)
        .arg("--archive")
        .arg(archive)
        .arg(input)
        .output()
        .expect("run replay");
    success(&result);
    result
}

/// tests/data/scenario.jsonl replayed into `dir`/archive with its config; returns the archive.
fn scenario_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("archive");
    replay_into(
        &repo("tests/data/scenario.toml"),
        &archive,
        &repo("tests/data/scenario.jsonl"),
        "none",
    );
    archive
}

#[test]
fn replayed_events_come_back_identical_from_select() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = generated_day(dir.path(), 100);
    let archive = dir.path().join("archive");
    // Small files and row groups, so the round trip crosses many of both.
    let config = dir.path().join("credwatch.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(repo("src/demo/config.toml")).expect("demo config")
            + "\n[archive]\nroll_rows = 50000\nrow_group_rows = 8192\n",
    )
    .expect("write config");
    let output = replay_into(&config, &archive, &input, "json");
    let alerts_json = success(&output);
    assert!(
        stderr(&output).contains("archive "),
        "the summary names the archive:\n{}",
        stderr(&output)
    );

    let expected = sorted(decode_file(&input));
    assert!(expected.len() > 100_000, "a day of 100 credentials");
    let config = Arc::new(Config::load(&config).expect("config"));
    let query = Query::open(&archive, config).expect("open archive");

    let count = query
        .sql("SELECT count(*) AS n FROM events")
        .expect("count");
    let text = credwatch::query::write_to_string(&count, credwatch::query::OutputFormat::Csv);
    assert_eq!(text, format!("n\n{}\n", expected.len()));
    let actual = sorted(archived_events(&query));
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e, "archived event differs from its input");
    }

    // Every alert printed is archived, with the same ids.
    let printed: BTreeSet<String> = alerts_json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("alert JSON")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    let ids = query.sql("SELECT id FROM alerts").expect("alert ids");
    let archived: BTreeSet<String> =
        credwatch::query::write_to_string(&ids, credwatch::query::OutputFormat::Csv)
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect();
    assert!(!printed.is_empty());
    assert_eq!(archived, printed);

    // Files are sorted by (credential, time) and partitioned by event hour.
    let files: Vec<PathBuf> = parquet_files(&archive.join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(files.len() >= 24, "one day spans 24 hour partitions");
    for file in &files {
        let partition = file.parent().expect("hour dir");
        let hour = partition
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let date = partition.parent().unwrap().file_name().unwrap();
        assert!(hour.starts_with("hour=") && date.to_string_lossy().starts_with("date="));
        // zstd, except the labels' pages of dictionary keys, which it would not shrink.
        use parquet::file::reader::FileReader as _;
        let reader = parquet::file::reader::SerializedFileReader::new(
            std::fs::File::open(file).expect("open events file"),
        )
        .expect("a Parquet file");
        for group in reader.metadata().row_groups() {
            for column in group.columns() {
                let name = column.column_path().string();
                let plain = ["kind", "outcome", "zone", "format"].contains(&name.as_str());
                match column.compression() {
                    parquet::basic::Compression::UNCOMPRESSED => assert!(plain, "{name}"),
                    parquet::basic::Compression::ZSTD(_) => assert!(!plain, "{name}"),
                    other => panic!("{name} is {other:?}"),
                }
            }
        }
    }
}

#[test]
fn query_prints_tables_csv_and_json_with_zone_functions_and_partition_filters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = scenario_archive(dir.path());
    let query = |format: &str, sql: &str| {
        success(
            &credwatch()
                .args(["query", "--config"])
                .arg(repo("tests/data/scenario.toml"))
                .arg("--archive")
                .arg(&archive)
                .args(["--format", format, sql])
                .output()
                .expect("query"),
        )
    };
    let total = query("csv", "SELECT count(*) AS n FROM events");
    let total: usize = total.lines().nth(1).expect("a row").parse().expect("count");
    assert_eq!(total, valid_scenario_events());

    // zone_of over the stored addresses agrees with the zone placed at archive time.
    let disagreements = query(
        "csv",
        "SELECT count(*) AS n FROM events WHERE source_ip IS NOT NULL AND zone_of(source_ip) <> zone",
    );
    assert_eq!(disagreements, "n\n0\n");
    let internet = query(
        "csv",
        "SELECT count(*) AS n FROM events WHERE zone = 'internet'",
    );
    assert_ne!(internet, "n\n0\n", "the scenario has internet use");

    let cidr = query(
        "json",
        "SELECT ip_in_cidr('10.1.2.3', '10.0.0.0/8') AS a, ip_in_cidr('10.1.2.3', '192.168.0.0/16') AS b, ip_in_cidr('nonsense', '10.0.0.0/8') AS c",
    );
    assert_eq!(cidr.trim(), r#"{"a":true,"b":false}"#);

    // A partition filter reads only that day's rows.
    let days = query(
        "csv",
        "SELECT date, count(*) AS n FROM events GROUP BY date ORDER BY date",
    );
    let (day, n) = days
        .lines()
        .nth(1)
        .and_then(|l| l.split_once(','))
        .expect("a day");
    let on_day = query(
        "csv",
        &format!("SELECT count(*) AS n FROM events WHERE date = '{day}'"),
    );
    assert_eq!(on_day, format!("n\n{n}\n"));
    let per_day: usize = days
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap().1.parse::<usize>().unwrap())
        .sum();
    assert_eq!(per_day, total);
    // Pruned in planning: the scan lists that day's files only.
    let plan = query(
        "csv",
        &format!("EXPLAIN SELECT credential FROM events WHERE date = '{day}'"),
    );
    assert!(plan.contains(&format!("date={day}/")), "{plan}");
    let other = days
        .lines()
        .nth(2)
        .and_then(|l| l.split_once(','))
        .expect("two days")
        .0;
    assert!(
        !plan.contains(&format!("date={other}/")),
        "a file of another day is scanned:\n{plan}"
    );

    // GROUP BY runs credwatch's dense aggregation, and gives what DataFusion's own plan gives.
    for (grouped, groups) in [
        (
            "SELECT credential, zone, count(*) AS n, max(endpoint) AS e, min(time) AS first \
             FROM events GROUP BY credential, zone ORDER BY credential, zone",
            5,
        ),
        (
            "SELECT credential, count(DISTINCT network) AS networks FROM events \
             GROUP BY credential ORDER BY credential",
            5,
        ),
        // A label counted alone (by runs of dictionary keys), over rows a filter thinned out:
        // a zone in the files' dictionaries that no kept row has is no group.
        (
            "SELECT zone, count(*) AS n FROM events WHERE kind <> 'access' \
             GROUP BY zone ORDER BY zone",
            1,
        ),
        (
            "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
            3,
        ),
    ] {
        let plan = query("csv", &format!("EXPLAIN {grouped}"));
        assert!(plan.contains("DenseAggregateExec"), "{plan}");
        let dense = query("csv", grouped);
        let off = "SET credwatch.dense_group_by = false";
        // (The SET statement prints an empty result first.)
        assert_eq!(
            dense,
            query("csv", &format!("{off}; {grouped}")).trim_start()
        );
        assert!(dense.lines().count() > groups, "{dense}");
        let plan = query("csv", &format!("{off}; EXPLAIN {grouped}"));
        assert!(!plan.contains("DenseAggregateExec"), "{plan}");
    }

    let table = query(
        "table",
        "SELECT rule, count(*) AS alerts FROM alerts GROUP BY rule ORDER BY rule",
    );
    assert!(table.contains("| rule"), "a text table:\n{table}");
    assert!(table.contains("zone-violation"), "{table}");

    // The credentials table carries the exported state.
    let state = query(
        "csv",
        "SELECT count(*) AS n FROM credentials WHERE accesses > 0 AND cardinality(networks) > 0",
    );
    assert_ne!(state, "n\n0\n");

    // A bad query is an error naming the problem, with exit code 2.
    let output = credwatch()
        .args(["query", "--archive"])
        .arg(&archive)
        .arg("SELECT nope FROM events")
        .output()
        .expect("query");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nope"), "{}", stderr(&output));
}

/// Rewrites one events file as archives before the labels were dictionaries wrote it: every
/// string column `Utf8`. Returns the rows it holds.
fn rewrite_with_plain_labels(file: &Path) -> usize {
    use arrow::datatypes::{DataType, Schema};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file).expect("open parquet"),
    )
    .expect("parquet")
    .build()
    .expect("reader");
    let batches: Vec<_> = reader.map(|batch| batch.expect("batch")).collect();
    let plain = |schema: &Schema| {
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Dictionary(..) => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ))
    };
    let schema = plain(&batches[0].schema());
    assert_ne!(
        *schema,
        *batches[0].schema(),
        "the file holds dictionary labels"
    );
    let old = file.with_file_name("part-old.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&old).expect("create"),
        Arc::clone(&schema),
        None,
    )
    .expect("writer");
    let mut rows = 0;
    for batch in &batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()).expect("cast"))
            .collect();
        let batch = arrow::record_batch::RecordBatch::try_new(Arc::clone(&schema), columns)
            .expect("plain batch");
        rows += batch.num_rows();
        writer.write(&batch).expect("write");
    }
    writer.close().expect("close");
    std::fs::remove_file(file).expect("remove the new-layout file");
    rows
}

#[test]
fn labels_read_as_dictionaries_and_files_with_plain_labels_still_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = scenario_archive(dir.path());
    let query = |format: &str, sql: &str| {
        success(
            &credwatch()
                .args(["query", "--archive"])
                .arg(&archive)
                .args(["--format", format, sql])
                .output()
                .expect("query"),
        )
    };
    let described = query("csv", "DESCRIBE events");
    for label in ["kind", "outcome", "zone", "format"] {
        assert!(
            described.contains(&format!("{label},\"Dictionary(Int32, Utf8)\"")),
            "{label}:\n{described}"
        );
    }
    let by_zone =
        "SELECT zone, kind, count(*) AS n FROM events GROUP BY zone, kind ORDER BY zone, kind";
    let before = query("csv", by_zone);
    assert!(before.lines().count() > 3, "{before}");
    let json = query(
        "json",
        "SELECT zone, kind, outcome, format FROM events WHERE zone = 'internet' LIMIT 1",
    );
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("a JSON row");
    assert_eq!(row["zone"], "internet");
    assert!(
        row["kind"].is_string() && row["format"].is_string(),
        "{row}"
    );

    // Every events file rewritten as an older credwatch wrote it: the same answers.
    let files: Vec<PathBuf> = parquet_files(&archive.join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!files.is_empty());
    let rows: usize = files.iter().map(|f| rewrite_with_plain_labels(f)).sum();
    assert_eq!(rows, valid_scenario_events());
    assert_eq!(query("csv", by_zone), before);
    let internet = query(
        "csv",
        "SELECT count(*) AS n FROM events WHERE zone = 'internet' AND kind = 'access'",
    );
    assert_ne!(internet, "n\n0\n");
}

#[test]
fn explain_shows_a_credentials_state_alerts_and_timeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("archive");
    let output = replay_into(
        &repo("tests/data/scenario.toml"),
        &archive,
        &repo("tests/data/scenario.jsonl"),
        "json",
    );
    let alerts = success(&output);
    let first: serde_json::Value =
        serde_json::from_str(alerts.lines().next().expect("an alert")).expect("alert JSON");
    let credential = first["credential"].as_str().expect("credential");
    let rule = first["rule"].as_str().expect("rule");
    let report = success(
        &credwatch()
            .args(["explain", "--archive"])
            .arg(&archive)
            .arg(credential)
            .output()
            .expect("explain"),
    );
    assert!(report.starts_with(&format!("credential {credential}")));
    assert!(report.contains("state (at the last export):"), "{report}");
    assert!(
        report.contains(rule),
        "the alert's rule is listed:\n{report}"
    );
    assert!(report.contains("latest events"), "{report}");
}

#[test]
fn a_leak_report_looks_back_in_state_and_explain_looks_back_in_the_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("archive");
    let mut lines = vec![
        r#"{"ts":"2026-02-27T00:00:00Z","kind":"issue","credential":"AKIALOOKBACK","owner":"svc-reports","allowed_zones":["prod"]}"#.to_owned(),
    ];
    for minute in 0..120 {
        lines.push(format!(
            r#"{{"ts":"2026-02-27T{:02}:{:02}:30Z","kind":"access","credential":"AKIALOOKBACK","source_ip":"10.0.1.7","endpoint":"s3:GetObject"}}"#,
            minute / 60,
            minute % 60
        ));
    }
    lines.push(r#"{"ts":"2026-03-01T04:00:00Z","kind":"access","credential":"AKIALOOKBACK","source_ip":"10.0.1.8","endpoint":"s3:GetObject"}"#.to_owned());
    lines.push(r#"{"ts":"2026-03-01T05:00:00Z","kind":"access","credential":"AKIALOOKBACK","source_ip":"203.0.113.44","endpoint":"sts:GetCallerIdentity"}"#.to_owned());
    lines.push(r#"{"ts":"2026-03-01T07:00:00Z","kind":"leak","credential":"AKIALOOKBACK","leak_source":"github-secret-scanning"}"#.to_owned());
    let input = dir.path().join("lookback.jsonl");
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let output = replay_into(&repo("tests/data/scenario.toml"), &archive, &input, "text");
    let alerts = success(&output);
    let lookback: Vec<&str> = alerts
        .lines()
        .filter(|l| l.contains("leak-lookback"))
        .collect();
    assert_eq!(lookback.len(), 1, "{alerts}");
    assert!(
        lookback[0].contains("203.0.113.0/24 (new zone internet) at 2026-03-01T05:00:00Z"),
        "{alerts}"
    );
    let report = success(
        &credwatch()
            .args(["explain", "--archive"])
            .arg(&archive)
            .arg("AKIALOOKBACK")
            .output()
            .expect("explain"),
    );
    let section = report
        .split("new networks in the 24h before the leak report: 1")
        .nth(1)
        .unwrap_or_else(|| panic!("no look-back section:\n{report}"));
    assert!(section.contains("203.0.113.0/24"), "{report}");
    assert!(
        !section[..section.find("alerts:").unwrap_or(section.len())].contains("10.0.1.0/24"),
        "{report}"
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = credwatch::archive::ArchiveOptions::new(dir.path());
    let config = Arc::new(Config::builtin());
    let first = credwatch::archive::Archive::open(options.clone(), Arc::clone(&config))
        .expect("first writer");
    let second = credwatch::archive::Archive::open(options.clone(), Arc::clone(&config));
    assert!(
        matches!(second, Err(credwatch::archive::ArchiveError::Locked(_))),
        "second writer refused"
    );
    first.finish().expect("finish");
    credwatch::archive::Archive::open(options, config)
        .expect("free again")
        .finish()
        .expect("finish");
}

/// Reads every row of a Parquet file, failing on any corruption.
fn parquet_rows(path: &Path) -> usize {
    let file = std::fs::File::open(path).expect("open parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()))
        .build()
        .expect("reader");
    reader
        .map(|batch| batch.expect("readable batch").num_rows())
        .sum()
}

#[test]
fn a_writer_killed_mid_file_leaves_a_readable_archive_and_loses_no_finished_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = generated_day(dir.path(), 300);
    let archive = dir.path().join("archive");
    let config = dir.path().join("credwatch.toml");
    std::fs::write(&config, "[archive]\nroll_rows = 20000\n").expect("config");
    let mut child = credwatch()
        .args(["replay", "--output", "none", "--config"])
        .arg(&config)
        .arg("--archive")
        .arg(&archive)
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replay");
    // Kill it once a few files are published, while it is writing more.
    let started = Instant::now();
    let published = |dir: &Path| {
        parquet_files(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    while published(&archive) < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "replay published no files"
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "replay finished before it could be killed; use a bigger input"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let files = parquet_files(&archive);
    let finished: BTreeSet<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .cloned()
        .collect();
    assert!(finished.len() >= 5);
    let mut rows = 0;
    for file in &finished {
        rows += parquet_rows(file);
    }
    // Readers skip what the killed writer left half-written.
    let query = Query::open(&archive, Arc::new(Config::builtin())).expect("open");
    let counted = query.sql("SELECT count(*) FROM events").expect("count");
    let counted: i64 = counted.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("count column")
        .value(0);
    assert_eq!(counted as usize, rows - alert_rows(&finished));

    // The next writer removes temporaries and keeps every finished file.
    let output = credwatch()
        .args(["replay", "--output", "none", "--archive"])
        .arg(&archive)
        .arg(repo("tests/data/scenario.jsonl"))
        .output()
        .expect("second replay");
    success(&output);
    let after = parquet_files(&archive);
    assert!(
        finished.is_subset(&after),
        "a finished file was lost after restart"
    );
    assert!(
        after.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "temporaries remain: {after:?}"
    );
}

fn alert_rows(files: &BTreeSet<PathBuf>) -> usize {
    files
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "alerts"))
        .map(|p| parquet_rows(p))
        .sum()
}

#[test]
fn every_example_query_runs_on_a_demo_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = generated_day(dir.path(), 100);
    let archive = dir.path().join("archive");
    let config = repo("src/demo/config.toml");
    replay_into(&config, &archive, &input, "none");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo("examples/queries"))
        .expect("examples/queries")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5);
    let mut with_rows = 0;
    for example in &examples {
        let output = credwatch()
            .args(["query", "--format", "csv", "--config"])
            .arg(&config)
            .arg("--archive")
            .arg(&archive)
            .arg("--file")
            .arg(example)
            .output()
            .expect("query");
        let csv = success(&output);
        assert!(!csv.is_empty(), "{} printed nothing", example.display());
        with_rows += usize::from(csv.lines().count() > 1);
    }
    // The demo day has internet use, leaks and alerts: most examples find something.
    assert!(
        with_rows >= examples.len() - 1,
        "{with_rows} of {}",
        examples.len()
    );
}

/// The events of tests/data/scenario.jsonl that decode (it also holds malformed lines).
pub fn valid_scenario_events() -> usize {
    let text = std::fs::read_to_string(repo("tests/data/scenario.jsonl")).expect("scenario");
    text.lines()
        .filter(|line| {
            let mut events = Vec::new();
            NativeDecoder::new()
                .decode(line.as_bytes(), &mut events)
                .is_ok()
        })
        .count()
}

#[test]
fn backtest_counts_equal_those_of_a_replay_of_the_same_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = generated_day(dir.path(), 100);
    let archive = dir.path().join("archive");
    let config = repo("src/demo/config.toml");
    let alerts = success(&replay_into(&config, &archive, &input, "json"));
    // date,rule -> (alerts, folded) from the replay's own alerts.
    let mut expected: std::collections::BTreeMap<(String, String), (u64, u64)> = Default::default();
    for line in alerts.lines() {
        let alert: serde_json::Value = serde_json::from_str(line).expect("alert JSON");
        let day = alert["time_dt"].as_str().expect("time_dt")[..10].to_owned();
        let rule = alert["rule"].as_str().expect("rule").to_owned();
        let counts = expected.entry((day, rule)).or_default();
        match alert["activity_id"].as_u64() {
            Some(1) => counts.0 += 1,
            _ => counts.1 += alert["count"].as_u64().expect("count") - 1,
        }
    }
    assert!(expected.len() >= 5, "the demo day raises several rules");
    let mut csv = String::from("date,rule,alerts,folded\n");
    for ((day, rule), (alerts, folded)) in &expected {
        csv.push_str(&format!("{day},{rule},{alerts},{folded}\n"));
    }
    let backtest = success(
        &credwatch()
            .args(["backtest", "--format", "csv", "--config"])
            .arg(&config)
            .arg("--archive")
            .arg(&archive)
            .output()
            .expect("backtest"),
    );
    assert_eq!(backtest, csv);

    // A rule set without zone-violation: the day's volume without it, judged before a change.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    for entry in std::fs::read_dir(repo("rules")).expect("rules") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml")
            && !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("zone-violation")
        {
            std::fs::copy(&path, rules.join(path.file_name().unwrap())).expect("copy rule");
        }
    }
    std::fs::create_dir(rules.join("testdata")).expect("testdata dir");
    std::fs::copy(
        repo("rules/testdata/zones.toml"),
        rules.join("testdata/zones.toml"),
    )
    .expect("copy rule test zones");
    let without = success(
        &credwatch()
            .args(["backtest", "--format", "csv", "--config"])
            .arg(&config)
            .arg("--rules")
            .arg(&rules)
            .arg("--archive")
            .arg(&archive)
            .output()
            .expect("backtest"),
    );
    assert!(!without.contains(",zone-violation,"), "{without}");
    assert!(backtest.contains(",zone-violation,"));
    // --since after the day: nothing to replay.
    let later = success(
        &credwatch()
            .args(["backtest", "--since", "2100-01-01", "--archive"])
            .arg(&archive)
            .output()
            .expect("backtest"),
    );
    assert!(later.starts_with("backtest: 0 events"), "{later}");
}

/// A `credwatch query` prompt on a pseudo-terminal (util-linux's `script` gives it one), fed
/// a line at a time once the prompt before it is shown.
struct Prompt {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Prompt {
    /// Whether `script` can give a command a terminal here.
    fn available() -> bool {
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start(archive: &Path, state: &Path) -> Prompt {
        let mut child = std::process::Command::new("script")
            .args([
                "-q",
                "-e",
                "-c",
                r#""$CREDWATCH" query --archive "$ARCHIVE""#,
                "/dev/null",
            ])
            .env("CREDWATCH", env!("CARGO_BIN_EXE_credwatch"))
            .env("ARCHIVE", archive)
            .env("XDG_STATE_HOME", state)
            .env("SHELL", "/bin/sh")
            // Line editing and history recall need a terminal type that has them.
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script");
        let input = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buffer) {
                sink.lock().expect("output").extend_from_slice(&buffer[..n]);
            }
        });
        Prompt {
            child,
            input,
            output,
        }
    }

    /// What the terminal showed so far, without escape sequences and carriage returns.
    fn screen(&self) -> String {
        let bytes = self.output.lock().expect("output").clone();
        let text = String::from_utf8_lossy(&bytes);
        let mut plain = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\u{1b}' => {
                    // CSI: ESC [ parameters, then one final letter.
                    if chars.next_if_eq(&'[').is_some() {
                        while chars.next().is_some_and(|c| !c.is_ascii_alphabetic()) {}
                    }
                }
                '\r' => {}
                c => plain.push(c),
            }
        }
        plain
    }

    /// Waits until `marker` has been shown `times` times and `prompt` after it. Only a drawn
    /// prompt reads what is typed next (the editor may drop keys typed before it), and it is
    /// not counted itself: the editor redraws it as keys arrive.
    fn wait_for(&self, marker: &str, times: usize, prompt: &str) {
        let after = || {
            let screen = self.screen();
            let at = screen.match_indices(marker).nth(times - 1);
            at.map_or(String::new(), |(at, _)| {
                screen[at + marker.len()..].to_owned()
            })
        };
        crate::util::wait_for_text(after, prompt, 1);
    }

    fn assert_shows(&self, text: &str) {
        let screen = self.screen();
        assert!(screen.contains(text), "{text:?} not shown:\n{screen}");
    }

    /// Types `keys` (a line ends with "\r", as Enter sends).
    fn type_keys(&mut self, keys: &str) {
        std::io::Write::write_all(&mut self.input, keys.as_bytes()).expect("type");
        std::io::Write::flush(&mut self.input).expect("flush");
    }

    /// Waits for the prompt to end (after `\q`) and returns its exit status.
    fn finish(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the prompt did not end:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn on_a_terminal_query_prompts_goes_on_after_an_error_and_keeps_its_history() {
    if !Prompt::available() {
        eprintln!("skipped: no util-linux `script` here to give the prompt a terminal");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = scenario_archive(dir.path());
    let state = dir.path().join("state");
    const PROMPT: &str = "credwatch> ";
    const BANNER_END: &str = "Examples are in examples/queries/.";
    const TIMED: &str = " rows in ";

    let mut prompt = Prompt::start(&archive, &state);
    prompt.wait_for(BANNER_END, 1, PROMPT);
    prompt.assert_shows("Tables: events, alerts");
    // Each statement ends with its timing line, then the next prompt.
    prompt.type_keys("SELECT count(*) AS n FROM events;\r");
    prompt.wait_for(TIMED, 1, PROMPT);
    let count = format!("| {:<3}|", valid_scenario_events());
    prompt.assert_shows(&count);
    // An error is printed and the prompt goes on.
    prompt.type_keys("SELECT no_such_column FROM events;\r");
    prompt.wait_for("error: ", 1, PROMPT);
    // A statement over two lines, ended by its `;`.
    prompt.type_keys("SELECT 6 *\r");
    prompt.wait_for("SELECT 6 *", 1, "       ... ");
    prompt.type_keys("7 AS answer;\r");
    prompt.wait_for(TIMED, 2, PROMPT);
    prompt.assert_shows("| 42     |");
    prompt.type_keys("\\q\r");
    assert!(prompt.finish().success());

    let history = std::fs::read_to_string(state.join("credwatch/query_history"))
        .expect("the history is saved at the end");
    assert!(
        history.contains("SELECT no_such_column FROM events;"),
        "{history}"
    );
    assert!(history.contains("7 AS answer;"), "{history}");

    // The next session recalls the last statement with the up arrow, twice: as in psql, the
    // history holds the commands too, and `\q` came last.
    let mut prompt = Prompt::start(&archive, &state);
    prompt.wait_for(BANNER_END, 1, PROMPT);
    prompt.type_keys("\u{1b}[A\u{1b}[A\r");
    prompt.wait_for(TIMED, 1, PROMPT);
    prompt.assert_shows("| 42     |");
    prompt.type_keys("\\q\r");
    assert!(prompt.finish().success());
}
