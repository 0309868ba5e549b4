//! Reconciles StreamTables: check the statement with weir's catalog code and
//! write what was found to the status (server-side apply, one field manager).
//! A table owns nothing, so there is nothing else to do; a change of its
//! spec is the next pass.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::ResourceExt;
use serde_json::json;

use crate::error::{Error, Result};
use crate::reconcile::Context;
use crate::resources::MANAGER;
use crate::table::{table_status, StreamTable};

/// Checks one StreamTable and writes its status if it changed.
pub async fn reconcile_table(table: Arc<StreamTable>, ctx: Arc<Context>) -> Result<Requeue> {
    let ns = table
        .namespace()
        .ok_or_else(|| Error::Invalid("a StreamTable must be namespaced".into()))?;
    let now = jiff::Timestamp::now().to_string();
    let status = table_status(&table, &now);
    if table.status.as_ref() != Some(&status) {
        let ready = status.conditions.first().map_or("", |c| c.status.as_str());
        tracing::info!(table = %table.name_any(), namespace = %ns, ready, "checked StreamTable");
        let tables: Api<StreamTable> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "StreamTable",
            "status": status,
        });
        tables
            .patch_status(
                &table.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }
    Ok(Requeue::await_change())
}

/// After a failed pass (the API server refused the status): look again soon.
pub fn table_error_policy(table: Arc<StreamTable>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(table = %table.name_any(), %error, "StreamTable status not written");
    Requeue::requeue(Duration::from_secs(5))
}
