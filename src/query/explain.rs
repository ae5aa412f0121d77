//! `credwatch explain CREDENTIAL`: what the archive knows about one credential, for an analyst
//! at a terminal. The state it was last exported with (why its use is considered normal), the
//! alerts it raised, a summary of its use by zone and network, and its latest events.

use std::fmt::Write as _;

use super::{Query, QueryError, Results};

/// A SQL string literal of `text` (quotes doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn table(results: &Results) -> Result<String, QueryError> {
    Ok(arrow::util::pretty::pretty_format_batches_with_schema(
        results.schema.clone(),
        &results.batches,
    )?
    .to_string())
}

/// The report for `credential`, showing at most `limit` of its most recent events.
pub fn explain(query: &Query, credential: &str, limit: usize) -> Result<String, QueryError> {
    let id = literal(credential);
    let mut report = String::new();
    let _ = writeln!(report, "credential {credential}\n");

    let state = query.sql(&format!(
        "SELECT owner, accesses, first_seen, last_seen, issued_at, expires_at, revoked_at, \
         leaked_at, leak_source, allowed_zones, allowed_from, seen_zones, networks, endpoints, \
         user_agents, round(rate_mean, 2) AS calls_per_active_minute \
         FROM credentials WHERE credential = {id}"
    ))?;
    if state.rows() == 0 {
        let _ = writeln!(report, "state: not in the credentials table\n");
    } else {
        // One row: print it as name/value lines, which read better than a 16-column table.
        let batch = &state.batches.iter().find(|b| b.num_rows() > 0);
        if let Some(batch) = batch {
            let options = arrow::util::display::FormatOptions::default().with_null("-");
            let _ = writeln!(report, "state (at the last export):");
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let formatter = arrow::util::display::ArrayFormatter::try_new(column, &options)?;
                let _ = writeln!(report, "  {:<24} {}", field.name(), formatter.value(0));
            }
            report.push('\n');
        }
    }

    let usage = query.sql(&format!(
        "SELECT zone, network, count(*) AS events, min(time) AS first, max(time) AS last, \
         count(DISTINCT endpoint) AS endpoints \
         FROM events WHERE credential = {id} GROUP BY zone, network ORDER BY first"
    ))?;
    let _ = writeln!(report, "use by zone and network:");
    if usage.rows() == 0 {
        let _ = writeln!(report, "  no events archived\n");
    } else {
        let _ = writeln!(report, "{}\n", table(&usage)?);
    }

    // Look-back: networks this credential used for the first time (in all archived history)
    // in the 24 hours before its first leak report, which is what an attacker who found the
    // secret before the scanner would leave. The leak time comes from its events or, for a
    // report matched by the secret's hash, from the exported state.
    let before_leak = query.sql(&format!(
        "WITH leak AS (SELECT min(at) AS at FROM ( \
             SELECT min(time) AS at FROM events WHERE credential = {id} AND kind = 'leak' \
             UNION ALL SELECT leaked_at AS at FROM credentials WHERE credential = {id})), \
         firsts AS (SELECT zone, network, min(time) AS first_use, count(*) AS calls \
             FROM events WHERE credential = {id} AND kind = 'access' GROUP BY zone, network) \
         SELECT f.zone, f.network, f.first_use, f.calls, l.at AS leak_reported \
         FROM firsts f CROSS JOIN leak l \
         WHERE l.at IS NOT NULL AND f.first_use >= l.at - INTERVAL '24 hours' \
           AND f.first_use <= l.at \
         ORDER BY f.first_use"
    ))?;
    if before_leak.rows() > 0 {
        let _ = writeln!(
            report,
            "new networks in the 24h before the leak report: {}\n{}\n",
            before_leak.rows(),
            table(&before_leak)?
        );
    }

    let alerts = query.sql(&format!(
        "SELECT time, rule, severity, activity, count, summary FROM alerts \
         WHERE credential = {id} ORDER BY time, id"
    ))?;
    let _ = writeln!(report, "alerts: {}", alerts.rows());
    if alerts.rows() > 0 {
        let _ = writeln!(report, "{}", table(&alerts)?);
    }
    report.push('\n');

    let events = query.sql(&format!(
        "SELECT * FROM (SELECT time, kind, outcome, zone, source_ip, endpoint, user_agent, \
         principal FROM events WHERE credential = {id} ORDER BY time DESC, event_id DESC \
         LIMIT {limit}) ORDER BY time, endpoint"
    ))?;
    let _ = writeln!(report, "latest events (up to {limit}):");
    if events.rows() > 0 {
        let _ = writeln!(report, "{}", table(&events)?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_double_quotes() {
        assert_eq!(literal("AKIA'; DROP"), "'AKIA''; DROP'");
    }
}
