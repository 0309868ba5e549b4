//! Column types as Flink SQL spells them (`BIGINT`, `STRING`,
//! `TIMESTAMP_LTZ(3)`, `ROW<a INT, b STRING>`), read from the DDL's tokens.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The type of a column or of a nested field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// `BOOLEAN`.
    Boolean,
    /// `TINYINT`: 8-bit signed.
    TinyInt,
    /// `SMALLINT`: 16-bit signed.
    SmallInt,
    /// `INT` (or `INTEGER`): 32-bit signed.
    Int,
    /// `BIGINT`: 64-bit signed.
    BigInt,
    /// `FLOAT`: 32-bit IEEE.
    Float,
    /// `DOUBLE`: 64-bit IEEE.
    Double,
    /// `DECIMAL(p, s)`: exact, `p` digits of which `s` after the point.
    Decimal {
        /// Total digits, 1 to 38.
        precision: u8,
        /// Digits after the point, at most `precision`.
        scale: u8,
    },
    /// `STRING` (or `VARCHAR(n)`, `CHAR(n)`: the length is not enforced).
    String,
    /// `BYTES` (or `VARBINARY(n)`, `BINARY(n)`).
    Bytes,
    /// `DATE`: a day.
    Date,
    /// `TIMESTAMP(p)`: a wall-clock time without time zone, `p` fractional digits.
    Timestamp {
        /// Fractional second digits, 0 to 9 (default 6, as in Flink).
        precision: u8,
    },
    /// `TIMESTAMP_LTZ(p)`: an instant on the time line.
    TimestampLtz {
        /// Fractional second digits, 0 to 9 (default 6, as in Flink).
        precision: u8,
    },
    /// `ARRAY<t>`.
    Array(Box<ColumnType>),
    /// `MAP<k, v>`.
    Map(Box<ColumnType>, Box<ColumnType>),
    /// `ROW<name type, ...>`: a nested record.
    Row(Vec<Field>),
}

/// A named field of a `ROW`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: ColumnType,
}

impl ColumnType {
    /// Whether a watermark can be declared on a column of this type.
    pub fn is_timestamp(&self) -> bool {
        matches!(
            self,
            ColumnType::Timestamp { .. } | ColumnType::TimestampLtz { .. }
        )
    }

    /// Reads a type at the parser's position.
    pub fn parse(parser: &mut Parser) -> Result<ColumnType, ParserError> {
        let mut closes = Closes::default();
        let parsed = parse_type(parser, &mut closes)?;
        if closes.pending {
            return parser.expected("a column type", parser.peek_token());
        }
        Ok(parsed)
    }
}

/// The `>` still owed by a `>>` token that closed two nested types at once
/// (`ARRAY<ARRAY<INT>>`): the tokenizer reads it as one shift operator.
#[derive(Default)]
struct Closes {
    pending: bool,
}

impl Closes {
    /// Consumes one `>`, from a pending `>>` or from the next token.
    fn expect(&mut self, parser: &mut Parser) -> Result<(), ParserError> {
        if std::mem::take(&mut self.pending) || parser.consume_token(&Token::Gt) {
            return Ok(());
        }
        if parser.consume_token(&Token::ShiftRight) {
            self.pending = true;
            return Ok(());
        }
        parser.expected("`>`", parser.peek_token())
    }
}

