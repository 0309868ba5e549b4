//! Prints a table back as the `CREATE TABLE` statement that declares it, the
//! form the catalog stores and `weir catalog show` prints.

use std::fmt::Write;

use crate::interval::render_ms;
use crate::table::{ColumnOrigin, Table};

/// `name` as a quoted identifier: backticks, as Flink SQL writes them.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `text` as a SQL string literal.
pub fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `CREATE TABLE` statement that declares `table`; it reads back as `table`.
pub fn render(table: &Table) -> String {
    let mut lines = Vec::new();
    for column in &table.columns {
        let mut line = format!("  {} ", quote_ident(&column.name));
        match &column.origin {
            ColumnOrigin::ProcessingTime => line.push_str("AS PROCTIME()"),
            origin => {
                line.push_str(&column.data_type.to_string());
                if !column.nullable {
                    line.push_str(" NOT NULL");
                }
                if let ColumnOrigin::Metadata(key) = origin {
                    let _ = write!(line, " METADATA FROM {}", quote_string(key));
                }
            }
        }
        if let Some(comment) = &column.comment {
            let _ = write!(line, " COMMENT {}", quote_string(comment));
        }
        lines.push(line);
    }
    if let Some(watermark) = &table.watermark {
        let column = quote_ident(&watermark.column);
        let expr = if watermark.delay_ms == 0 {
            column.clone()
        } else {
            format!("{column} - {}", render_ms(watermark.delay_ms))
        };
        lines.push(format!("  WATERMARK FOR {column} AS {expr}"));
    }
    if !table.primary_key.is_empty() {
        let key: Vec<_> = table.primary_key.iter().map(|k| quote_ident(k)).collect();
        lines.push(format!("  PRIMARY KEY ({}) NOT ENFORCED", key.join(", ")));
    }
    let mut sql = format!(
        "CREATE TABLE {} (\n{}\n)",
        quote_ident(&table.name),
        lines.join(",\n")
    );
    if let Some(comment) = &table.comment {
        let _ = write!(sql, " COMMENT {}", quote_string(comment));
    }
    let options: Vec<_> = table
        .options
        .iter()
        .map(|(key, value)| format!("  {} = {}", quote_string(key), quote_string(value)))
        .collect();
    let _ = write!(sql, " WITH (\n{}\n);\n", options.join(",\n"));
    sql
}
