//! The `nexmark` connector: tables of the Nexmark generator's persons,
//! auctions and bids (`'kind'`), for the Nexmark queries in SQL.
//!
//! A table reads the generator's events (`crate::pipelines::nexmark::model`)
//! of its kind, the same the typed `nexmark` pipeline reads, as rows (the
//! generator skips the numbers of the other kinds). Its columns are any of its kind's, by name, in any order, and any
//! `name AS PROCTIME()`.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion_common::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use weir_catalog::{ColumnOrigin, Table};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::pipelines::nexmark::model::{Auction, Bid, Event, Kind, NexmarkConfig, Person};
use crate::sql::arrow_types::table_schema;
use crate::sql::rows::Rows;
use crate::sql::windows::now_ms;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Int,
    Text,
    Time,
    /// The processing time the row is made at (`name AS PROCTIME()`).
    Now,
}

/// Every column of each kind, with what it holds.
fn columns(kind: Kind) -> &'static [(&'static str, Value)] {
    use Value::{Int, Text, Time};
    match kind {
        Kind::Person => &[
            ("id", Int),
            ("name", Text),
            ("email_address", Text),
            ("credit_card", Text),
            ("city", Text),
            ("state", Text),
            ("date_time", Time),
        ],
        Kind::Auction => &[
            ("id", Int),
            ("item_name", Text),
            ("initial_bid", Int),
            ("reserve", Int),
            ("date_time", Time),
            ("expires", Time),
            ("seller", Int),
            ("category", Int),
        ],
        Kind::Bid => &[
            ("auction", Int),
            ("bidder", Int),
            ("price", Int),
            ("channel", Text),
            ("url", Text),
            ("date_time", Time),
        ],
    }
}