/// Reads a type; `closes` carries a half-used `>>` between nesting levels.
fn parse_type(parser: &mut Parser, closes: &mut Closes) -> Result<ColumnType, ParserError> {
    let token = parser.next_token();
    let Token::Word(word) = &token.token else {
        return parser.expected("a column type", token);
    };
    let name = word.value.to_ascii_uppercase();
    let parsed = match name.as_str() {
        "BOOLEAN" | "BOOL" => ColumnType::Boolean,
        "TINYINT" => ColumnType::TinyInt,
        "SMALLINT" => ColumnType::SmallInt,
        "INT" | "INTEGER" => ColumnType::Int,
        "BIGINT" => ColumnType::BigInt,
        "FLOAT" | "REAL" => ColumnType::Float,
        "DOUBLE" => {
            let _precision = parser.parse_keyword(Keyword::PRECISION);
            ColumnType::Double
        }
        "DECIMAL" | "DEC" | "NUMERIC" => decimal(parser)?,
        "STRING" | "TEXT" => ColumnType::String,
        "VARCHAR" | "CHAR" => {
            optional_length(parser)?;
            ColumnType::String
        }
        "BYTES" => ColumnType::Bytes,
        "VARBINARY" | "BINARY" => {
            optional_length(parser)?;
            ColumnType::Bytes
        }
        "DATE" => ColumnType::Date,
        "TIMESTAMP" => timestamp(parser)?,
        "TIMESTAMP_LTZ" => ColumnType::TimestampLtz {
            precision: precision(parser)?,
        },
        "ARRAY" => {
            parser.expect_token(&Token::Lt)?;
            let element = parse_type(parser, closes)?;
            closes.expect(parser)?;
            ColumnType::Array(Box::new(element))
        }
        "MAP" => {
            parser.expect_token(&Token::Lt)?;
            let key = parse_type(parser, closes)?;
            parser.expect_token(&Token::Comma)?;
            let value = parse_type(parser, closes)?;
            closes.expect(parser)?;
            ColumnType::Map(Box::new(key), Box::new(value))
        }
        "ROW" => row(parser, closes)?,
        _ => {
            return Err(ParserError::ParserError(format!(
                "unsupported column type {}{}",
                word.value, token.span.start
            )))
        }
    };
    Ok(parsed)
}

/// `DECIMAL`, `DECIMAL(p)` or `DECIMAL(p, s)` (Flink's default is `(10, 0)`).
fn decimal(parser: &mut Parser) -> Result<ColumnType, ParserError> {
    let (mut precision, mut scale) = (10, 0);
    if parser.consume_token(&Token::LParen) {
        precision = small_number(parser, 1, 38, "DECIMAL precision")?;
        if parser.consume_token(&Token::Comma) {
            scale = small_number(parser, 0, precision, "DECIMAL scale")?;
        }
        parser.expect_token(&Token::RParen)?;
    }
    Ok(ColumnType::Decimal { precision, scale })
}

/// `TIMESTAMP[(p)] [WITHOUT TIME ZONE | WITH LOCAL TIME ZONE]`.
fn timestamp(parser: &mut Parser) -> Result<ColumnType, ParserError> {
    let precision = precision(parser)?;
    if parser.parse_keywords(&[Keyword::WITH, Keyword::LOCAL, Keyword::TIME, Keyword::ZONE]) {
        return Ok(ColumnType::TimestampLtz { precision });
    }
    let _without_time_zone =
        parser.parse_keywords(&[Keyword::WITHOUT, Keyword::TIME, Keyword::ZONE]);
    Ok(ColumnType::Timestamp { precision })
}

/// An optional `(p)` of fractional second digits, 6 when absent.
fn precision(parser: &mut Parser) -> Result<u8, ParserError> {
    if !parser.consume_token(&Token::LParen) {
        return Ok(6);
    }
    let precision = small_number(parser, 0, 9, "timestamp precision")?;
    parser.expect_token(&Token::RParen)?;
    Ok(precision)
}

/// An optional `(n)` length, which a `STRING` or `BYTES` column does not enforce.
fn optional_length(parser: &mut Parser) -> Result<(), ParserError> {
    if parser.consume_token(&Token::LParen) {
        parser.parse_literal_uint()?;
        parser.expect_token(&Token::RParen)?;
    }
    Ok(())
}

