//! The reconciler against a mocked API server that asserts every request (method,
//! path, field manager, body), and a mocked coordinator: an in-process tonic
//! server speaking the real `weir.v1.JobControl` API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};
use tonic::{Request as RpcRequest, Response as RpcResponse, Status};
use tower_test::mock;
use weir_proto::api_token::RequireToken;
use weir_proto::v1;

use weir_controller::crd::{
    AutoscalerSpec, AutoscalerStatus, CheckpointRef, Condition, DesiredState, PendingSavepoint,
    Phase, StreamJobSpec, StreamJobStatus,
};
use weir_controller::metrics::Metrics;
use weir_controller::reconcile::{reconcile, Context, FINALIZER};
use weir_controller::StreamJob;

use crate::fixtures::{job, spec};

// ---- the mocked coordinator ----

/// The job's API token, in its Secret.
const TOKEN: &str = "0123abcd";

/// What the mocked coordinator answers.
#[derive(Clone)]
struct Coordinator {
    state: v1::JobState,
    checkpoint_age_secs: u64,
    savepoint: v1::SavepointState,
    savepoint_path: String,
    /// What CheckUpgrade answers: the uids the changed job drops.
    dropped: Vec<String>,
    /// What GetLoad answers.
    load: v1::JobLoad,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Coordinator {
    fn running() -> Self {
        Coordinator {
            state: v1::JobState::Running,
            checkpoint_age_secs: 1,
            savepoint: v1::SavepointState::Pending,
            savepoint_path: String::new(),
            dropped: Vec::new(),
            load: v1::JobLoad::default(),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Serves on a free port of 127.0.0.1; returns `ip:port`.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        // It requires the job's token, which the controller reads from the
        // Secret the mocked API server holds (see `api_token_read`).
        let service = v1::job_control_server::JobControlServer::with_interceptor(
            self.clone(),
            RequireToken::new(Some(TOKEN.into())),
        );
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        address
    }
}

#[tonic::async_trait]
impl v1::job_control_server::JobControl for Coordinator {
    async fn get_status(
        &self,
        _: RpcRequest<v1::GetStatusRequest>,
    ) -> Result<RpcResponse<v1::JobStatus>, Status> {
        self.calls.lock().unwrap().push("GetStatus".into());
        let now = jiff::Timestamp::now().as_millisecond() as u64;
        Ok(RpcResponse::new(v1::JobStatus {
            job: "state-machine".into(),
            state: self.state as i32,
            parallelism: 2,
            latest_checkpoint: Some(v1::CheckpointInfo {
                id: 12,
                path: "s3://weir-checkpoints/prod/analytics/fraud/state-machine/checkpoints/chk-12"
                    .into(),
                time_unix_ms: now - self.checkpoint_age_secs * 1000,
                duration_ms: 40,
                size_bytes: 1000,
            }),
            restarts: 0,
            message: String::new(),
            slots_registered: 2,
            slots_needed: 2,
            attempt: 1,
            protocol_version: weir_proto::PROTOCOL_VERSION,
            stopped_with: String::new(),
            job_id: "5f3b1a2c-0000-4000-8000-000000000001".into(),
            damaged_checkpoints_skipped: 0,
        }))
    }

    async fn trigger_savepoint(
        &self,
        request: RpcRequest<v1::TriggerSavepointRequest>,
    ) -> Result<RpcResponse<v1::TriggerSavepointResponse>, Status> {
        let request = request.into_inner();
        let (stop, format) = (
            request.stop,
            if request.canonical {
                "canonical"
            } else {
                "native"
            },
        );
        self.calls
            .lock()
            .unwrap()
            .push(format!("TriggerSavepoint stop={stop} format={format}"));
        Ok(RpcResponse::new(v1::TriggerSavepointResponse {
            id: "sp-req-1".into(),
        }))
    }

    async fn get_savepoint(
        &self,
        request: RpcRequest<v1::GetSavepointRequest>,
    ) -> Result<RpcResponse<v1::SavepointStatus>, Status> {
        let id = request.into_inner().id;
        self.calls
            .lock()
            .unwrap()
            .push(format!("GetSavepoint {id}"));
        Ok(RpcResponse::new(v1::SavepointStatus {
            id,
            state: self.savepoint as i32,
            path: self.savepoint_path.clone(),
            message: if self.savepoint == v1::SavepointState::Failed {
                "checkpoint store: writing s3://weir/x: connection refused".into()
            } else {
                String::new()
            },
        }))
    }

    async fn cancel(
        &self,
        _: RpcRequest<v1::CancelRequest>,
    ) -> Result<RpcResponse<v1::CancelResponse>, Status> {
        Err(Status::unimplemented("not in these scenarios"))
    }

    async fn get_load(
        &self,
        request: RpcRequest<v1::GetLoadRequest>,
    ) -> Result<RpcResponse<v1::JobLoad>, Status> {
        let window = request.into_inner().window_ms;
        self.calls
            .lock()
            .unwrap()
            .push(format!("GetLoad {window}ms"));
        Ok(RpcResponse::new(self.load.clone()))
    }

    async fn check_upgrade(
        &self,
        request: RpcRequest<v1::CheckUpgradeRequest>,
    ) -> Result<RpcResponse<v1::CheckUpgradeResponse>, Status> {
        let request = request.into_inner();
        self.calls
            .lock()
            .unwrap()
            .push(format!("CheckUpgrade {}", request.pipeline));
        Ok(RpcResponse::new(v1::CheckUpgradeResponse {
            against: "s3://weir-checkpoints/prod/analytics/fraud/state-machine/checkpoints/chk-12"
                .into(),
            kept: Vec::new(),
            dropped: self.dropped.clone(),
        }))
    }

    async fn dispose_savepoint(
        &self,
        request: RpcRequest<v1::DisposeSavepointRequest>,
    ) -> Result<RpcResponse<v1::DisposeSavepointResponse>, Status> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("DisposeSavepoint {}", request.into_inner().path));
        Ok(RpcResponse::new(v1::DisposeSavepointResponse {}))
    }
}

