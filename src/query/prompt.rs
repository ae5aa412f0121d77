//! The interactive prompt of `credwatch query` on a terminal: statements end with `;` and may
//! span lines; history is kept across sessions; an error is printed and the prompt goes on.

use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use super::{statements, write, OutputFormat, Query};

const HELP: &str = "\
Tables: events, alerts (partitioned by date and hour), credentials.
End a statement with ';'. Commands: \\d (list tables), \\d TABLE (its columns), \\q (quit).
Functions: zone_of(ip), ip_in_cidr(ip, cidr). Examples are in examples/queries/.";

/// Where the history is kept: `$XDG_STATE_HOME/credwatch/query_history`, else under
/// `~/.local/state`.
fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(base.join("credwatch").join("query_history"))
}

/// Runs the prompt until `\q` or end of input.
pub fn run(query: &Query, format: OutputFormat) -> anyhow::Result<()> {
    let mut editor = DefaultEditor::new()?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!("credwatch query. {HELP}");
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "credwatch> "
        } else {
            "       ... "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            let sql = match (words.next(), words.next()) {
                (Some("\\q"), _) => break,
                (Some("\\d"), None) => "SHOW TABLES".to_owned(),
                (Some("\\d"), Some(table)) => format!("DESCRIBE {table}"),
                _ => {
                    eprintln!("{HELP}");
                    continue;
                }
            };
            execute(query, &sql, format);
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let script = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(script.trim());
        for statement in statements(&script) {
            execute(query, &statement, format);
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
    Ok(())
}

fn execute(query: &Query, sql: &str, format: OutputFormat) {
    let started = std::time::Instant::now();
    match query.sql(sql) {
        Ok(results) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = write(&results, format, &mut stdout) {
                eprintln!("error: {e}");
            }
            eprintln!(
                "({} rows in {:.3}s)",
                results.rows(),
                started.elapsed().as_secs_f64()
            );
        }
        Err(e) => eprintln!("error: {e}"),
    }
}