/// A `nexmark` table, checked: its kind, generator settings and columns.
#[derive(Debug, Clone)]
pub struct NexmarkTable {
    /// Which events it holds.
    pub kind: Kind,
    /// How the generator makes them.
    pub config: NexmarkConfig,
    /// Events to generate in all (of every kind), unbounded if `None`.
    pub events: Option<u64>,
    /// Events per second over all source subtasks, unlimited if `None`.
    pub rate_limit: Option<f64>,
    /// How late an event may come: the watermark's delay.
    pub max_delay_ms: i64,
    schema: SchemaRef,
    /// The table's columns, as columns of its kind.
    columns: Vec<(&'static str, Value)>,
}

impl NexmarkTable {
    /// Checks `table`'s options and columns against its kind.
    pub fn new(table: &Table) -> Result<Self> {
        let bad = |reason: String| Error::Sql(format!("table `{}`: {reason}", table.name));
        let kind = match table.option("kind") {
            Some("person") => Kind::Person,
            Some("auction") => Kind::Auction,
            Some("bid") => Kind::Bid,
            other => return Err(bad(format!("'kind' = {other:?}: person, auction or bid"))),
        };
        let number = |key: &str| -> Result<Option<u64>> {
            table
                .option(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| bad(format!("'{key}' = '{v}' is not a whole number")))
                })
                .transpose()
        };
        let mut config = NexmarkConfig::default();
        config.seed = number("seed")?.unwrap_or(config.seed);
        config.rate = number("events.per-second")?.unwrap_or(config.rate).max(1);
        config.delayed_per_mille = number("delayed.per-mille")?.unwrap_or(0).min(1000);
        config.max_delay_ms = number("delayed.max-ms")?.unwrap_or(config.max_delay_ms);
        let schema = table_schema(table);
        let mut chosen = Vec::with_capacity(table.columns.len());
        for (column, field) in table.columns.iter().zip(schema.fields()) {
            if column.origin == ColumnOrigin::ProcessingTime {
                chosen.push(("proctime", Value::Now));
                continue;
            }
            let Some(&(name, value)) = columns(kind)
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&column.name))
            else {
                let known: Vec<_> = columns(kind).iter().map(|(n, _)| *n).collect();
                return Err(bad(format!(
                    "a nexmark {kind:?} has no column `{}`; its columns are {}",
                    column.name,
                    known.join(", ")
                )));
            };
            let fits = match value {
                Value::Int => *field.data_type() == DataType::Int64,
                Value::Text => *field.data_type() == DataType::Utf8,
                Value::Time | Value::Now => matches!(
                    field.data_type(),
                    DataType::Timestamp(TimeUnit::Millisecond, _)
                ),
            };
            if !fits {
                let wanted = match value {
                    Value::Int => "BIGINT",
                    Value::Text => "STRING",
                    Value::Time | Value::Now => "TIMESTAMP(3)",
                };
                return Err(bad(format!(
                    "column `{name}` is {wanted} in a nexmark table, not {}",
                    column.data_type
                )));
            }
            chosen.push((name, value));
        }
        let max_delay_ms = table.watermark.as_ref().map_or(0, |w| w.delay_ms as i64);
        Ok(NexmarkTable {
            kind,
            config,
            events: number("events.num")?,
            rate_limit: number("rate-limit")?.map(|r| r as f64),
            max_delay_ms,
            schema,
            columns: chosen,
        })
    }

    /// The operator turning events into this table's rows.
    pub fn to_rows(&self) -> EventsToRows {
        EventsToRows {
            table: self.clone(),
        }
    }

    /// The rows of the events of this table's kind among `events`.
    fn rows(&self, events: &[Event]) -> Result<Option<Rows>> {
        let arrays: Vec<ArrayRef> = match self.kind {
            Kind::Person => {
                let persons: Vec<&Person> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Person(p) => Some(&**p),
                        _ => None,
                    })
                    .collect();
                if persons.is_empty() {
                    return Ok(None);
                }
                self.columns
                    .iter()
                    .map(|&(name, value)| match value {
                        Value::Now => now_column(persons.len()),
                        _ => person_column(name, &persons),
                    })
                    .collect()
            }
            Kind::Auction => {
                let auctions: Vec<&Auction> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Auction(a) => Some(&**a),
                        _ => None,
                    })
                    .collect();
                if auctions.is_empty() {
                    return Ok(None);
                }
                self.columns
                    .iter()
                    .map(|&(name, value)| match value {
                        Value::Now => now_column(auctions.len()),
                        _ => auction_column(name, &auctions),
                    })
                    .collect()
            }
            Kind::Bid => {
                let bids: Vec<&Bid> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Bid(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                if bids.is_empty() {
                    return Ok(None);
                }
                self.columns
                    .iter()
                    .map(|&(name, value)| match value {
                        Value::Now => now_column(bids.len()),
                        _ => bid_column(name, &bids),
                    })
                    .collect()
            }
        };
        let arrays = arrays
            .into_iter()
            .zip(self.schema.fields())
            .map(|(array, field)| match field.data_type() {
                DataType::Timestamp(_, Some(zone)) => datafusion_common::arrow::compute::cast(
                    &array,
                    &DataType::Timestamp(TimeUnit::Millisecond, Some(zone.clone())),
                ),
                _ => Ok(array),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Sql(format!("nexmark rows: {e}")))?;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map(|batch| Some(Rows::inserts(batch)))
            .map_err(|e| Error::Sql(format!("nexmark rows: {e}")))
    }
}

/// The processing time now, for `rows` rows.
fn now_column(rows: usize) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(vec![now_ms(); rows]))
}

fn ints<T>(items: &[&T], f: impl Fn(&T) -> u64) -> ArrayRef {
    Arc::new(items.iter().map(|i| f(i) as i64).collect::<Int64Array>())
}

fn texts<T>(items: &[&T], f: impl Fn(&T) -> &str) -> ArrayRef {
    Arc::new(items.iter().map(|i| Some(f(i))).collect::<StringArray>())
}