// ---- the mocked API server ----

/// Checks a request body; `Err` explains the mismatch.
type BodyCheck = Box<dyn Fn(&Value) -> Result<(), String> + Send>;

/// One request the API server expects, in order.
struct Expect {
    method: &'static str,
    path: String,
    /// Query parameters that must be present.
    query: Vec<(&'static str, &'static str)>,
    /// Checks the body.
    check: BodyCheck,
    /// HTTP status and body of the answer (`None`: echo the request body).
    reply: (u16, Option<Value>),
}

fn expect(method: &'static str, path: impl Into<String>) -> Expect {
    Expect {
        method,
        path: path.into(),
        query: Vec::new(),
        check: Box::new(|_| Ok(())),
        reply: (200, None),
    }
}

impl Expect {
    fn applied(mut self) -> Self {
        self.query = vec![("fieldManager", "weir-controller"), ("force", "true")];
        self
    }
    fn query(mut self, query: &[(&'static str, &'static str)]) -> Self {
        self.query = query.to_vec();
        self
    }
    fn body(mut self, check: impl Fn(&Value) -> Result<(), String> + Send + 'static) -> Self {
        self.check = Box::new(check);
        self
    }
    fn reply(mut self, code: u16, body: Value) -> Self {
        self.reply = (code, Some(body));
        self
    }
    fn not_found(self) -> Self {
        self.reply(404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}))
    }
}

const NS: &str = "/namespaces/analytics";

fn deployment_path() -> String {
    format!("/apis/apps/v1{NS}/deployments/fraud-coordinator")
}
fn statefulset_path() -> String {
    format!("/apis/apps/v1{NS}/statefulsets/fraud-worker")
}
fn job_path() -> String {
    format!("/apis/weir.dev/v1alpha1{NS}/streamjobs/fraud")
}
fn events_path() -> String {
    format!("/apis/events.k8s.io/v1{NS}/events")
}

/// The five server-side applies of the children, in the reconciler's order.
fn apply_children(
    check_deployment: impl Fn(&Value) -> Result<(), String> + Send + 'static,
) -> Vec<Expect> {
    vec![
        // The API token's Secret, made once (its token kept thereafter).
        expect("POST", format!("/api/v1{NS}/secrets")).body(|b| {
            let token = b["data"]["token"].as_str().unwrap_or_default();
            (b["metadata"]["name"] == "fraud-api-token" && token.len() > 40)
                .then_some(())
                .ok_or(format!("not a token Secret: {b}"))
        }),
        expect("PATCH", format!("/api/v1{NS}/configmaps/fraud-config")).applied(),
        expect("PATCH", format!("/api/v1{NS}/services/fraud-coordinator")).applied(),
        expect("PATCH", format!("/api/v1{NS}/services/fraud-workers")).applied(),
        expect("PATCH", deployment_path())
            .applied()
            .body(check_deployment),
        expect("PATCH", statefulset_path()).applied(),
    ]
}

fn existing(kind: &str, name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {
        "name": name, "namespace": "analytics",
        "ownerReferences": [{"apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob", "name": "fraud",
                             "uid": "5f3b1a2c-0000-4000-8000-000000000001", "controller": true}],
    }})
}

