//! Integration tests of the `weir` binary and the engine, as users run them.

// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backpressure;
mod bad_input;
mod bench;
mod catalog_cli;
mod cluster;
mod dag;
mod data_plane;
mod engine;
mod event_time;
mod exactly_once;
mod examples;
mod identity;
mod joins;
mod kafka;
mod kafka_broker;
mod kafka_cli;
mod kafka_formats;
mod kafka_reading;
mod kafka_secured;
mod kafka_sink;
mod nexmark;
mod recovery;
mod rescale;
mod restore;
mod s3;
mod s3_server;
mod savepoints;
mod sql_early_fire;
mod sql_interval_joins;
mod sql_jobs;
mod sql_joins;
mod sql_kafka;
mod sql_kafka_avro;
mod sql_nexmark_runs;
mod sql_outer_joins;
mod sql_top_n;
mod sql_top_n_kafka;
mod sql_updating;
mod sql_updating_joins;
mod sql_window_chains;
mod sql_windows;
mod support;
mod windows;
