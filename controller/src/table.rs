//! The `StreamTable` resource (`weir.dev/v1alpha1`): a table of the data
//! dictionary in a namespace, declared as the `CREATE TABLE` a SQL job reads
//! or writes by name, and checked by the controller with weir's own catalog
//! code; its status says whether it holds together and what it reads.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_catalog::{parse_table, Table};

use crate::crd::Condition;

/// A table of the data dictionary.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamTable",
    plural = "streamtables",
    shortname = "st",
    namespaced,
    status = "StreamTableStatus",
    printcolumn = r#"{"name":"Table","type":"string","jsonPath":".status.table"}"#,
    printcolumn = r#"{"name":"Connector","type":"string","jsonPath":".status.connector"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topic"}"#,
    printcolumn = r#"{"name":"Format","type":"string","jsonPath":".status.format"}"#,
    printcolumn = r#"{"name":"Columns","type":"integer","jsonPath":".status.columns"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StreamTableSpec {
    /// The table's `CREATE TABLE` statement, in Flink SQL (`weir catalog show`
    /// prints one). Its table name is the resource's name with `-` written as
    /// `_` (`app-events` declares table `app_events`).
    #[schemars(length(min = 1))]
    pub sql: String,
}

/// What the controller found the table to be.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTableStatus {
    /// The generation these findings are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: `True` when the statement holds together, `False` with the reason.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The table's name in SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Its connector (`kafka`, `upsert-kafka`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The topic (or path) it reads or writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The format of its records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// How many columns it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<u32>,
}

/// The table a StreamTable declares, or why it declares none: a statement
/// that does not hold together, or one naming another table than the resource.
pub fn declared_table(resource: &StreamTable) -> Result<Table, String> {
    let table = parse_table(&resource.spec.sql).map_err(|e| e.to_string())?;
    let name = resource.metadata.name.clone().unwrap_or_default();
    if table.name.replace('_', "-") != name {
        return Err(format!(
            "spec.sql declares table `{}`, but a StreamTable named {name} declares table `{}`",
            table.name,
            name.replace('-', "_")
        ));
    }
    Ok(table)
}

/// The status of `resource` as of `now` (RFC 3339): the Ready condition keeps
/// its transition time while it does not change.
pub fn table_status(resource: &StreamTable, now: &str) -> StreamTableStatus {
    let old = resource.status.clone().unwrap_or_default();
    let declared = declared_table(resource);
    let (ready, reason, message) = match &declared {
        Ok(table) => (
            "True",
            "Valid",
            format!(
                "table `{}`: {} columns, connector '{}'",
                table.name,
                table.columns.len(),
                table.connector()
            ),
        ),
        Err(why) => ("False", "InvalidTable", why.clone()),
    };
    let since = old
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == ready && c.reason == reason)
        .map_or_else(|| now.to_string(), |c| c.last_transition_time.clone());
    let table = declared.as_ref().ok();
    StreamTableStatus {
        observed_generation: resource.metadata.generation,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: ready.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
        }],
        table: table.map(|t| t.name.clone()),
        connector: table.map(|t| t.connector().to_string()),
        topic: table.and_then(|t| t.location().map(str::to_string)),
        format: table.and_then(|t| t.format().map(str::to_string)),
        columns: table.map(|t| u32::try_from(t.columns.len()).unwrap_or(u32::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLICKS: &str = "CREATE TABLE app_clicks (user_id BIGINT, at TIMESTAMP(3), WATERMARK FOR at AS at) \
        WITH ('connector' = 'kafka', 'topic' = 'clicks', 'properties.bootstrap.servers' = 'kafka:9092', 'format' = 'json')";

    fn resource(name: &str, sql: &str) -> StreamTable {
        let mut resource = StreamTable::new(
            name,
            StreamTableSpec {
                sql: sql.to_string(),
            },
        );
        resource.metadata.generation = Some(2);
        resource
    }

    #[test]
    fn a_valid_table_is_ready_with_what_it_reads() {
        let status = table_status(&resource("app-clicks", CLICKS), "2026-12-02T10:00:00Z");
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.table.as_deref(), Some("app_clicks"));
        assert_eq!(status.topic.as_deref(), Some("clicks"));
        assert_eq!(
            (status.format.as_deref(), status.columns),
            (Some("json"), Some(2))
        );
        assert_eq!(status.observed_generation, Some(2));
    }

    #[test]
    fn a_broken_or_misnamed_table_is_not_ready_and_says_why() {
        let broken = table_status(
            &resource("app-clicks", &CLICKS.replace("'json'", "'xml'")),
            "t",
        );
        let ready = &broken.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidTable")
        );
        assert!(
            ready.message.contains("option 'format' is 'xml'"),
            "{}",
            ready.message
        );
        assert_eq!(broken.table, None);
        let misnamed = table_status(&resource("clicks", CLICKS), "t");
        assert!(misnamed.conditions[0]
            .message
            .contains("declares table `app_clicks`, but a StreamTable named clicks"));
    }

    #[test]
    fn the_transition_time_stays_while_readiness_does_not_change() {
        let mut table = resource("app-clicks", CLICKS);
        table.status = Some(table_status(&table, "2026-12-02T10:00:00Z"));
        let again = table_status(&table, "2026-12-02T11:00:00Z");
        assert_eq!(
            again.conditions[0].last_transition_time,
            "2026-12-02T10:00:00Z"
        );
        table.spec.sql = "CREATE TABLE".to_string();
        let broken = table_status(&table, "2026-12-02T12:00:00Z");
        assert_eq!(
            broken.conditions[0].last_transition_time,
            "2026-12-02T12:00:00Z"
        );
    }
}