fn workloads_exist() -> Vec<Expect> {
    vec![
        expect("GET", deployment_path()).reply(200, existing("Deployment", "fraud-coordinator")),
        expect("GET", statefulset_path()).reply(200, existing("StatefulSet", "fraud-worker")),
        pods_of_the_job(),
        api_token_read(),
    ]
}

/// The job's API token, read to call its coordinator.
fn api_token_read() -> Expect {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(TOKEN);
    expect("GET", format!("/api/v1{NS}/secrets/fraud-api-token")).reply(
        200,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fraud-api-token"},
               "data": {"token": token}}),
    )
}

/// The job's pods, listed for what keeps them from running: none here.
fn pods_of_the_job() -> Expect {
    expect("GET", format!("/api/v1{NS}/pods"))
        .query(&[("labelSelector", "weir.dev%2Fjob%3Dfraud")]) // weir.dev/job=fraud, as sent
        .reply(
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
        )
}

fn no_workloads() -> Vec<Expect> {
    vec![
        expect("GET", deployment_path()).not_found(),
        expect("GET", statefulset_path()).not_found(),
    ]
}

fn event(reason: &'static str) -> Expect {
    expect("POST", events_path()).body(move |b| {
        (b["reason"] == reason)
            .then_some(())
            .ok_or(format!("event reason {} is not {reason}", b["reason"]))
    })
}

fn status_patch(check: impl Fn(&StreamJobStatus) -> Result<(), String> + Send + 'static) -> Expect {
    expect("PATCH", format!("{}/status", job_path()))
        .applied()
        .body(move |b| {
            // Written only over the version the pass read.
            if b["metadata"]["resourceVersion"] != "100" {
                return Err(format!(
                    "no resourceVersion precondition: {}",
                    b["metadata"]
                ));
            }
            let status: StreamJobStatus = serde_json::from_value(b["status"].clone())
                .map_err(|e| format!("status body: {e}"))?;
            check(&status)
        })
}

/// Answers the expected requests in order, failing the test on any difference;
/// returns when all were seen.
async fn serve(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    expected: Vec<Expect>,
    job: Value,
) {
    use http_body_util::BodyExt;
    for (i, e) in expected.into_iter().enumerate() {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("request {i} ({} {}) never came", e.method, e.path))
            .expect("the client is alive");
        let uri = request.uri().clone();
        assert_eq!(
            (request.method().as_str(), uri.path()),
            (e.method, e.path.as_str()),
            "request {i}"
        );
        let query: BTreeMap<String, String> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in &e.query {
            assert_eq!(
                query.get(*k).map(String::as_str),
                Some(*v),
                "request {i} {uri}: query {k}"
            );
        }
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        if let Err(why) = (e.check)(&body) {
            panic!("request {i} {} {uri}: {why}\nbody: {body:#}", e.method);
        }
        let (code, reply) = e.reply;
        let reply = match reply {
            Some(v) => v,
            // A status patch answers with the StreamJob; other writes echo what they wrote.
            None if uri.path().ends_with("/status") => {
                let mut j = job.clone();
                j["status"] = body["status"].clone();
                j
            }
            None if uri.path() == job_path() => {
                let mut j = job.clone();
                j["metadata"]["finalizers"] = body["metadata"]["finalizers"].clone();
                j
            }
            None if e.method == "DELETE" => {
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})
            }
            None => body,
        };
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }
    // Nothing more may come.
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

/// Runs one reconcile of `job` against the expectations and the coordinator.
async fn scenario(job: StreamJob, coordinator: &Coordinator, expected: Vec<Expect>) -> Duration {
    scenario_cached(job.clone(), job, coordinator, expected).await
}

/// Runs one reconcile handed `cached` (what the watch cache had) while the API
/// server stores `job`.
async fn scenario_cached(
    cached: StreamJob,
    job: StreamJob,
    coordinator: &Coordinator,
    expected: Vec<Expect>,
) -> Duration {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let address = coordinator.serve().await;
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
        coordinator_override: Some(address),
        protection: Default::default(),
    });
    // Every pass starts by reading the StreamJob afresh.
    let as_stored = serde_json::to_value(&job).unwrap();
    let mut expected = expected;
    expected.insert(0, expect("GET", job_path()).reply(200, as_stored.clone()));
    let server = tokio::spawn(serve(handle, expected, as_stored));
    let requeue = reconcile(Arc::new(cached), ctx)
        .await
        .expect("reconcile succeeds");
    server.await.expect("every request as expected");
    let debug = format!("{requeue:?}");
    let secs: f64 = debug
        .split("requeue_after: Some(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    Duration::from_secs_f64(secs)
}

