//! `weir catalog add|list|show|drop`: the data dictionary on a local
//! directory, with tables declared in DDL or inferred from a sample message,
//! an Avro schema or a JSON Schema.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use weir_catalog::infer::{columns_from_samples, read_samples, split_samples};
use weir_catalog::render::render;
use weir_catalog::schemas::{columns_from_avro, columns_from_json_schema};
use weir_catalog::validate::validate;
use weir_catalog::{parse_table, Catalog, Column, Table, WatermarkSpec};

use crate::error::{Error, Result};

/// Where the catalog is, and what to do with it.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The catalog's directory: one `{table}.sql` file per table.
    #[arg(long, env = "WEIR_CATALOG", default_value = "catalog", global = true)]
    pub catalog: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: CatalogAction,
}

/// The catalog's subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogAction {
    /// Register a table: from a CREATE TABLE file, or inferred from a sample
    /// message, an Avro schema or a JSON Schema with a topic to read.
    Add(Box<AddArgs>),
    /// List the registered tables: name, connector, topic, format, columns.
    List,
    /// Print a table's CREATE TABLE.
    Show {
        /// The table's name.
        name: String,
    },
    /// Remove a table from the catalog (the topic and its data stay).
    Drop {
        /// The table's name.
        name: String,
    },
}

/// How `weir catalog add` gets the table.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// A file holding one CREATE TABLE statement.
    #[arg(short = 'f', long, conflicts_with_all = ["sample", "avro_schema", "json_schema"])]
    pub file: Option<PathBuf>,
    /// Sample messages (JSON objects, one per line or in an array) to infer the columns from.
    #[arg(long, conflicts_with_all = ["avro_schema", "json_schema"])]
    pub sample: Option<PathBuf>,
    /// An Avro record schema (.avsc) to infer the columns from; the table reads Avro with it.
    #[arg(long, conflicts_with = "json_schema")]
    pub avro_schema: Option<PathBuf>,
    /// A JSON Schema of the messages to infer the columns from.
    #[arg(long)]
    pub json_schema: Option<PathBuf>,
    /// The table's name (with --discriminator FIELD alone: the prefix of one table per structure).
    #[arg(long)]
    pub name: Option<String>,
    /// The Kafka topic the table reads or writes.
    #[arg(long)]
    pub topic: Option<String>,
    /// The Kafka brokers, host:port[,host:port...].
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap_servers: String,
    /// The event-time column and how late records may be: `at`, or `at - 5s`.
    #[arg(long)]
    pub watermark: Option<String>,
    /// A topic carrying several message structures: `FIELD=VALUE` registers the
    /// table of one structure; `FIELD` alone (with --sample) one table per
    /// value of FIELD found in the samples, named `{name}_{value}`.
    #[arg(long)]
    pub discriminator: Option<String>,
    /// Further connector options, `KEY=VALUE` (repeatable), as in WITH (...).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Print the CREATE TABLE statements without registering them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs a catalog subcommand.
pub fn catalog(args: &CatalogArgs) -> Result<()> {
    let catalog = Catalog::new(&args.catalog);
    match &args.action {
        CatalogAction::Add(add) => {
            for table in tables_to_add(add)? {
                if add.dry_run {
                    print!("{}", render(&table));
                } else {
                    let path = catalog.add(&table)?;
                    println!("registered table {} in {}", table.name, path.display());
                }
            }
        }
        CatalogAction::List => print!("{}", listing(&catalog.list()?)),
        CatalogAction::Show { name } => print!("{}", render(&catalog.get(name)?)),
        CatalogAction::Drop { name } => {
            catalog.drop_table(name)?;
            println!("dropped table {name} from {}", catalog.dir().display());
        }
    }
    Ok(())
}

