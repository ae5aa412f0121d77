//! The Kafka alert sink: alerts produced to a topic, keyed by credential id, as JSON (the same
//! bytes `replay --output json` prints). [`Producer`] is shared with the dead-letter topic.
//!
//! `flush` waits for the broker to acknowledge every alert produced so far and fails if any
//! was not delivered: the run loop commits input offsets only after a successful flush, or,
//! without waiting, once [`Producer::delivered_through`] says every message before a
//! [`Producer::mark`] was acknowledged.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;

use super::{Alert, AlertSink};
use crate::config::KafkaConfig;
use crate::source::kafka::client_config;

/// Counts failed deliveries so a flush can tell whether everything arrived, and keeps the
/// sequence numbers of messages not yet reported, so the run loop can tell without waiting
/// whether everything sent before a point has arrived.
#[derive(Default)]
pub struct DeliveryReport {
    failed: AtomicU64,
    delivered: AtomicU64,
    /// The sequence number the next message gets.
    next: AtomicU64,
    /// Sequence numbers sent and not yet reported delivered or failed.
    outstanding: Mutex<BTreeSet<u64>>,
}

impl DeliveryReport {
    fn outstanding(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: usize) {
        self.outstanding().remove(&(sequence as u64));
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "Kafka delivery failed.");
            }
        }
    }
}

/// A producer for alerts and dead letters, with delivery accounting.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ThreadedProducer<DeliveryReport>>,
}

impl Producer {
    pub fn connect(kafka: &KafkaConfig) -> Result<Producer, KafkaError> {
        let mut config = client_config(kafka);
        // Idempotent: a retried send never duplicates a message within this session.
        config
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        let inner = config.create_with_context(DeliveryReport::default())?;
        Ok(Producer {
            inner: Arc::new(inner),
        })
    }

    /// Queues one message, waiting while librdkafka's queue is full.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> io::Result<()> {
        let report = self.inner.context();
        let sequence = {
            // Under the lock, so sequence numbers enter `outstanding` in order.
            let mut outstanding = report.outstanding();
            let sequence = report.next.fetch_add(1, Ordering::SeqCst);
            outstanding.insert(sequence);
            sequence
        };
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, sequence as usize).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => {
                    report.outstanding().remove(&sequence);
                    return Err(io::Error::other(format!(
                        "cannot produce to {topic}: {error}"
                    )));
                }
            }
        }
    }

    /// A point after every message sent so far, for [`Producer::delivered_through`].
    pub fn mark(&self) -> u64 {
        let report = self.inner.context();
        let _order = report.outstanding();
        report.next.load(Ordering::SeqCst)
    }

    /// Whether every message sent before `mark` was acknowledged; fails if any delivery
    /// failed since the last flush or check (as [`Producer::flush`] does). Does not wait.
    pub fn delivered_through(&self, mark: u64) -> io::Result<bool> {
        let report = self.inner.context();
        let failed = report.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(io::Error::other(format!(
                "{failed} Kafka messages were not delivered"
            )));
        }
        Ok(report
            .outstanding()
            .first()
            .is_none_or(|first| *first >= mark))
    }

    /// Waits until everything queued is acknowledged; fails if anything was lost since the
    /// last flush.
    pub fn flush(&self, timeout: Duration) -> io::Result<()> {
        self.inner
            .flush(timeout)
            .map_err(|e| io::Error::other(format!("Kafka flush: {e}")))?;
        let failed = self.inner.context().failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(io::Error::other(format!(
                "{failed} Kafka messages were not delivered"
            )));
        }
        Ok(())
    }

    /// Messages acknowledged by the broker so far.
    pub fn delivered(&self) -> u64 {
        self.inner.context().delivered.load(Ordering::Relaxed)
    }
}

/// Dead-letter headers: why, and where the record came from.
pub fn dead_letter_headers(reason: &str, topic: &str, partition: i32, offset: i64) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "credwatch-reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "credwatch-source-topic",
            value: Some(topic),
        })
        .insert(Header {
            key: "credwatch-source-partition",
            value: Some(&partition.to_string()),
        })
        .insert(Header {
            key: "credwatch-source-offset",
            value: Some(&offset.to_string()),
        })
}

/// Produces alerts to a topic.
pub struct KafkaAlertSink {
    producer: Producer,
    topic: String,
    buffer: Vec<u8>,
    /// The producer's mark at the last [`AlertSink::start_confirm`].
    confirming: Option<u64>,
}

impl KafkaAlertSink {
    pub fn new(producer: Producer, topic: String) -> Self {
        KafkaAlertSink {
            producer,
            topic,
            buffer: Vec::with_capacity(2048),
            confirming: None,
        }
    }
}

impl AlertSink for KafkaAlertSink {
    fn emit(&mut self, alert: &Alert) -> io::Result<()> {
        self.buffer.clear();
        serde_json::to_writer(&mut self.buffer, alert)?;
        self.producer.send(
            &self.topic,
            Some(alert.credential.as_bytes()),
            &self.buffer,
            None,
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.producer.flush(Duration::from_secs(30))
    }

    fn start_confirm(&mut self) -> io::Result<()> {
        self.confirming = Some(self.producer.mark());
        Ok(())
    }

    fn confirmed(&mut self) -> io::Result<bool> {
        match self.confirming {
            None => Ok(true),
            Some(mark) => self.producer.delivered_through(mark),
        }
    }
}