fn finalized(mut j: StreamJob) -> StreamJob {
    j.metadata.finalizers = Some(vec![FINALIZER.into()]);
    j
}

fn with_status(mut j: StreamJob, status: StreamJobStatus) -> StreamJob {
    j.status = Some(status);
    j
}

/// The status of a job deployed from `spec` a minute ago and running.
fn deployed(spec: &StreamJobSpec) -> StreamJobStatus {
    let minute_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    let mut status = StreamJobStatus {
        phase: Some(Phase::Running),
        observed_generation: Some(3),
        parallelism: Some(2),
        deployed_spec_hash: Some(spec.deployment_hash()),
        deployed_at: Some(minute_ago.to_string()),
        ..Default::default()
    };
    status.conditions = ["Ready", "Reconciling", "Stalled", "Degraded"]
        .iter()
        .map(|t| Condition {
            type_: t.to_string(),
            status: if *t == "Ready" { "True" } else { "False" }.into(),
            reason: String::new(),
            message: String::new(),
            last_transition_time: minute_ago.to_string(),
        })
        .collect();
    status
}

fn condition<'s>(status: &'s StreamJobStatus, kind: &str) -> Option<&'s Condition> {
    status.conditions.iter().find(|c| c.type_ == kind)
}

fn args_contain(body: &Value, wanted: &[&str]) -> Result<(), String> {
    let args: Vec<String> = body["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .ok_or("no container args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    args.windows(wanted.len())
        .any(|w| w == wanted)
        .then_some(())
        .ok_or(format!("args {args:?} lack {wanted:?}"))
}

#[tokio::test]
async fn create_adds_the_finalizer_applies_every_child_and_reports_deploying() {
    let coordinator = Coordinator::running();
    let mut expected = vec![expect("PATCH", job_path()).body(|b| {
        let finalizers = &b["metadata"]["finalizers"];
        (finalizers == &json!([FINALIZER]) && b["metadata"]["resourceVersion"] == "100")
            .then_some(())
            .ok_or(format!("finalizer patch {b}"))
    })];
    expected.extend(no_workloads());
    expected.push(status_patch(|s| {
        (s.phase == Some(Phase::Deploying)
            && s.deployed_spec_hash == Some(spec().deployment_hash())
            && s.observed_generation.is_none()
            && condition(s, "Reconciling").is_some_and(|c| c.status == "True")
            && condition(s, "Ready").is_some_and(|c| c.status == "False"))
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    expected.extend(apply_children(|d| {
        args_contain(d, &["coordinator", "state-machine", "--parallelism", "2"])?;
        (d["metadata"]["ownerReferences"][0]["kind"] == "StreamJob")
            .then_some(())
            .ok_or("no owner reference".into())
    }));
    expected.push(event("Deploying"));
    scenario(job(spec()), &coordinator, expected).await;
    assert!(
        coordinator.calls().is_empty(),
        "nothing deployed yet to ask"
    );
}

#[tokio::test]
async fn a_running_job_is_re_applied_and_its_unchanged_status_not_written() {
    let s = spec();
    // The status a previous pass wrote for this coordinator's checkpoint 12.
    let observed = weir_controller::planner::Observed {
        uid: "5f3b1a2c-0000-4000-8000-000000000001".into(),
        deployed: true,
        terminating: false,
        deleting_since: None,
        skip_final_savepoint: false,
        keep_state: false,
        unresolved: None,
        upgrade_check: None,
        pod_trouble: None,
        load: None,
        coordinator: Some(weir_controller::planner::CoordinatorView {
            state: weir_controller::planner::JobState::Running,
            parallelism: 2,
            latest_checkpoint: Some(CheckpointRef {
                id: 12,
                path: "s3://weir-checkpoints/prod/analytics/fraud/state-machine/checkpoints/chk-12"
                    .into(),
                time: (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2)).to_string(),
            }),
            restarts: 0,
            message: String::new(),
            stopped_with: None,
            instance: "override".into(),
        }),
        savepoint: None,
        deleting: false,
        generation: 3,
        now: jiff::Timestamp::now(),
    };
    let settled = weir_controller::planner::plan(&s, &deployed(&s), &observed).status;
    assert_eq!(settled.phase, Some(Phase::Running));
    let coordinator = Coordinator::running();
    let mut expected = workloads_exist();
    expected.extend(apply_children(|_| Ok(())));
    let requeue = scenario(
        with_status(finalized(job(s)), settled),
        &coordinator,
        expected,
    )
    .await;
    assert_eq!(coordinator.calls(), ["GetStatus"]);
    assert!(requeue >= Duration::from_secs(5), "{requeue:?}");
}

#[tokio::test]
async fn savepoints_are_taken_in_the_format_the_spec_asks_for() {
    let old = spec();
    let mut rescaled = spec();
    rescaled.parallelism = 3;
    rescaled.savepoint_format = weir_controller::crd::SavepointFormat::Canonical;
    let coordinator = Coordinator::running();
    let mut expected = workloads_exist();
    expected.push(event("Upgrading"));
    expected.push(status_patch(|s| {
        s.pending_savepoint
            .as_ref()
            .map(|_| ())
            .ok_or(format!("{s:?}"))
    }));
    scenario(
        with_status(finalized(job(rescaled)), deployed(&old)),
        &coordinator,
        expected,
    )
    .await;
    assert_eq!(
        coordinator.calls(),
        ["GetStatus", "TriggerSavepoint stop=true format=canonical"]
    );
}

#[tokio::test]
async fn a_rescale_takes_a_savepoint_then_replaces_the_workloads_and_restores() {
    let old = spec();
    let mut rescaled = spec();
    rescaled.parallelism = 3;
    let coordinator = Coordinator::running();
    let mut expected = workloads_exist();
    expected.push(event("Upgrading"));
    expected.push(status_patch(|s| {
        let p = s.pending_savepoint.as_ref().ok_or("no pending savepoint")?;
        (p.id == "sp-req-1" && p.stop && p.reason == "upgrade" && s.phase == Some(Phase::Upgrading))
            .then_some(())
            .ok_or(format!("{s:?}"))
    }));
    let j = finalized(job(rescaled.clone()));
    scenario(
        with_status(j.clone(), deployed(&old)),
        &coordinator,
        expected,
    )
    .await;
    assert_eq!(
        coordinator.calls(),
        ["GetStatus", "TriggerSavepoint stop=true format=native"]
    );

    // The savepoint completes: the old workloads go (foreground), restoreFrom is set.
    let path =
        "s3://weir-checkpoints/prod/analytics/fraud/state-machine/savepoints/sp-13-abc".to_string();
    let done = Coordinator {
        state: v1::JobState::Stopped,
        savepoint: v1::SavepointState::Completed,
        savepoint_path: path.clone(),
        ..Coordinator::running()
    };
    let mut status = deployed(&old);
    status.pending_savepoint = Some(PendingSavepoint {
        id: "sp-req-1".into(),
        stop: true,
        reason: "upgrade".into(),
        started: jiff::Timestamp::now().to_string(),
    });
    status.phase = Some(Phase::Upgrading);
    let mut expected = workloads_exist();
    let expected_path = path.clone();
    expected.push(status_patch(move |s| {
        (s.restore_from.as_deref() == Some(expected_path.as_str())
            && s.pending_savepoint.is_none()
            && s.last_savepoint
                .as_ref()
                .is_some_and(|l| l.path == expected_path && l.reason == "upgrade"))
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    expected.push(expect("DELETE", deployment_path()).body(|b| {
        (b["propagationPolicy"] == "Foreground")
            .then_some(())
            .ok_or(format!("{b}"))
    }));
    expected.push(expect("DELETE", statefulset_path()));
    expected.push(event("SavepointCompleted"));
    scenario(with_status(j.clone(), status.clone()), &done, expected).await;

    // Next pass: nothing deployed; the new spec starts from the savepoint.
    let mut gone = status;
    gone.pending_savepoint = None;
    gone.restore_from = Some(path.clone());
    let mut expected = no_workloads();
    let restore = path.clone();
    expected.push(status_patch(move |s| {
        (s.deployed_spec_hash == Some(rescaled.deployment_hash())
            && s.phase == Some(Phase::Deploying))
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    expected.extend(apply_children(move |d| {
        args_contain(d, &["--parallelism", "3"])?;
        args_contain(d, &["--restore", restore.as_str()])
    }));
    expected.push(event("Deploying"));
    scenario(with_status(j, gone), &Coordinator::running(), expected).await;
}

#[tokio::test]
async fn an_autoscaled_job_that_cannot_keep_up_is_rescaled_through_an_upgrade_savepoint() {
    let mut s = spec();
    s.autoscaler = Some(AutoscalerSpec {
        enabled: true,
        max_parallelism: Some(4),
        metrics_window: Some("30s".into()),
        cooldown: Some("10s".into()),
        ..Default::default()
    });
    let mut status = deployed(&s);
    status.autoscaler = Some(AutoscalerStatus {
        parallelism: 2,
        spec_parallelism: 2,
        ..Default::default()
    });
    // The sum is 95% busy at parallelism 2: 2 × 0.95 ÷ 0.7 = 2.7, three.
    let coordinator = Coordinator {
        load: v1::JobLoad {
            covered_ms: 30_000,
            chains: vec![v1::ChainLoad {
                name: "sum -> sink".into(),
                parallelism: 2,
                busy: 0.95,
                records_per_second: 1000.0,
                ..Default::default()
            }],
        },
        ..Coordinator::running()
    };
    let mut expected = workloads_exist();
    expected.push(event("ScaledUp"));
    expected.push(event("Upgrading"));
    expected.push(status_patch(|s| {
        let a = s.autoscaler.as_ref().ok_or("no autoscaler status")?;
        let p = s.pending_savepoint.as_ref().ok_or("no pending savepoint")?;
        (a.parallelism == 3
            && a.decisions.len() == 1
            && a.decisions[0]
                .reason
                .contains("busiest sum -> sink: 95% busy")
            && p.reason == "upgrade"
            && p.stop)
            .then_some(())
            .ok_or(format!("{s:?}"))
    }));
    let j = finalized(job(s));
    scenario(with_status(j, status), &coordinator, expected).await;
    assert_eq!(
        coordinator.calls(),
        [
            "GetStatus",
            "GetLoad 30000ms",
            "TriggerSavepoint stop=true format=native"
        ]
    );
}

#[tokio::test]
async fn a_failed_savepoint_keeps_the_job_running_and_degraded() {
    let old = spec();
    let mut rescaled = spec();
    rescaled.parallelism = 3;
    let failing = Coordinator {
        savepoint: v1::SavepointState::Failed,
        ..Coordinator::running()
    };
    let mut status = deployed(&old);
    status.pending_savepoint = Some(PendingSavepoint {
        id: "sp-req-1".into(),
        stop: true,
        reason: "upgrade".into(),
        started: jiff::Timestamp::now().to_string(),
    });
    // The old workloads stay as they are: nothing is applied.
    let mut expected = workloads_exist();
    expected.push(expect("POST", events_path()).body(|b| {
        (b["reason"] == "SavepointFailed" && b["type"] == "Warning")
            .then_some(())
            .ok_or(format!("{b}"))
    }));
    expected.push(status_patch(|s| {
        let degraded = condition(s, "Degraded").ok_or("no Degraded")?;
        (degraded.status == "True"
            && degraded.reason == "SavepointFailed"
            && degraded.message.contains("connection refused")
            && s.savepoint_failures == 1
            && s.savepoint_retry_at.is_some()
            && s.pending_savepoint.is_none())
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    let requeue = scenario(
        with_status(finalized(job(rescaled)), status),
        &failing,
        expected,
    )
    .await;
    assert!(requeue >= Duration::from_secs(10), "backs off: {requeue:?}");
}

#[tokio::test]
async fn suspend_stops_with_a_savepoint_and_resume_restores_from_it() {
    let s = spec();
    let suspended = StreamJobSpec {
        state: DesiredState::Suspended,
        ..spec()
    };
    let coordinator = Coordinator::running();
    let mut expected = workloads_exist();
    expected.push(event("Savepointing"));
    expected.push(status_patch(|s| {
        let p = s.pending_savepoint.as_ref().ok_or("no pending savepoint")?;
        (p.stop && p.reason == "suspend")
            .then_some(())
            .ok_or(format!("{s:?}"))
    }));
    scenario(
        with_status(finalized(job(suspended)), deployed(&s)),
        &coordinator,
        expected,
    )
    .await;
    assert_eq!(
        coordinator.calls(),
        ["GetStatus", "TriggerSavepoint stop=true format=native"]
    );

    // Resumed later: no pods, restore from the suspend savepoint.
    let mut status = deployed(&s);
    status.phase = Some(Phase::Suspended);
    status.restore_from = Some("s3://weir-checkpoints/sp-5-def".into());
    let mut expected = no_workloads();
    expected.push(status_patch(|s| {
        (s.phase == Some(Phase::Deploying))
            .then_some(())
            .ok_or(format!("{s:?}"))
    }));
    expected.extend(apply_children(|d| {
        args_contain(d, &["--restore", "s3://weir-checkpoints/sp-5-def"])
    }));
    expected.push(event("Deploying"));
    scenario(
        with_status(finalized(job(s)), status),
        &Coordinator::running(),
        expected,
    )
    .await;
}

#[tokio::test]
async fn delete_removes_only_the_finalizer_and_leaves_the_rest_to_owner_references() {
    let s = spec();
    let mut j = finalized(job(s.clone()));
    j.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    let mut expected = workloads_exist();
    expected.push(expect("PATCH", job_path()).body(|b| {
        (b["metadata"]["finalizers"] == json!([]))
            .then_some(())
            .ok_or(format!("{b}"))
    }));
    scenario(
        with_status(j, deployed(&s)),
        &Coordinator::running(),
        expected,
    )
    .await;
}

#[tokio::test]
async fn a_pass_plans_from_the_stored_status_not_from_a_stale_cache() {
    let mut rescaled = spec();
    rescaled.parallelism = 3;
    let j = finalized(job(rescaled));
    // The controller's own last write: the old workloads are gone and the next
    // deployment restores from the upgrade savepoint. The watch cache lags it.
    let path = "s3://weir-checkpoints/prod/analytics/fraud/state-machine/savepoints/sp-13-abc";
    let stored = StreamJobStatus {
        restore_from: Some(path.into()),
        phase: Some(Phase::Upgrading),
        ..deployed(&spec())
    };
    let stale = deployed(&spec());
    let mut expected = no_workloads();
    expected.push(status_patch(move |s| {
        (s.restore_from.as_deref() == Some(path))
            .then_some(())
            .ok_or(format!("the restore point was lost: {s:?}"))
    }));
    expected.extend(apply_children(move |b| {
        args_contain(b, &["--restore", path])
    }));
    expected.push(event("Deploying"));
    scenario_cached(
        with_status(j.clone(), stale),
        with_status(j, stored),
        &Coordinator::running(),
        expected,
    )
    .await;
}

#[tokio::test]
async fn workloads_of_an_earlier_streamjob_of_the_same_name_are_never_adopted() {
    // The StreamJob was deleted and created again; the garbage collector has not
    // removed the old one's coordinator yet (it is owned by the old UID).
    let stale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "fraud-coordinator", "namespace": "analytics",
        "ownerReferences": [{"apiVersion": "weir.dev/v1alpha1", "kind": "StreamJob", "name": "fraud",
                             "uid": "the-old-uid", "controller": true}],
    }});
    let expected = vec![
        expect("GET", deployment_path()).reply(200, stale),
        expect("GET", statefulset_path()).not_found(),
        // Nothing is applied, deleted or triggered: it waits for the collector.
        status_patch(|s| {
            (s.deployed_spec_hash.is_none() && s.pending_savepoint.is_none())
                .then_some(())
                .ok_or(format!("{s:?}"))
        }),
    ];
    let coordinator = Coordinator::running();
    let requeue = scenario(finalized(job(spec())), &coordinator, expected).await;
    assert!(coordinator.calls().is_empty(), "{:?}", coordinator.calls());
    assert!(requeue <= Duration::from_secs(2), "{requeue:?}");
}

fn tables_path() -> String {
    format!("/apis/weir.dev/v1alpha1{NS}/streamtables")
}

/// The namespace's StreamTables, as a list reply.
fn table_list(tables: &[(&str, &str)]) -> Value {
    let items: Vec<Value> = tables
        .iter()
        .map(|(name, sql)| {
            json!({"apiVersion": "weir.dev/v1alpha1", "kind": "StreamTable",
                   "metadata": {"name": name, "namespace": "analytics"}, "spec": {"sql": sql}})
        })
        .collect();
    json!({"apiVersion": "weir.dev/v1alpha1", "kind": "StreamTableList",
           "metadata": {"resourceVersion": "7"}, "items": items})
}

const CLICKS_TABLE: &str = "CREATE TABLE app_clicks (user_id BIGINT, at TIMESTAMP(3), WATERMARK FOR at AS at) \
    WITH ('connector' = 'kafka', 'topic' = 'clicks', 'properties.bootstrap.servers' = 'kafka:9092', 'format' = 'json')";

fn sql_spec() -> StreamJobSpec {
    let mut s = spec();
    s.job.pipeline = String::new();
    s.job.sql = Some(
        "CREATE TABLE out (user_id BIGINT, n BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO out SELECT user_id, COUNT(*) FROM app_clicks GROUP BY user_id"
            .into(),
    );
    s
}

#[tokio::test]
async fn a_sql_job_deploys_with_the_stream_tables_it_names_in_front_of_its_script() {
    let coordinator = Coordinator::running();
    let mut resolved = sql_spec();
    let script = resolved.job.sql.clone().unwrap_or_default();
    resolved.job.sql = Some(format!("{CLICKS_TABLE};\n{script}"));
    let hash = resolved.deployment_hash();
    let mut expected = vec![expect("GET", tables_path()).reply(
        200,
        table_list(&[
            ("app-clicks", CLICKS_TABLE),
            ("other", "CREATE TABLE other"),
        ]),
    )];
    expected.extend(no_workloads());
    expected.push(status_patch(move |s| {
        (s.deployed_spec_hash.as_deref() == Some(hash.as_str())
            && s.tables == ["app-clicks"]
            && s.phase == Some(Phase::Deploying))
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    let wanted = format!("{CLICKS_TABLE};\n{script}");
    expected.extend(apply_children(move |d| {
        args_contain(d, &["coordinator", "sql", "--parallelism", "2"])?;
        args_contain(d, &["--sql", wanted.as_str()])
    }));
    expected.push(event("Deploying"));
    scenario(finalized(job(sql_spec())), &coordinator, expected).await;
}

#[tokio::test]
async fn a_sql_job_naming_a_missing_stream_table_waits_and_says_which() {
    let coordinator = Coordinator::running();
    let mut expected = vec![expect("GET", tables_path()).reply(200, table_list(&[]))];
    expected.extend(no_workloads());
    expected.push(event("TableNotFound"));
    expected.push(status_patch(|s| {
        let stalled = condition(s, "Stalled").ok_or("no Stalled condition")?;
        (stalled.status == "True"
            && stalled.reason == "TableNotFound"
            && stalled.message.contains("`app_clicks`")
            && s.observed_generation == Some(3)
            && s.deployed_spec_hash.is_none())
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    scenario(finalized(job(sql_spec())), &coordinator, expected).await;
}

/// The coordinator Deployment as the API server has it, running `image`.
fn coordinator_running(image: &str) -> Value {
    let mut deployment = existing("Deployment", "fraud-coordinator");
    deployment["spec"] = json!({"selector": {}, "template": {"spec": {"containers": [{"name": "weir", "image": image}]}}});
    deployment
}

#[tokio::test]
async fn a_change_that_would_drop_state_is_refused_before_anything_is_torn_down() {
    let old = spec();
    let mut changed = spec();
    changed.job.args.push("--another-operator".into());
    let coordinator = Coordinator {
        dropped: vec!["alerts-by-user".into()],
        ..Coordinator::running()
    };
    let mut expected = vec![
        expect("GET", deployment_path()).reply(200, coordinator_running(&old.image)),
        expect("GET", statefulset_path()).reply(200, existing("StatefulSet", "fraud-worker")),
        pods_of_the_job(),
        api_token_read(),
    ];
    expected.push(event("UpgradeRefused"));
    expected.push(status_patch(|s| {
        let stalled = condition(s, "Stalled").ok_or("no Stalled condition")?;
        (stalled.reason == "UpgradeRefused"
            && stalled
                .message
                .contains("no operator for the state of alerts-by-user")
            && stalled.message.contains("allowNonRestoredState")
            && s.pending_savepoint.is_none()
            && s.phase == Some(Phase::Running))
        .then_some(())
        .ok_or(format!("{s:?}"))
    }));
    let j = finalized(job(changed.clone()));
    scenario(
        with_status(j.clone(), deployed(&old)),
        &coordinator,
        expected,
    )
    .await;
    assert_eq!(
        coordinator.calls(),
        ["GetStatus", "CheckUpgrade state-machine"]
    );

    // Allowed to drop it, the upgrade goes on with its savepoint.
    changed.allow_non_restored_state = true;
    let coordinator = Coordinator {
        dropped: vec!["alerts-by-user".into()],
        ..Coordinator::running()
    };
    let mut expected = vec![
        expect("GET", deployment_path()).reply(200, coordinator_running(&old.image)),
        expect("GET", statefulset_path()).reply(200, existing("StatefulSet", "fraud-worker")),
        pods_of_the_job(),
        api_token_read(),
    ];
    expected.push(event("UpgradeDropsState"));
    expected.push(event("Upgrading"));
    expected.push(status_patch(|s| {
        s.pending_savepoint
            .as_ref()
            .filter(|p| p.reason == "upgrade")
            .map(|_| ())
            .ok_or(format!("{s:?}"))
    }));
    let j = finalized(job(changed));
    scenario(with_status(j, deployed(&old)), &coordinator, expected).await;
    assert_eq!(
        coordinator.calls(),
        [
            "GetStatus",
            "CheckUpgrade state-machine",
            "TriggerSavepoint stop=true format=native"
        ]
    );
}