/// `ROW<name type, ...>` or `ROW(name type, ...)`.
fn row(parser: &mut Parser, closes: &mut Closes) -> Result<ColumnType, ParserError> {
    let angle = parser.consume_token(&Token::Lt);
    if !angle {
        parser.expect_token(&Token::LParen)?;
    }
    let mut fields = Vec::new();
    loop {
        let name = parser.parse_identifier()?.value;
        let data_type = parse_type(parser, closes)?;
        fields.push(Field { name, data_type });
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    if angle {
        closes.expect(parser)?;
    } else {
        parser.expect_token(&Token::RParen)?;
    }
    Ok(ColumnType::Row(fields))
}

/// A number between `min` and `max`, or an error that names `what`.
fn small_number(parser: &mut Parser, min: u8, max: u8, what: &str) -> Result<u8, ParserError> {
    let at = parser.peek_token().span.start;
    let value = parser.parse_literal_uint()?;
    u8::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            ParserError::ParserError(format!(
                "{what} must be between {min} and {max}, not {value}{at}"
            ))
        })
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("BOOLEAN"),
            ColumnType::TinyInt => f.write_str("TINYINT"),
            ColumnType::SmallInt => f.write_str("SMALLINT"),
            ColumnType::Int => f.write_str("INT"),
            ColumnType::BigInt => f.write_str("BIGINT"),
            ColumnType::Float => f.write_str("FLOAT"),
            ColumnType::Double => f.write_str("DOUBLE"),
            ColumnType::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            ColumnType::String => f.write_str("STRING"),
            ColumnType::Bytes => f.write_str("BYTES"),
            ColumnType::Date => f.write_str("DATE"),
            ColumnType::Timestamp { precision } => write!(f, "TIMESTAMP({precision})"),
            ColumnType::TimestampLtz { precision } => write!(f, "TIMESTAMP_LTZ({precision})"),
            ColumnType::Array(element) => write!(f, "ARRAY<{element}>"),
            ColumnType::Map(key, value) => write!(f, "MAP<{key}, {value}>"),
            ColumnType::Row(fields) => {
                f.write_str("ROW<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{}` {}", field.name, field.data_type)?;
                }
                f.write_str(">")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;

    fn parse(text: &str) -> Result<ColumnType, ParserError> {
        let mut parser = Parser::new(&GenericDialect {}).try_with_sql(text)?;
        ColumnType::parse(&mut parser)
    }

    #[test]
    fn every_spelling_reads_back_as_what_it_prints() {
        let cases = [
            ("bigint", "BIGINT"),
            ("INTEGER", "INT"),
            ("VARCHAR(20)", "STRING"),
            ("DECIMAL(12, 2)", "DECIMAL(12, 2)"),
            ("DECIMAL", "DECIMAL(10, 0)"),
            ("TIMESTAMP(3)", "TIMESTAMP(3)"),
            ("TIMESTAMP", "TIMESTAMP(6)"),
            ("TIMESTAMP(3) WITH LOCAL TIME ZONE", "TIMESTAMP_LTZ(3)"),
            ("TIMESTAMP_LTZ(3)", "TIMESTAMP_LTZ(3)"),
            ("ARRAY<STRING>", "ARRAY<STRING>"),
            ("ARRAY<ARRAY<INT>>", "ARRAY<ARRAY<INT>>"),
            ("MAP<STRING, BIGINT>", "MAP<STRING, BIGINT>"),
            (
                "ROW<a INT, b ARRAY<DOUBLE>>",
                "ROW<`a` INT, `b` ARRAY<DOUBLE>>",
            ),
        ];
        for (text, printed) in cases {
            let parsed = parse(text).unwrap();
            assert_eq!(parsed.to_string(), printed, "{text}");
            assert_eq!(parse(printed).unwrap(), parsed, "{printed}");
        }
    }

    #[test]
    fn an_unknown_type_or_a_bad_precision_is_named_with_its_place() {
        let error = parse("UUID").unwrap_err().to_string();
        assert!(error.contains("unsupported column type UUID"), "{error}");
        let error = parse("TIMESTAMP(12)").unwrap_err().to_string();
        assert!(
            error.contains("timestamp precision must be between 0 and 9, not 12"),
            "{error}"
        );
    }
}
