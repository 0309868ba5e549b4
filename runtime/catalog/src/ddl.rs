//! Reads Flink's `CREATE TABLE` (columns, metadata and processing-time
//! columns, `WATERMARK FOR`, `PRIMARY KEY ... NOT ENFORCED`, `WITH (...)`)
//! on top of sqlparser's tokenizer and expression parser, which do not know
//! the watermark clause; every other statement of a script is sqlparser's.

use std::collections::BTreeMap;

use sqlparser::ast::{BinaryOperator, Expr, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use crate::error::{Error, Result};
use crate::interval::interval_ms;
use crate::table::{Column, ColumnOrigin, Table, WatermarkSpec};
use crate::types::ColumnType;
use crate::validate::validate;

/// One statement of a SQL script.
#[derive(Debug)]
pub enum ScriptStatement {
    /// A `CREATE TABLE`, read and checked.
    CreateTable(Table),
    /// `SET 'key' = 'value'`, as Flink's SQL client writes a job setting
    /// (`'table.exec.state.ttl' = '1 h'`), for the planner to take or refuse.
    Set {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
    /// Anything else (`INSERT INTO ...`, `SELECT ...`), as sqlparser read it,
    /// for the planner to take or refuse.
    Other(Box<Statement>),
}

/// Reads a script of statements separated by `;`; each `CREATE TABLE` is
/// checked as [`parse_table`] checks it.
pub fn parse_script(sql: &str) -> Result<Vec<ScriptStatement>> {
    let dialect = GenericDialect {};
    let tokens = crate::dialect::tokens(&dialect, sql).map_err(|e| Error::Syntax(e.to_string()))?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            return Ok(statements);
        }
        let statement = if starts_create_table(&parser) {
            let table = create_table(&mut parser).map_err(syntax)?;
            validate(&table)?;
            ScriptStatement::CreateTable(table)
        } else if starts_quoted_set(&parser) {
            quoted_set(&mut parser).map_err(syntax)?
        } else {
            ScriptStatement::Other(Box::new(parser.parse_statement().map_err(syntax)?))
        };
        statements.push(statement);
        let next = parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return parser
                .expected("`;` or the end of the script", next)
                .map_err(syntax);
        }
    }
}

/// Reads exactly one `CREATE TABLE` statement and checks it: names, types,
/// the watermark column, the key and the connector's options.
pub fn parse_table(sql: &str) -> Result<Table> {
    let mut statements = parse_script(sql)?;
    match (statements.pop(), statements.is_empty()) {
        (Some(ScriptStatement::CreateTable(table)), true) => Ok(table),
        _ => Err(Error::Syntax(
            "expected exactly one CREATE TABLE statement".to_string(),
        )),
    }
}

