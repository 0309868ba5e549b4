//! A SQL StreamJob's tables: the script names tables it does not declare,
//! and these are the namespace's StreamTables (or the built-in Nexmark ones).
//! The script the job runs is their `CREATE TABLE`s followed by its own, so a
//! change to a StreamTable the job uses changes the deployed job (an upgrade,
//! with its savepoint), and a table that is missing or broken keeps the job
//! from starting, saying which.

use std::collections::BTreeSet;

use weir_catalog::{builtin_tables, parse_script, script_tables};

use crate::table::{declared_table, StreamTable};

/// The script a SQL job runs, its tables resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedScript {
    /// The StreamTables' statements, then the script (unchanged when it uses none).
    pub script: String,
    /// The StreamTables it uses, by resource name.
    pub tables: Vec<String>,
}

/// Why a script's tables could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// CamelCase: `InvalidSql`, `TableNotFound` or `TableNotReady`.
    pub reason: &'static str,
    /// What is wrong, naming the tables.
    pub message: String,
}

/// Resolves the tables `script` names but does not declare against the
/// namespace's StreamTables `available`.
pub fn resolve(script: &str, available: &[StreamTable]) -> Result<ResolvedScript, Unresolved> {
    let statements = parse_script(script).map_err(|e| Unresolved {
        reason: "InvalidSql",
        message: format!("spec.job.sql: {e}"),
    })?;
    let builtin: BTreeSet<String> = builtin_tables()
        .map_err(|e| Unresolved {
            reason: "InvalidSql",
            message: e.to_string(),
        })?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut used = Vec::new();
    let mut missing = Vec::new();
    let mut broken = Vec::new();
    for name in script_tables(&statements).undeclared() {
        let resource = available.iter().find(|r| {
            r.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.replace('-', "_") == *name)
        });
        match (resource, builtin.contains(name)) {
            (Some(resource), _) => match declared_table(resource) {
                Ok(_) => used.push(resource),
                Err(why) => broken.push(format!("`{name}`: {why}")),
            },
            (None, true) => {}
            (None, false) => missing.push(format!("`{name}`")),
        }
    }
    if !missing.is_empty() {
        return Err(Unresolved {
            reason: "TableNotFound",
            message: format!(
                "the script names {} but neither declares it (CREATE TABLE) nor finds a StreamTable of that name (`-` for `_`) in the namespace; the job starts once it exists",
                missing.join(", ")
            ),
        });
    }
    if !broken.is_empty() {
        return Err(Unresolved {
            reason: "TableNotReady",
            message: format!(
                "StreamTables the script uses are not valid: {}",
                broken.join("; ")
            ),
        });
    }
    if used.is_empty() {
        return Ok(ResolvedScript {
            script: script.to_string(),
            tables: Vec::new(),
        });
    }
    let mut resolved = String::new();
    for resource in &used {
        resolved.push_str(resource.spec.sql.trim().trim_end_matches(';'));
        resolved.push_str(";\n");
    }
    resolved.push_str(script);
    Ok(ResolvedScript {
        script: resolved,
        tables: used
            .iter()
            .filter_map(|r| r.metadata.name.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::StreamTableSpec;

    const CLICKS: &str = "CREATE TABLE app_clicks (user_id BIGINT, at TIMESTAMP(3), WATERMARK FOR at AS at) \
        WITH ('connector' = 'kafka', 'topic' = 'clicks', 'properties.bootstrap.servers' = 'kafka:9092', 'format' = 'json');";
    const SCRIPT: &str = "CREATE TABLE out (user_id BIGINT, n BIGINT) WITH ('connector' = 'print');
        INSERT INTO out SELECT user_id, COUNT(*) FROM app_clicks GROUP BY user_id";

    fn table(name: &str, sql: &str) -> StreamTable {
        StreamTable::new(
            name,
            StreamTableSpec {
                sql: sql.to_string(),
            },
        )
    }

    #[test]
    fn a_script_gets_the_statements_of_the_stream_tables_it_uses_first() {
        let available = [
            table("app-clicks", CLICKS),
            table("unused", "CREATE TABLE broken"),
        ];
        let resolved = resolve(SCRIPT, &available).expect("resolves");
        assert_eq!(resolved.tables, ["app-clicks"]);
        assert!(resolved.script.starts_with("CREATE TABLE app_clicks"));
        assert!(resolved.script.ends_with(SCRIPT));
        assert_eq!(
            parse_script(&resolved.script).map(|s| s.len()).ok(),
            Some(3)
        );
    }

    #[test]
    fn a_script_of_its_own_and_builtin_tables_is_left_as_it_is() {
        let script = "CREATE TABLE app_clicks (user_id BIGINT) WITH ('connector' = 'blackhole');
            INSERT INTO app_clicks SELECT bidder FROM bid";
        let resolved = resolve(script, &[table("app-clicks", CLICKS)]).expect("resolves");
        assert_eq!(resolved.script, script);
        assert!(resolved.tables.is_empty());
    }

    #[test]
    fn a_missing_or_broken_table_is_named() {
        let missing = resolve(SCRIPT, &[]).unwrap_err();
        assert_eq!(missing.reason, "TableNotFound");
        assert!(
            missing.message.contains("`app_clicks`"),
            "{}",
            missing.message
        );
        let broken =
            resolve(SCRIPT, &[table("app-clicks", "CREATE TABLE app_clicks")]).unwrap_err();
        assert_eq!(broken.reason, "TableNotReady");
        assert!(
            broken
                .message
                .starts_with("StreamTables the script uses are not valid: `app_clicks`: "),
            "{}",
            broken.message
        );
        let invalid = resolve("INSERT INTO", &[]).unwrap_err();
        assert_eq!(invalid.reason, "InvalidSql");
    }
}
