//! Query: SQL over the archive with DataFusion.
//!
//! [`Query::open`] registers three tables over an archive directory: `events` and `alerts`
//! (hive-partitioned by `date` and `hour`, so `WHERE date = '2026-11-23'` reads one day's
//! directories only) and `credentials` (the latest exported state), plus the functions of
//! [`udf`]. A table whose directory does not exist yet is registered empty, so queries written
//! for a full archive also run on a new one. Results print as a table, CSV or JSON lines.

pub mod explain;
pub mod grouping;
pub mod prompt;
pub mod udf;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array as _, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};

use crate::archive::{credentials, schema};
use crate::config::Config;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("cannot format the result: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot write the result: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0} is not an archive directory (it does not exist)")]
    NoArchive(PathBuf),
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row; list columns are rendered as `[a, b]`.
    Csv,
    /// One JSON object per row.
    Json,
}

/// A result: its schema (also when there are no rows) and its batches.
pub struct Results {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Results {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A DataFusion session over one archive.
pub struct Query {
    context: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl Query {
    /// Opens `archive` for reading; `config` supplies the zones of `zone_of`.
    pub fn open(archive: &Path, config: Arc<Config>) -> Result<Query, QueryError> {
        if !archive.is_dir() {
            return Err(QueryError::NoArchive(archive.to_owned()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("query")
            .build()?;
        let mut session = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("credwatch", "archive");
        // Late materialisation: evaluate filters on their own columns first and decode the
        // other columns only for matching rows (one credential's timeline reads a few pages).
        let parquet = &mut session.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        let context = grouping::session(session);
        for function in udf::functions(config) {
            context.register_udf(function);
        }
        let query = Query { context, runtime };
        query.register_partitioned("events", &archive.join("events"), &schema::events())?;
        query.register_partitioned("alerts", &archive.join("alerts"), &schema::alerts())?;
        query.register_credentials(&credentials::path(archive))?;
        Ok(query)
    }

    fn register_partitioned(
        &self,
        name: &str,
        dir: &Path,
        written: &Schema,
    ) -> Result<(), QueryError> {
        let file_schema = schema::for_reading(written);
        let partitions: Vec<(String, DataType)> = schema::PARTITION_COLUMNS
            .iter()
            .map(|c| (c.to_string(), DataType::Utf8))
            .collect();
        if !has_parquet(dir) {
            let mut fields: Vec<Field> = file_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.extend(
                partitions
                    .iter()
                    .map(|(c, t)| Field::new(c.as_str(), t.clone(), false)),
            );
            let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
            self.context.register_table(name, Arc::new(empty))?;
            return Ok(());
        }
        let url = format!("{}/", dir.display());
        let options = ParquetReadOptions::default()
            .schema(&file_schema)
            .table_partition_cols(partitions)
            .file_extension(".parquet");
        self.runtime
            .block_on(self.context.register_parquet(name, &url, options))?;
        Ok(())
    }

    fn register_credentials(&self, file: &Path) -> Result<(), QueryError> {
        let file_schema = schema::for_reading(&schema::credentials());
        if !file.is_file() {
            let empty = MemTable::try_new(Arc::new(file_schema), vec![vec![]])?;
            self.context
                .register_table("credentials", Arc::new(empty))?;
            return Ok(());
        }
        let options = ParquetReadOptions::default().schema(&file_schema);
        self.runtime.block_on(self.context.register_parquet(
            "credentials",
            file.display().to_string(),
            options,
        ))?;
        Ok(())
    }

    /// Runs one SQL statement to completion.
    pub fn sql(&self, sql: &str) -> Result<Results, QueryError> {
        self.runtime.block_on(async {
            let frame = self.context.sql(sql).await?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            Ok(Results { schema, batches })
        })
    }

    /// Runs one SQL statement and hands its batches to `each` as they are produced, without
    /// holding the whole result (for results larger than memory, like `backtest`'s scan).
    pub fn for_each_batch<E>(
        &self,
        sql: &str,
        mut each: impl FnMut(RecordBatch) -> Result<(), E>,
    ) -> Result<Result<(), E>, QueryError> {
        use futures::StreamExt as _;
        self.runtime.block_on(async {
            let frame = self.context.sql(sql).await?;
            let mut stream = frame.execute_stream().await?;
            while let Some(batch) = stream.next().await {
                if let Err(error) = each(batch?) {
                    return Ok(Err(error));
                }
            }
            Ok(Ok(()))
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.context
    }
}

fn has_parquet(dir: &Path) -> bool {
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet")
                && !entry.file_name().to_string_lossy().starts_with('.')
            {
                return true;
            }
        }
    }
    false
}

/// Prints `results` in `format`.
pub fn write(
    results: &Results,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), QueryError> {
    // A statement without a result (SET, CREATE VIEW) prints nothing, not an empty table.
    if results.schema.fields().is_empty() {
        return Ok(());
    }
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches_with_schema(
                results.schema.clone(),
                &results.batches,
            )?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            if results.batches.is_empty() {
                // The header alone, so an empty result is still a valid CSV with its columns.
                let names: Vec<&str> = results
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                writeln!(out, "{}", names.join(","))?;
            } else {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut *out);
                for batch in &results.batches {
                    writer.write(&flatten_lists(batch)?)?;
                }
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in &results.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `results` in `format` as a string (for tests and small reports).
pub fn write_to_string(results: &Results, format: OutputFormat) -> String {
    let mut out = Vec::new();
    match write(results, format, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// CSV has no lists: list columns become their text form.
fn flatten_lists(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(
            field.data_type(),
            DataType::List(_) | DataType::LargeList(_)
        ) {
            let options = arrow::util::display::FormatOptions::default();
            let formatter = arrow::util::display::ArrayFormatter::try_new(column, &options)?;
            let text: arrow::array::StringArray = (0..column.len())
                .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(text) as arrow::array::ArrayRef);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Splits a script into statements at `;`, outside quotes and `--` comments. Blank
/// statements are dropped.
pub fn statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    current.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    // A comment runs to the end of the line.
                    for c in chars.by_ref() {
                        if c == '\n' {
                            current.push('\n');
                            break;
                        }
                    }
                }
                ';' => statements.push(std::mem::take(&mut current)),
                _ => current.push(c),
            },
        }
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let script = "-- count; them\nSELECT 1;\nSELECT 'a;b' -- trailing; comment\n ;  ; SELECT \"x;\" FROM t";
        assert_eq!(
            statements(script),
            vec!["SELECT 1", "SELECT 'a;b'", "SELECT \"x;\" FROM t"]
        );
    }
}