fn times<T>(items: &[&T], f: impl Fn(&T) -> i64) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(
        items.iter().map(|i| f(i)).collect::<Vec<_>>(),
    ))
}

fn person_column(name: &str, persons: &[&Person]) -> ArrayRef {
    match name {
        "id" => ints(persons, |p| p.id),
        "name" => texts(persons, |p| &p.name),
        "email_address" => texts(persons, |p| &p.email),
        "credit_card" => texts(persons, |p| &p.credit_card),
        "city" => texts(persons, |p| &p.city),
        "state" => texts(persons, |p| &p.state),
        _ => times(persons, |p| p.date_time),
    }
}

fn auction_column(name: &str, auctions: &[&Auction]) -> ArrayRef {
    match name {
        "id" => ints(auctions, |a| a.id),
        "item_name" => texts(auctions, |a| &a.item_name),
        "initial_bid" => ints(auctions, |a| a.initial_bid),
        "reserve" => ints(auctions, |a| a.reserve),
        "expires" => times(auctions, |a| a.expires),
        "seller" => ints(auctions, |a| a.seller),
        "category" => ints(auctions, |a| a.category),
        _ => times(auctions, |a| a.date_time),
    }
}

fn bid_column(name: &str, bids: &[&Bid]) -> ArrayRef {
    match name {
        "auction" => ints(bids, |b| b.auction),
        "bidder" => ints(bids, |b| b.bidder),
        "price" => ints(bids, |b| b.price),
        "channel" => texts(bids, |b| &b.channel),
        "url" => texts(bids, |b| &b.url),
        _ => times(bids, |b| b.date_time),
    }
}

/// Keeps the events of a table's kind, as its rows: one [`Rows`] per batch.
pub struct EventsToRows {
    table: NexmarkTable,
}

impl Operator for EventsToRows {
    type In = Event;
    type Out = Rows;

    fn process(&mut self, input: &mut Batch<Event>, output: &mut Batch<Rows>) -> Result<()> {
        let rows = self.table.rows(input)?;
        input.clear();
        output.extend(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_catalog::parse_table;

    use super::*;
    use crate::pipelines::nexmark::model::event;

    fn table(sql: &str) -> Result<NexmarkTable> {
        NexmarkTable::new(&parse_table(sql).unwrap())
    }

    #[test]
    fn a_bid_table_holds_the_bids_in_its_column_order() {
        let bids = table("CREATE TABLE bid (price BIGINT, auction BIGINT, date_time TIMESTAMP(3)) WITH ('connector' = 'nexmark', 'kind' = 'bid')").unwrap();
        let config = NexmarkConfig::default();
        let events: Vec<Event> = (0..100).map(|n| event(n, &config)).collect();
        let rows = bids.rows(&events).unwrap().unwrap();
        let expected: Vec<&Bid> = events
            .iter()
            .filter_map(|e| match e {
                Event::Bid(b) => Some(b),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), expected.len());
        let prices = rows
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(prices.value(3) as u64, expected[3].price);
    }

    #[test]
    fn the_builtin_tables_are_the_three_kinds() {
        let tables = weir_catalog::builtin_tables().unwrap();
        let kinds: Vec<Kind> = tables
            .iter()
            .map(|t| NexmarkTable::new(t).unwrap().kind)
            .collect();
        assert_eq!(kinds, [Kind::Person, Kind::Auction, Kind::Bid]);
    }

    #[test]
    fn a_column_the_kind_lacks_or_of_another_type_is_refused_by_name() {
        let error = table("CREATE TABLE p (id BIGINT, colour STRING) WITH ('connector' = 'nexmark', 'kind' = 'person')").unwrap_err();
        assert!(error.to_string().contains("no column `colour`"), "{error}");
        let error =
            table("CREATE TABLE p (id INT) WITH ('connector' = 'nexmark', 'kind' = 'person')")
                .unwrap_err();
        assert!(error.to_string().contains("`id` is BIGINT"), "{error}");
    }
}