/// A sqlparser error as the catalog's: its message already says where.
fn syntax(error: ParserError) -> Error {
    let message = match error {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    Error::Syntax(message)
}

/// Whether the next tokens are `CREATE [TEMPORARY] TABLE`.
fn starts_create_table(parser: &Parser) -> bool {
    let [first, second, third] = parser.peek_tokens::<3>();
    let keyword = |token: &Token, k: Keyword| matches!(token, Token::Word(w) if w.keyword == k);
    keyword(&first, Keyword::CREATE)
        && (keyword(&second, Keyword::TABLE)
            || (keyword(&second, Keyword::TEMPORARY) && keyword(&third, Keyword::TABLE)))
}

/// Whether the next tokens are `SET '...'` (Flink's quoted setting).
fn starts_quoted_set(parser: &Parser) -> bool {
    let [first, second] = parser.peek_tokens::<2>();
    matches!(&first, Token::Word(w) if w.keyword == Keyword::SET)
        && matches!(second, Token::SingleQuotedString(_))
}

/// `SET 'key' = 'value'`.
fn quoted_set(parser: &mut Parser) -> Result<ScriptStatement, ParserError> {
    parser.expect_keyword(Keyword::SET)?;
    let key = parser.parse_literal_string()?;
    parser.expect_token(&Token::Eq)?;
    let value = parser.parse_literal_string()?;
    Ok(ScriptStatement::Set { key, value })
}

/// Consumes the word `word` (keyword or not, unquoted) if it is next.
fn parse_word(parser: &mut Parser, word: &str) -> bool {
    let next = parser.peek_token();
    let found = matches!(&next.token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    if found {
        parser.next_token();
    }
    found
}

/// An error at the next token.
fn error_here<T>(parser: &Parser, message: &str) -> Result<T, ParserError> {
    Err(ParserError::ParserError(format!(
        "{message}{}",
        parser.peek_token().span.start
    )))
}

/// `CREATE [TEMPORARY] TABLE [IF NOT EXISTS] name (...) [COMMENT '...'] WITH (...)`.
fn create_table(parser: &mut Parser) -> Result<Table, ParserError> {
    parser.expect_keyword(Keyword::CREATE)?;
    // Optional words that change nothing here: a job's tables live as long
    // as the job, and a catalog refuses a second table of a name anyway.
    let _temporary = parser.parse_keyword(Keyword::TEMPORARY);
    parser.expect_keyword(Keyword::TABLE)?;
    let _if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_identifier()?.value;
    let mut table = Table {
        name,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        options: BTreeMap::new(),
        comment: None,
    };
    parser.expect_token(&Token::LParen)?;
    loop {
        element(parser, &mut table)?;
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    if parser.parse_keyword(Keyword::COMMENT) {
        table.comment = Some(parser.parse_literal_string()?);
    }
    if parser.parse_keyword(Keyword::WITH) {
        table.options = options(parser)?;
    }
    Ok(table)
}

/// One element of the table's parentheses: a column, the watermark or the key.
fn element(parser: &mut Parser, table: &mut Table) -> Result<(), ParserError> {
    if parse_word(parser, "WATERMARK") {
        if table.watermark.is_some() {
            return error_here(parser, "a table has at most one WATERMARK");
        }
        parser.expect_keyword(Keyword::FOR)?;
        let column = parser.parse_identifier()?.value;
        parser.expect_keyword(Keyword::AS)?;
        let at = parser.peek_token().span.start;
        let expr = parser.parse_expr()?;
        let delay_ms = watermark_delay(&column, &expr)
            .map_err(|m| ParserError::ParserError(format!("{m}{at}")))?;
        table.watermark = Some(WatermarkSpec { column, delay_ms });
        return Ok(());
    }
    let at = parser.peek_token().span.start;
    if parser.parse_keyword(Keyword::CONSTRAINT) {
        parser.parse_identifier()?;
    }
    if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        if !table.primary_key.is_empty() {
            return error_here(parser, "a table has at most one PRIMARY KEY");
        }
        parser.expect_token(&Token::LParen)?;
        table.primary_key = parser
            .parse_comma_separated(|p| p.parse_identifier())?
            .into_iter()
            .map(|ident| ident.value)
            .collect();
        parser.expect_token(&Token::RParen)?;
        if !(parser.parse_keyword(Keyword::NOT) && parse_word(parser, "ENFORCED")) {
            return Err(ParserError::ParserError(format!(
                "PRIMARY KEY must be declared NOT ENFORCED (as in Flink: the key is not checked, it keys upserts){at}"
            )));
        }
        return Ok(());
    }
    table.columns.push(column(parser)?);
    Ok(())
}

/// `name type [NOT NULL] [METADATA [FROM 'key'] [VIRTUAL]] [COMMENT '...']`
/// or `name AS PROCTIME()`.
fn column(parser: &mut Parser) -> Result<Column, ParserError> {
    let name = parser.parse_identifier()?.value;
    let mut column = Column {
        name,
        data_type: ColumnType::TimestampLtz { precision: 3 },
        nullable: true,
        origin: ColumnOrigin::Value,
        comment: None,
    };
    if parser.parse_keyword(Keyword::AS) {
        let at = parser.peek_token().span.start;
        let expr = parser.parse_expr()?;
        if !matches!(&expr, Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("PROCTIME"))
        {
            return Err(ParserError::ParserError(format!(
                "computed column `{}` AS {expr} is not supported (only AS PROCTIME()){at}",
                column.name
            )));
        }
        column.origin = ColumnOrigin::ProcessingTime;
        column.nullable = false;
    } else {
        column.data_type = ColumnType::parse(parser)?;
    }
    loop {
        if parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
            column.nullable = false;
        } else if parser.parse_keyword(Keyword::NULL) {
            column.nullable = true;
        } else if parse_word(parser, "METADATA") {
            let key = if parser.parse_keyword(Keyword::FROM) {
                parser.parse_literal_string()?
            } else {
                column.name.clone()
            };
            parse_word(parser, "VIRTUAL");
            column.origin = ColumnOrigin::Metadata(key);
        } else if parser.parse_keyword(Keyword::COMMENT) {
            column.comment = Some(parser.parse_literal_string()?);
        } else {
            return Ok(column);
        }
    }
}

/// The delay of `WATERMARK FOR column AS <expr>`: `column` itself (no delay)
/// or `column - INTERVAL ...`, the two strategies Flink's planner optimises.
fn watermark_delay(column: &str, expr: &Expr) -> Result<u64, String> {
    let is_column =
        |e: &Expr| matches!(e, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(column));
    match expr {
        e if is_column(e) => Ok(0),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if is_column(left) => match right.as_ref() {
            Expr::Interval(interval) => interval_ms(interval),
            other => Err(format!("the watermark delay must be an INTERVAL, not `{other}`")),
        },
        other => Err(format!(
            "WATERMARK FOR {column} AS `{other}` is not supported: write `{column}` or `{column} - INTERVAL '5' SECOND`"
        )),
    }
}

/// `( 'key' = 'value', ... )`; a key given twice is refused.
fn options(parser: &mut Parser) -> Result<BTreeMap<String, String>, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let mut options = BTreeMap::new();
    loop {
        let at = parser.peek_token().span.start;
        let key = match parser.next_token().token {
            Token::SingleQuotedString(s) => s,
            Token::Word(w) => w.value,
            _ => {
                parser.prev_token();
                return parser.expected("an option name such as 'connector'", parser.peek_token());
            }
        };
        parser.expect_token(&Token::Eq)?;
        let value = parser.parse_literal_string()?;
        if options.insert(key.clone(), value).is_some() {
            return Err(ParserError::ParserError(format!(
                "option '{key}' is given twice{at}"
            )));
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    Ok(options)
}