/// The tables `add` registers, checked.
fn tables_to_add(add: &AddArgs) -> Result<Vec<Table>> {
    if let Some(file) = &add.file {
        return Ok(vec![parse_table(&read(file)?)?]);
    }
    let name = add
        .name
        .clone()
        .ok_or_else(|| usage("--name is needed unless the table comes from -f FILE"))?;
    let mut options = connector_options(add)?;
    let discriminator = add
        .discriminator
        .as_deref()
        .map(|d| match d.split_once('=') {
            Some((field, value)) => (field, Some(value)),
            None => (d, None),
        });
    let structures: Vec<(String, Option<String>, Vec<Column>)> = if let Some(path) = &add.sample {
        let source = path.display().to_string();
        let samples = read_samples(&read(path)?, &source)?;
        let Some((field, wanted)) = discriminator else {
            let columns = columns_from_samples(&samples, &source)?;
            return Ok(vec![table(add, name, columns, options)?]);
        };
        let mut groups = split_samples(samples, field, &source)?;
        if let Some(value) = wanted {
            let group = groups
                .remove(value)
                .ok_or_else(|| usage(&format!("no sample in {source} has {field} = {value}")))?;
            groups = [(value.to_string(), group)].into();
        }
        let mut structures = Vec::new();
        for (value, group) in groups {
            let columns = columns_from_samples(&group, &format!("{source} ({field} = {value})"))?;
            let table_name = match wanted {
                Some(_) => name.clone(),
                None => format!("{name}_{}", table_suffix(&value)),
            };
            structures.push((table_name, Some(value), columns));
        }
        structures
    } else {
        if let Some((field, None)) = discriminator {
            return Err(usage(&format!(
                "--discriminator {field} without a value splits sample messages: give --sample, or {field}=VALUE"
            )));
        }
        let value = discriminator.and_then(|(_, v)| v).map(str::to_string);
        let columns = if let Some(path) = &add.avro_schema {
            let text = read(path)?;
            options.insert("avro.schema".to_string(), compact_json(&text)?);
            options.insert("format".to_string(), "avro".to_string());
            columns_from_avro(&text, &path.display().to_string())?
        } else if let Some(path) = &add.json_schema {
            columns_from_json_schema(&read(path)?, &path.display().to_string())?
        } else {
            return Err(usage(
                "give the table as -f FILE, or --sample, --avro-schema or --json-schema to infer it from",
            ));
        };
        vec![(name, value, columns)]
    };
    let field = discriminator.map(|(field, _)| field);
    structures
        .into_iter()
        .map(|(name, value, columns)| {
            let mut options = options.clone();
            if let (Some(field), Some(value)) = (field, value) {
                options.insert("discriminator.field".to_string(), field.to_string());
                options.insert("discriminator.value".to_string(), value);
            }
            table(add, name, columns, options)
        })
        .collect()
}

/// A table of the value's `columns`, with the watermark `--watermark` asks for, checked.
fn table(
    add: &AddArgs,
    name: String,
    columns: Vec<Column>,
    options: BTreeMap<String, String>,
) -> Result<Table> {
    let watermark = add.watermark.as_deref().map(watermark_spec).transpose()?;
    let table = Table {
        name,
        columns,
        watermark,
        primary_key: Vec::new(),
        options,
        comment: None,
    };
    validate(&table)?;
    Ok(table)
}

/// The Kafka connector's options from the flags, `--option` last.
fn connector_options(add: &AddArgs) -> Result<BTreeMap<String, String>> {
    let topic = add
        .topic
        .clone()
        .ok_or_else(|| usage("--topic is needed to infer a Kafka table"))?;
    let mut options = BTreeMap::from([
        ("connector".to_string(), "kafka".to_string()),
        ("topic".to_string(), topic),
        (
            "properties.bootstrap.servers".to_string(),
            add.bootstrap_servers.clone(),
        ),
        ("format".to_string(), "json".to_string()),
    ]);
    for option in &add.options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| usage(&format!("--option {option} is not KEY=VALUE")))?;
        options.insert(key.to_string(), value.to_string());
    }
    Ok(options)
}

/// `--watermark at` or `--watermark "at - 5s"`.
fn watermark_spec(text: &str) -> Result<WatermarkSpec> {
    let (column, delay) = match text.split_once('-') {
        Some((column, delay)) => (
            column.trim(),
            crate::cli::parse_duration(delay.trim()).map_err(|e| usage(&e))?,
        ),
        None => (text.trim(), std::time::Duration::ZERO),
    };
    let delay_ms =
        u64::try_from(delay.as_millis()).map_err(|_| usage("--watermark delay is too long"))?;
    Ok(WatermarkSpec {
        column: column.to_string(),
        delay_ms,
    })
}

/// A discriminator value as a table-name suffix: lower case, `_` for the rest.
fn table_suffix(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A JSON document on one line, for an option's value.
fn compact_json(text: &str) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| usage(&format!("the Avro schema is not JSON: {e}")))?;
    Ok(value.to_string())
}

/// The text of `path`.
fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::io("reading", path, source))
}

/// A usage error.
fn usage(message: &str) -> Error {
    Error::Usage(message.to_string())
}

/// The table `weir catalog list` prints.
fn listing(tables: &[Table]) -> String {
    let mut text = format!(
        "{:<24} {:<14} {:<24} {:<6} {}\n",
        "NAME", "CONNECTOR", "TOPIC", "FORMAT", "COLUMNS"
    );
    for table in tables {
        let format = table.format().unwrap_or("-");
        let topic = table.location().unwrap_or("-");
        let columns: Vec<_> = table
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.data_type))
            .collect();
        text.push_str(&format!(
            "{:<24} {:<14} {:<24} {:<6} {}\n",
            table.name,
            table.connector(),
            topic,
            format,
            columns.join(", ")
        ));
    }
    text
}
