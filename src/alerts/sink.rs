//! Alert sinks: where alerts go. Console text for people, JSON lines for machines.

use std::io::{self, Write};

use super::{Activity, Alert};

/// A destination for alerts.
pub trait AlertSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()>;
    /// Waits until everything emitted so far is delivered.
    fn flush(&mut self) -> io::Result<()>;
    /// Starts confirming everything emitted so far without waiting (a sink whose flush is
    /// cheap just flushes); [`AlertSink::confirmed`] says when it is done.
    fn start_confirm(&mut self) -> io::Result<()> {
        self.flush()
    }
    /// Whether everything emitted before the last [`AlertSink::start_confirm`] is delivered.
    fn confirmed(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

/// One human line per alert:
/// `2026-03-01T12:17:00Z HIGH     use-after-leak AKIA… used 17.0 minutes after …`.
pub struct TextSink<W: Write> {
    out: W,
}

impl<W: Write> TextSink<W> {
    pub fn new(out: W) -> Self {
        TextSink { out }
    }
}

impl<W: Write> AlertSink for TextSink<W> {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        let severity = alert.severity.as_str().to_ascii_uppercase();
        match alert.activity {
            Activity::Create => writeln!(
                self.out,
                "{} {:<8} {} {} {}",
                alert.time_dt, severity, alert.rule, alert.credential, alert.summary
            ),
            Activity::Update => writeln!(
                self.out,
                "{} {:<8} {} {} repeated {} times since {} (alert {})",
                alert.time_dt,
                severity,
                alert.rule,
                alert.credential,
                alert.count,
                alert.evidence.event.ts,
                alert.finding_info.uid
            ),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One JSON object per line (NDJSON), as SIEMs ingest.
pub struct JsonLinesSink<W: Write> {
    out: W,
}

impl<W: Write> JsonLinesSink<W> {
    pub fn new(out: W) -> Self {
        JsonLinesSink { out }
    }
}

impl<W: Write> AlertSink for JsonLinesSink<W> {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, alert)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Several sinks behind one: every alert goes to each, in order.
#[derive(Default)]
pub struct Fanout {
    sinks: Vec<Box<dyn AlertSink>>,
}

impl Fanout {
    pub fn push(&mut self, sink: Box<dyn AlertSink>) {
        self.sinks.push(sink);
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl AlertSink for Fanout {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.emit(alert)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }

    fn start_confirm(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.start_confirm()?;
        }
        Ok(())
    }

    fn confirmed(&mut self) -> io::Result<bool> {
        let mut all = true;
        for sink in &mut self.sinks {
            all &= sink.confirmed()?;
        }
        Ok(all)
    }
}
