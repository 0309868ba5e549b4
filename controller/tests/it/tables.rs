//! The StreamTable reconciler against a mocked API server: a table's status
//! is written once by server-side apply, Ready or not with the reason, and
//! not written again while nothing changed.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::Value;
use tower_test::mock;

use weir_controller::metrics::Metrics;
use weir_controller::reconcile::Context;
use weir_controller::table::{table_status, StreamTableSpec};
use weir_controller::table_reconcile::reconcile_table;
use weir_controller::StreamTable;

const ORDERS: &str = "CREATE TABLE orders (id BIGINT, total DOUBLE) WITH ('connector' = 'kafka', \
    'topic' = 'orders', 'properties.bootstrap.servers' = 'kafka:9092', 'format' = 'json')";

fn table(sql: &str) -> StreamTable {
    let mut table = StreamTable::new(
        "orders",
        StreamTableSpec {
            sql: sql.to_string(),
        },
    );
    table.metadata.namespace = Some("shop".into());
    table.metadata.generation = Some(1);
    table
}

/// Runs one reconcile of `table`; returns the status bodies the API server received.
async fn reconcile_once(table: StreamTable) -> Vec<Value> {
    use http_body_util::BodyExt;
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "weir-controller".into(),
                instance: None,
            },
        ),
        metrics: Arc::new(Metrics::default()),
        coordinator_override: None,
        protection: Default::default(),
    });
    let stored = serde_json::to_value(&table).unwrap();
    let server = tokio::spawn(async move {
        let mut bodies = Vec::new();
        while let Ok(Some((request, send))) =
            tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
        {
            assert_eq!(request.method(), "PATCH");
            assert_eq!(
                request.uri().path(),
                "/apis/weir.dev/v1alpha1/namespaces/shop/streamtables/orders/status"
            );
            let query = request.uri().query().unwrap_or_default().to_string();
            assert!(
                query.contains("fieldManager=weir-controller") && query.contains("force=true"),
                "{query}"
            );
            let bytes = request.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let mut reply = stored.clone();
            reply["status"] = body["status"].clone();
            bodies.push(body);
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
        bodies
    });
    reconcile_table(Arc::new(table), ctx)
        .await
        .expect("reconcile succeeds");
    server.await.unwrap()
}

#[tokio::test]
async fn a_valid_table_is_written_ready_with_its_topic_and_columns() {
    let bodies = reconcile_once(table(ORDERS)).await;
    assert_eq!(bodies.len(), 1);
    let status = &bodies[0]["status"];
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["topic"], "orders");
    assert_eq!(status["columns"], 2);
    assert_eq!(status["observedGeneration"], 1);
}

#[tokio::test]
async fn an_invalid_table_is_written_not_ready_with_the_reason() {
    let bodies = reconcile_once(table(&ORDERS.replace("DOUBLE", "DUBBLE"))).await;
    let ready = &bodies[0]["status"]["conditions"][0];
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InvalidTable"))
    );
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unsupported column type DUBBLE at Line: 1"),
        "{message}"
    );
}

#[tokio::test]
async fn a_table_whose_status_is_current_is_not_written_again() {
    let mut current = table(ORDERS);
    current.status = Some(table_status(&current, "2026-12-02T10:00:00Z"));
    assert!(reconcile_once(current).await.is_empty());
}
