//! Send: publish log files into a Kafka topic, one message per record, keyed by credential id
//! so that a consumer group keeps each credential's events in one partition. For backfills,
//! demos and tests. Records are sent as they are (containers are split into their elements);
//! records the format cannot decode are counted and sent without a key, so the consumer's
//! dead-letter path sees them.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use crate::alerts::Producer;
use crate::config::KafkaConfig;
use crate::decode::{split_records, Format};
use crate::source::{Framing, LineReader, ReadOutcome, MAX_DOCUMENT_BYTES};

/// What was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub records: u64,
    pub undecodable: u64,
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub fn ensure_topic(kafka: &KafkaConfig, topic: &str, partitions: i32) -> io::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::RDKafkaErrorCode;

    let admin: AdminClient<DefaultClientContext> = crate::source::kafka::client_config(kafka)
        .create()
        .map_err(|e| io::Error::other(format!("cannot create a Kafka admin client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(|e| io::Error::other(format!("cannot create topic {topic}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(io::Error::other(format!(
                    "cannot create topic {name}: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// Publishes every record of `inputs` (`-` is stdin) to `topic`.
pub fn send(
    kafka: &KafkaConfig,
    topic: &str,
    format: Format,
    inputs: &[String],
    progress: Option<&indicatif::ProgressBar>,
) -> io::Result<SendSummary> {
    let producer = Producer::connect(kafka)
        .map_err(|e| io::Error::other(format!("cannot create the Kafka producer: {e}")))?;
    let mut decoder = format.decoder();
    let mut summary = SendSummary::default();
    let mut events = Vec::new();
    let mut publish = |record: &[u8], summary: &mut SendSummary| -> io::Result<()> {
        for element in split_records(record) {
            events.clear();
            let key = match decoder.decode(element, &mut events) {
                Ok(()) => events.first().map(|e| e.credential.clone()),
                Err(_) => {
                    summary.undecodable += 1;
                    None
                }
            };
            producer.send(topic, key.as_deref().map(str::as_bytes), element, None)?;
            summary.records += 1;
            if let Some(progress) = progress.filter(|_| summary.records.is_multiple_of(8192)) {
                progress.set_message(format!("{} records to {topic}", summary.records));
            }
        }
        Ok(())
    };
    for input in inputs {
        let reader: Box<dyn BufRead> = if input == "-" {
            Box::new(BufReader::new(io::stdin()))
        } else {
            Box::new(BufReader::new(File::open(input).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot read {input}: {e}"))
            })?))
        };
        let mut reader = reader;
        let mut head = Vec::new();
        (&mut reader).take(64 * 1024).read_to_end(&mut head)?;
        let framing = Framing::detect(&head);
        let input_reader = io::Cursor::new(head).chain(reader);
        match framing {
            Framing::Document => {
                let mut document = Vec::new();
                input_reader
                    .take(MAX_DOCUMENT_BYTES as u64)
                    .read_to_end(&mut document)?;
                publish(&document, &mut summary)?;
            }
            Framing::Lines => {
                let mut lines = LineReader::new(input_reader);
                let mut record = Vec::new();
                loop {
                    match lines.next_record(&mut record)? {
                        ReadOutcome::End => break,
                        ReadOutcome::Record if record.iter().all(u8::is_ascii_whitespace) => {}
                        ReadOutcome::Record | ReadOutcome::TooLong { .. } => {
                            publish(&record, &mut summary)?
                        }
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(summary)
}
