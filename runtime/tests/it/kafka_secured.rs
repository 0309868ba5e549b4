//! Kafka through a broker's secured listeners. Keyed sums go from a topic to a
//! topic over SASL_SSL with SCRAM-SHA-256, source (librdkafka) and sink (its
//! own protocol client) alike, exactly once through an injected failure. The
//! sink also writes through every other listener and mechanism it supports; a
//! wrong password or a missing client certificate fails it at once with the
//! broker's reason, and a mechanism it does not speak is refused before it
//! connects.

use std::time::{Duration, Instant};

use weir_runtime::data::Barrier;
use weir_runtime::error::{Error, ErrorClass};
use weir_runtime::exec::runner::LocalRunner;
use weir_runtime::ids::CheckpointId;
use weir_runtime::kafka::{KafkaConfig, KafkaSink};
use weir_runtime::operator::Operator;

use crate::kafka::create_topic;
use crate::kafka_broker::{KafkaBroker, PASSWORD, USER};
use crate::kafka_sink::{
    assert_sums_exactly_once, read_topic, run_config, sink_context, sums_through, with_numbers,
    Output, OUT_PARTITIONS,
};

/// The broker's SASL_SSL listener as `USER` with `password`, by SCRAM-SHA-256,
/// trusting the test CA.
fn sasl_ssl(broker: &KafkaBroker, password: &str) -> KafkaConfig {
    let secured = broker.secured.as_ref().expect("a secured broker");
    KafkaConfig::new(&format!("127.0.0.1:{}", secured.sasl_ssl))
        .property("security.protocol", "SASL_SSL")
        .property("sasl.mechanism", "SCRAM-SHA-256")
        .property("sasl.username", USER)
        .property("sasl.password", password)
        .property(
            "ssl.ca.location",
            secured.ca.to_str().expect("a UTF-8 path"),
        )
}

/// A sink of `topic` with `kafka`'s settings, opened by hand as a job's only
/// subtask would be.
fn open_sink(kafka: KafkaConfig, topic: &str) -> weir_runtime::error::Result<KafkaSink<String>> {
    let mut sink = KafkaSink::new(kafka, topic, |line: &String, out: &mut Vec<u8>| {
        out.extend_from_slice(line.as_bytes())
    });
    sink.open(&sink_context("secured"), None)?;
    Ok(sink)
}

#[test]
fn keyed_sums_over_sasl_ssl_with_scram_are_exactly_once_through_a_failure() {
    let broker = with_numbers(KafkaBroker::start_secured());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = run_config(dir.path());
    cfg.inject_failures = 1;
    let job = sums_through(sasl_ssl(&broker, PASSWORD), 2, Output::exactly_once());
    let summary = LocalRunner::new(job, cfg).unwrap().run().unwrap();
    assert_eq!(summary.restarts, 1);
    assert_sums_exactly_once(&broker);
}

#[test]
fn the_sink_writes_through_every_listener_and_mechanism_it_supports() {
    let broker = KafkaBroker::start_secured();
    let secured = broker.secured.as_ref().unwrap();
    let ca = secured.ca.to_str().unwrap();
    let sasl = |port: u16, protocol: &str, mechanism: &str| {
        KafkaConfig::new(&format!("127.0.0.1:{port}"))
            .property("security.protocol", protocol)
            .property("sasl.mechanisms", mechanism)
            .property("sasl.username", USER)
            .property("sasl.password", PASSWORD)
            .property("ssl.ca.location", ca)
    };
    let cases = [
        (
            "scram-512",
            sasl(secured.sasl_ssl, "sasl_ssl", "SCRAM-SHA-512"),
        ),
        (
            "plain-over-tls",
            sasl(secured.sasl_ssl, "sasl_ssl", "PLAIN"),
        ),
        (
            "scram-without-tls",
            sasl(secured.sasl_plaintext, "sasl_plaintext", "SCRAM-SHA-256"),
        ),
        (
            "client-certificate",
            KafkaConfig::new(&format!("127.0.0.1:{}", secured.ssl))
                .property("security.protocol", "ssl")
                .property("ssl.ca.location", ca)
                .property(
                    "ssl.certificate.location",
                    secured.client_certificate.to_str().unwrap(),
                )
                .property("ssl.key.location", secured.client_key.to_str().unwrap())
                .property("ssl.endpoint.identification.algorithm", "https"),
        ),
    ];
    for (topic, kafka) in cases {
        create_topic(&broker, topic, OUT_PARTITIONS);
        let mut sink = open_sink(kafka, topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        sink.process(&mut vec![format!("through {topic}")], &mut Vec::new())
            .unwrap();
        sink.snapshot(&Barrier::checkpoint(CheckpointId(1), None))
            .unwrap();
        sink.checkpoint_complete(CheckpointId(1)).unwrap();
        assert_eq!(
            read_topic(&broker, topic, "read_committed"),
            [format!("through {topic}")]
        );
    }
}

#[test]
fn a_broker_refusing_the_password_or_the_certificate_fails_the_sink_at_once_with_its_reason() {
    let broker = KafkaBroker::start_secured();
    let secured = broker.secured.as_ref().unwrap();
    create_topic(&broker, "lines", OUT_PARTITIONS);
    let no_certificate = KafkaConfig::new(&format!("127.0.0.1:{}", secured.ssl))
        .property("security.protocol", "ssl")
        .property("ssl.ca.location", secured.ca.to_str().unwrap());
    let cases = [
        (
            sasl_ssl(&broker, "not-the-password"),
            vec![
                format!("broker 127.0.0.1:{}", secured.sasl_ssl),
                "authentication failed".into(),
                format!("SCRAM-SHA-256 as user {USER}"),
                "invalid credentials".into(),
            ],
        ),
        // TLS 1.3 reports a missing client certificate after the handshake.
        (
            no_certificate,
            vec![
                format!("broker 127.0.0.1:{}", secured.ssl),
                "TLS session was refused: received fatal alert".into(),
                "ssl.certificate.location".into(),
            ],
        ),
    ];
    for (kafka, expected) in cases {
        let started = Instant::now();
        let error = open_sink(kafka, "lines")
            .err()
            .expect("the broker refuses the client");
        // Well within the minute an unreachable broker is retried for.
        assert!(started.elapsed() < Duration::from_secs(10), "{error}");
        assert!(matches!(error, Error::Kafka(_)), "{error:?}");
        let message = error.to_string();
        for part in expected {
            assert!(message.contains(&part), "{part:?} not in {message}");
        }
        assert!(!message.contains("not-the-password"), "{message}");
    }
}

#[test]
fn a_sasl_mechanism_the_sink_does_not_speak_is_refused_before_it_connects() {
    // Nothing listens there: the refusal comes first.
    let kafka = KafkaConfig::new("127.0.0.1:9")
        .property("security.protocol", "sasl_ssl")
        .property("sasl.mechanism", "GSSAPI");
    let error = open_sink(kafka, "lines").err().expect("GSSAPI is refused");
    assert_eq!(error.class(), ErrorClass::User, "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("sasl.mechanism GSSAPI is not supported by the Kafka sink")
            && message.contains("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            && message.contains("topic lines"),
        "{message}"
    );
}
