//! The tables every SQL job can name without declaring them: the Nexmark
//! generator's `person`, `auction` and `bid` (connector `nexmark`), kept here
//! so that the controller knows them as well as the engine.

use crate::ddl::{parse_script, ScriptStatement};
use crate::error::{Error, Result};
use crate::table::Table;

/// The built-in tables `person`, `auction` and `bid`: unbounded, 100,000
/// events per second of event time, up to 4 s out of order, as the Nexmark
/// queries expect them (`--option bid.events.num=N` bounds one).
pub const NEXMARK_TABLES: &str = "
CREATE TABLE person (
  id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING,
  date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) COMMENT 'Nexmark persons, from the built-in generator'
WITH ('connector' = 'nexmark', 'kind' = 'person');
CREATE TABLE auction (
  id BIGINT, item_name STRING, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3),
  expires TIMESTAMP(3), seller BIGINT, category BIGINT,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) COMMENT 'Nexmark auctions, from the built-in generator'
WITH ('connector' = 'nexmark', 'kind' = 'auction');
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) COMMENT 'Nexmark bids, from the built-in generator'
WITH ('connector' = 'nexmark', 'kind' = 'bid');
";

/// The built-in tables, parsed.
pub fn builtin_tables() -> Result<Vec<Table>> {
    parse_script(NEXMARK_TABLES)?
        .into_iter()
        .map(|statement| match statement {
            ScriptStatement::CreateTable(table) => Ok(table),
            other => Err(Error::Syntax(format!(
                "a built-in table is {other:?}, not a CREATE TABLE"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_tables_are_nexmarks_three() {
        let names: Vec<_> = builtin_tables()
            .expect("built-in tables parse")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["person", "auction", "bid"]);
    }
}
