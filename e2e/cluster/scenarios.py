#!/usr/bin/env python3
"""End-to-end scenarios of the weir operator on a real Kubernetes control plane.

Each scenario applies StreamJobs with kubectl, waits on their status (never on
fixed sleeps), and checks the outcome: checkpoints in S3, kubectl columns,
exactly-once output through rescales, upgrades and pod deletions, a savepoint
failure that leaves the job running, suspend and resume, garbage collection,
and invalid manifests refused naming their field. It ends with "N passed, N
failed" and prints the measured times.

Run by e2e/run-cluster.sh, which brings up the control plane, the node agent
and the S3 server; see e2e/README.md.
"""

import argparse
import asyncio
import glob
import json
import os
import sys
import time
import traceback

from harness import (BUCKET, NS, Env, FlowWatch, check_keyed_sum, committed, reference_alerts, render,
                     stream_job, ts, wait_finished, wait_for)
import autoscaler_scenarios
import kafka_scenarios
import lifecycle_scenarios
import restart_scenarios
import sql_scenarios

# ---- scenarios ----

def install(env):
    """The chart's CRD and RBAC installed with Helm; the controller runs as a pod with
    its own ServiceAccount's permissions (a missing RBAC rule fails later scenarios)."""
    from helm_sdkpy import Configuration, Install
    # Pod Security Admission enforces `restricted` on the controller's namespace.
    env.kubectl("create", "namespace", "weir-system", check=False)
    env.kubectl("label", "--overwrite", "namespace", "weir-system",
                "pod-security.kubernetes.io/enforce=restricted")
    config = Configuration(namespace="weir-system", kubeconfig=env.kubeconfig)
    repository, tag = env.controller_image.rsplit(":", 1)
    # values.schema.json: a misspelled value is refused before anything is installed.
    try:
        asyncio.run(Install(config).run("weir-typo", env.chart, values={"replicaCount": 2}, wait=False))
        refused = None
    except Exception as e:  # helm_sdkpy raises its own error types
        refused = str(e)
    assert refused and "replicaCount" in refused, f"a misspelled value: {refused}"
    asyncio.run(Install(config).run(
        "weir", env.chart, values={"image": {"repository": repository, "tag": tag},
                                   "jobs": {"workerDisruptionBudget": {"enabled": True},
                                            "coordinatorNetworkPolicy": {"enabled": True}}},
        create_namespace=True, wait=False))
    wait_for(lambda: env.get("crd", "streamjobs.weir.dev", ns="default"), 30, "the CRD")
    wait_for(lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for p in json.loads(env.kubectl("get", "pods", "-n", "weir-system", "-o", "json").stdout)["items"]
        for c in (p.get("status") or {}).get("conditions", [])), 60, "the controller pod to be Ready")
    sa = env.get("serviceaccount", "weir-controller", ns="weir-system")
    assert sa, "the chart's ServiceAccount exists"
    can = env.kubectl("auth", "can-i", "delete", "secrets", "--as",
                      "system:serviceaccount:weir-system:weir-controller", "-n", NS, check=False)
    assert can.stdout.strip() == "no", f"least privilege: the controller cannot delete secrets ({can.stdout})"
    env.kubectl("create", "namespace", NS, check=False)
    env.kubectl("create", "secret", "generic", "s3-credentials", "-n", NS,
                "--from-literal=AWS_ACCESS_KEY_ID=e2e-key", "--from-literal=AWS_SECRET_ACCESS_KEY=e2e-secret",
                check=False)


def apply_and_run(env):
    """examples/state-machine.yaml as a user applies it (only the S3 endpoint,
    credentials and image are this cluster's) becomes Ready, checkpoints land in S3,
    the columns are filled."""
    name = "state-machine"
    example = open(os.path.join(env.repo, "examples", "state-machine.yaml")).read()
    for old, new in (("http://minio.minio.svc:9000", env.s3_endpoint),
                     ("AWS_ACCESS_KEY_ID: minioadmin", "AWS_ACCESS_KEY_ID: e2e-key"),
                     ("AWS_SECRET_ACCESS_KEY: minioadmin", "AWS_SECRET_ACCESS_KEY: e2e-secret"),
                     ("image: weir:dev", f"image: {env.image}")):
        assert old in example, f"examples/state-machine.yaml no longer has {old!r}"
        example = example.replace(old, new)
    started = time.time()
    env.kubectl("apply", "-n", NS, "-f", "-", input=example)
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    created = ts(env.job(name)["metadata"]["creationTimestamp"])
    first = ts(env.status(name)["lastCheckpoint"]["time"])
    env.measured.append(f"kubectl apply -> first completed checkpoint: {first - created:.1f} s "
                        f"(Ready observed after {time.time() - started:.1f} s)")
    assert env.completed_checkpoints(name, prefix="checkpoints"), "checkpoints in S3"
    columns = env.kubectl("get", "streamjobs", "-n", NS, name).stdout
    header, row = columns.strip().splitlines()[:2]
    for col in ("PHASE", "PARALLELISM", "READY", "LAST CHECKPOINT", "LAST SAVEPOINT", "RESTARTS"):
        assert col in header, f"column {col}: {header}"
    assert "Running" in row and "True" in row, f"columns filled: {row}"
    # The guards the chart's values switch on, applied by the controller with its RBAC.
    budget = wait_for(lambda: env.get("poddisruptionbudget", f"{name}-worker"), 30, "the workers' budget")
    assert budget["spec"]["maxUnavailable"] == 1, budget["spec"]
    wait_for(lambda: (env.get("poddisruptionbudget", f"{name}-worker").get("status") or {})
             .get("expectedPods") == env.status(name).get("parallelism"), 30, "the budget counting the workers")
    policy = env.get("networkpolicy", f"{name}-coordinator")
    assert policy and policy["spec"]["ingress"][0]["ports"][0]["port"] == 6123, policy
    env.kubectl("delete", "streamjob", name, "-n", NS)


def examples_under_pod_security(env):
    """Every StreamJob of examples/, applied to a namespace where Pod Security
    Admission enforces `restricted`: each gets all its pods (a pod the profile
    refuses is never created; its ReplicaSet says FailedCreate)."""
    ns = "e2e-restricted"
    env.kubectl("create", "namespace", ns, check=False)
    env.kubectl("label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    jobs = []
    docs = [(path, doc) for path in sorted(glob.glob(os.path.join(env.repo, "examples", "*.yaml")))
            for doc in open(path).read().split("\n---\n")]
    for path, doc in docs:
        if "kind: StreamTable" in doc or "kind: Secret" in doc:
            env.kubectl("apply", "-n", ns, "-f", "-", input=doc)
    def pods_of(name):
        items = json.loads(env.kubectl("get", "pods", "-n", ns, "-l", f"weir.dev/job={name}",
                                       "-o", "json").stdout)["items"]
        return {p["metadata"]["labels"]["weir.dev/role"] for p in items}

    # One at a time: each job's pods run on this machine.
    for path, doc in docs:
        if "kind: StreamJob" not in doc:
            continue
        name = next(l.split("name:", 1)[1].strip() for l in doc.splitlines() if l.startswith("  name:"))
        doc = (doc.replace("http://minio.minio.svc:9000", env.s3_endpoint)
               .replace("image: weir:dev", f"image: {env.image}"))
        env.kubectl("apply", "-n", ns, "-f", "-", input=doc)
        wait_for(lambda: pods_of(name) == {"coordinator", "worker"}, 60,
                 f"{os.path.basename(path)}: {name}'s pods admitted under `restricted`")
        # Without the final savepoint some examples ask for (deletion.savepoint).
        env.kubectl("annotate", "streamjob", name, "-n", ns, "weir.dev/skip-final-savepoint=true")
        env.kubectl("delete", "streamjob", name, "-n", ns)
        jobs.append(name)
    assert len(jobs) >= 5, f"examples of StreamJobs: {len(jobs)}"


def rescale_with_savepoint(env):
    """2 -> 3 with upgradeMode savepoint: a savepoint before the old pods go, the new
    pods restore from it, alerts identical to a failure-free run (exactly once)."""
    name, records, seed = "rescale", 1_200_000, 11
    out = env.out_dir(name)
    args = ["--records", str(records), "--rate", "20000", "--error-rate", "0.01", "--seed", str(seed),
            "--output", out]
    env.apply(render(env, stream_job(name, "state-machine", args)))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    old = json.loads(env.kubectl("get", "pods", "-n", NS, "-l", f"weir.dev/job={name}", "-o", "json").stdout)["items"]
    old_pods = set(p["metadata"]["uid"] for p in old)
    old_ip = next(p["status"]["podIP"] for p in old if p["metadata"]["labels"]["weir.dev/role"] == "coordinator")
    flow = FlowWatch(env, name)
    wait_for(lambda: old_ip in flow.first_seen, 30, "records flowing before the rescale")
    triggered = time.time()
    env.patch(name, {"spec": {"parallelism": 3}})
    generation = env.job(name)["metadata"]["generation"]
    wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("reason") == "upgrade", 120,
             "the upgrade savepoint")
    # kstatus: the change is in progress until rolled out.
    assert env.status(name).get("observedGeneration", 0) < generation, env.status(name)
    assert env.condition(name, "Reconciling").get("status") == "True", env.status(name)["conditions"]
    savepoint = env.status(name)["lastSavepoint"]["path"]
    local = os.path.join(env.s3_dir, savepoint.replace(f"s3://", ""))
    assert os.path.exists(os.path.join(local, "_metadata")), f"savepoint in S3: {local}"
    wait_for(lambda: (env.coordinator_status(name) or {}).get("parallelism") == 3 and
             (env.coordinator_status(name) or {}).get("state") == "running", 120, "the rescaled job running")
    running_again = time.time()
    deployment = env.get("deployment", f"{name}-coordinator")
    args_now = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--restore" in args_now and savepoint in args_now, f"restores from the savepoint: {args_now}"
    pods = json.loads(env.kubectl("get", "pods", "-n", NS, "-l", f"weir.dev/job={name}", "-o", "json").stdout)["items"]
    assert not (old_pods & set(p["metadata"]["uid"] for p in pods)), "the old pods are gone"
    wait_for(lambda: any(ip != old_ip for ip in flow.first_seen), 60, "records flowing after the rescale")
    gap = flow.gap(old_ip)
    env.measured.append(f"rescale 2->3: records stopped -> records flowing again: {gap:.1f} s "
                        f"(+-1 s, worker heartbeats); patch -> rescaled job running: {running_again - triggered:.1f} s")
    wait_for(lambda: env.status(name).get("observedGeneration") == generation, 60,
             "observedGeneration at the rolled-out generation")
    env.kubectl("wait", "--for=condition=Ready", f"streamjob/{name}", "-n", NS, "--timeout=60s")
    wait_finished(env, name)
    alerts = sorted(committed(out))
    reference = reference_alerts(env, records, 0.01, seed)
    assert alerts == reference, f"{len(alerts)} alerts, a failure-free run has {len(reference)}"
    env.kubectl("delete", "streamjob", name, "-n", NS)


def pods_that_cannot_start(env):
    """An image the node does not have: the job is Stalled (ErrImagePull or
    ImagePullBackOff, naming the pod) with a Warning event, not Deploying forever;
    fixing the image replaces the pods (nothing ran, so no savepoint) and it runs."""
    name = "bad-image"
    env.apply(render(env, stream_job(name, "keyed-sum", ["--rate", "1000", "--keys", "10", "--discard"]))
              .replace(f'image: "{env.image}"', 'image: "weir:no-such-tag"'))
    pulls = ("ErrImagePull", "ImagePullBackOff")
    wait_for(lambda: env.condition(name, "Stalled").get("reason") in pulls, 90, f"{name} Stalled on its image")
    stalled = env.condition(name, "Stalled")
    assert "weir:no-such-tag" in stalled["message"] and f"{name}-" in stalled["message"], stalled
    assert env.status(name).get("observedGeneration") == env.job(name)["metadata"]["generation"]
    events = json.loads(env.kubectl("get", "events", "-n", NS, "--field-selector",
                                    f"involvedObject.name={name},type=Warning", "-o", "json").stdout)["items"]
    assert any(e["reason"] in pulls for e in events), [e["reason"] for e in events]
    env.patch(name, {"spec": {"image": env.image}})
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready with the image fixed")
    assert env.condition(name, "Stalled").get("status") == "False"
    env.kubectl("delete", "streamjob", name, "-n", NS)


def upgrade_last_state(env):
    """Changing the job's arguments with upgradeMode last-state: the new job resumes from
    the latest checkpoint; the output stays exactly once."""
    name, records, keys = "upgrade", 1_000_000, 200
    out = env.out_dir(name)
    args = ["--records", str(records), "--rate", "20000", "--keys", str(keys), "--output", out]
    env.apply(render(env, stream_job(name, "keyed-sum", args, mode="last-state")))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    env.patch(name, {"spec": {"job": {"pipeline": "keyed-sum", "args": args[:3] + ["25000"] + args[4:]}}})
    wait_for(lambda: "25000" in " ".join(
        (env.get("deployment", f"{name}-coordinator") or {}).get("spec", {}).get("template", {})
        .get("spec", {}).get("containers", [{}])[0].get("args", [])), 120, "the upgraded deployment")
    wait_finished(env, name)
    assert not env.status(name).get("savepoints"), "last-state takes no savepoint"
    check_keyed_sum(committed(out), records, keys)
    env.kubectl("delete", "streamjob", name, "-n", NS)


def pod_deletions(env):
    """A worker pod and then the coordinator pod deleted: recovery from S3, restarts
    counted, the output exactly once."""
    name, records, keys = "recover", 1_400_000, 300
    out = env.out_dir(name)
    args = ["--records", str(records), "--rate", "20000", "--keys", str(keys), "--output", out]
    env.apply(render(env, stream_job(name, "keyed-sum", args)))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    for pod in (f"{name}-worker-0", None):
        if pod is None:
            pods = json.loads(env.kubectl("get", "pods", "-n", NS, "-l",
                                          f"weir.dev/job={name},weir.dev/role=coordinator", "-o", "json").stdout)
            pod = pods["items"][0]["metadata"]["name"]
        deleted = time.time()
        env.kubectl("delete", "pod", pod, "-n", NS, "--wait=false")
        def checkpoint_after():
            c = (env.coordinator_status(name) or {}).get("latest_checkpoint") or {}
            return c.get("time_unix_ms", 0) / 1000 > deleted
        wait_for(checkpoint_after, 120, f"a checkpoint after deleting {pod}")
        env.measured.append(f"recovery after deleting pod {pod} (delete -> next completed checkpoint): "
                            f"{time.time() - deleted:.1f} s")
    wait_finished(env, name)
    wait_for(lambda: env.status(name).get("restarts", 0) >= 1, 30, "restarts counted in status")
    check_keyed_sum(committed(out), records, keys)
    env.kubectl("delete", "streamjob", name, "-n", NS)


def savepoint_failure(env):
    """S3 unreachable during a savepoint upgrade: the old job keeps running, Degraded
    says why; once S3 is back the upgrade goes through."""
    name = "spfail"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "10000", "--error-rate", "0"])))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    coordinator = env.get("deployment", f"{name}-coordinator")["metadata"]["uid"]
    env.s3_stop()
    try:
        env.patch(name, {"spec": {"parallelism": 3}})
        wait_for(lambda: env.condition(name, "Degraded").get("reason") == "SavepointFailed", 180,
                 "Degraded: SavepointFailed")
        message = env.condition(name, "Degraded")["message"]
        assert "savepoint failed" in message and "keeps running" in message, message
        assert env.get("deployment", f"{name}-coordinator")["metadata"]["uid"] == coordinator, \
            "the old coordinator is untouched"
        assert (env.coordinator_status(name) or {}).get("state") in ("running", "restarting", "savepointing")
    finally:
        env.s3_start()
    wait_for(lambda: (env.coordinator_status(name) or {}).get("parallelism") == 3, 240,
             "the upgrade after S3 came back")
    env.kubectl("delete", "streamjob", name, "-n", NS)


def savepoint_nonce_and_history(env):
    """savepointTriggerNonce takes a savepoint without stopping the job; with
    savepointHistory.maxCount 1 the older one is deleted from S3."""
    name = "history"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "10000", "--error-rate", "0"],
                                     extra="  savepointHistory: {maxCount: 1}")))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    coordinator = env.get("deployment", f"{name}-coordinator")["metadata"]["uid"]
    paths = []
    for nonce in (1, 2):
        env.patch(name, {"spec": {"savepointTriggerNonce": nonce}})
        wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("path") not in (None, *paths),
                 60, f"the savepoint of nonce {nonce}")
        saved = env.status(name)["lastSavepoint"]
        assert saved["reason"] == "manual", saved
        paths.append(saved["path"])
        local = os.path.join(env.s3_dir, saved["path"].replace("s3://", ""))
        assert os.path.exists(os.path.join(local, "_metadata")), f"savepoint in S3: {local}"
    first = os.path.join(env.s3_dir, paths[0].replace("s3://", ""), "_metadata")
    wait_for(lambda: not os.path.exists(first), 60, "the older savepoint deleted from S3")
    # Deleted from storage first, then dropped from the status.
    wait_for(lambda: [s["path"] for s in env.status(name)["savepoints"]] == paths[1:], 30,
             f"the status to list only {paths[1:]}")
    assert env.get("deployment", f"{name}-coordinator")["metadata"]["uid"] == coordinator, "no redeploy"
    assert (env.coordinator_status(name) or {}).get("state") == "running", "the job kept running"
    env.kubectl("delete", "streamjob", name, "-n", NS)


def suspend_resume_delete(env):
    """Suspend stops with a savepoint and removes the pods; running restores; deleting
    the StreamJob collects its children and keeps its savepoints."""
    name = "pause"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "10000", "--error-rate", "0"])))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    env.patch(name, {"spec": {"state": "suspended"}})
    wait_for(lambda: env.status(name).get("phase") == "Suspended", 120, "Suspended")
    wait_for(lambda: env.get("deployment", f"{name}-coordinator") is None, 60, "the pods gone")
    savepoint = env.status(name)["lastSavepoint"]
    assert savepoint["reason"] == "suspend", savepoint
    env.patch(name, {"spec": {"state": "running"}})
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready again")
    args = env.get("deployment", f"{name}-coordinator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert savepoint["path"] in args, f"resumed from the savepoint: {args}"
    env.kubectl("delete", "streamjob", name, "-n", NS)
    for kind, child in (("configmap", f"{name}-config"), ("service", f"{name}-coordinator"),
                        ("service", f"{name}-workers"), ("deployment", f"{name}-coordinator"),
                        ("statefulset", f"{name}-worker")):
        wait_for(lambda: env.get(kind, child) is None, 60, f"{kind}/{child} collected")
    local = os.path.join(env.s3_dir, savepoint["path"].replace("s3://", ""))
    assert os.path.exists(os.path.join(local, "_metadata")), "savepoints are kept"


def stream_tables(env):
    """examples/streamtable.yaml as a user applies it: the controller checks the
    table and fills the columns of kubectl get streamtables; a table whose SQL is
    wrong turns Ready False with the reason, line and column."""
    example = open(os.path.join(env.repo, "examples", "streamtable.yaml")).read()
    env.kubectl("apply", "-n", NS, "-f", "-", input=example)

    def ready(name):
        table = env.get("streamtable", name, ns=NS) or {}
        return next((c for c in (table.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {})

    wait_for(lambda: ready("clicks").get("status") == "True", 60, "StreamTable clicks Ready")
    header, row = env.kubectl("get", "streamtables", "-n", NS, "clicks").stdout.strip().splitlines()[:2]
    for col in ("TABLE", "CONNECTOR", "TOPIC", "FORMAT", "COLUMNS", "READY"):
        assert col in header, f"column {col}: {header}"
    assert "kafka" in row and "clicks" in row and "True" in row, f"columns filled: {row}"
    broken = example.replace("BIGINT NOT NULL", "BIGNUM NOT NULL").replace("name: clicks", "name: broken-clicks")
    env.kubectl("apply", "-n", NS, "-f", "-", input=broken)
    wait_for(lambda: ready("broken-clicks").get("status") == "False", 60, "StreamTable broken-clicks refused")
    message = ready("broken-clicks").get("message", "")
    assert "unsupported column type BIGNUM at Line: 2" in message, message
    env.kubectl("delete", "streamtable", "-n", NS, "clicks", "broken-clicks")


def invalid_manifests(env):
    """examples/invalid/: `kubectl apply` fails at admission, the API server naming the
    field (its schema and CEL rules); nothing is created."""
    for path in sorted(glob.glob(os.path.join(env.repo, "examples", "invalid", "*.yaml"))):
        text = open(path).read()
        field = next(l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("# field:"))
        manifest = text.replace("metadata: {name: ", f"metadata: {{namespace: {NS}, name: ")
        result = env.kubectl("apply", "-f", "-", input=manifest, check=False)
        assert result.returncode != 0, f"{path} was admitted"
        assert field in result.stderr, f"{path}: {result.stderr.strip()} does not name {field}"


def admission_rules(env):
    """What the schema's types cannot say, refused at admission: a misspelled field
    (strict field validation, kubectl's default), and a change of maxParallelism
    (a CEL transition rule) while other changes go through."""
    manifest = render(env, stream_job("typo", "keyed-sum", ["--rate", "10"], parallelism=1))
    result = env.kubectl("apply", "-f", "-", input=manifest.replace("parallelism: 1", "paralelism: 1"),
                         check=False)
    assert result.returncode != 0 and 'unknown field "spec.paralelism"' in result.stderr, result.stderr
    env.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    changed = manifest.replace("parallelism: 1", "parallelism: 1\n  maxParallelism: 64")
    env.kubectl("apply", "-f", "-", input=manifest)
    result = env.kubectl("apply", "-f", "-", input=changed, check=False)
    assert result.returncode != 0 and "spec.maxParallelism" in result.stderr \
        and "fixed for the life of the job" in result.stderr, result.stderr
    env.kubectl("delete", "streamjob", "typo", "-n", NS)


SCENARIOS = [install, apply_and_run, examples_under_pod_security, stream_tables, rescale_with_savepoint, *sql_scenarios.SCENARIOS,
             upgrade_last_state, pods_that_cannot_start,
             pod_deletions,
             savepoint_failure, savepoint_nonce_and_history, suspend_resume_delete,
             *lifecycle_scenarios.SCENARIOS, invalid_manifests,
             admission_rules,
             *restart_scenarios.SCENARIOS, *kafka_scenarios.SCENARIOS,
             *autoscaler_scenarios.SCENARIOS]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--weir", required=True)
    parser.add_argument("--s3-server", required=True)
    parser.add_argument("--s3-dir", required=True)
    parser.add_argument("--s3-port", type=int, default=9001)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chart", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--only", default="")
    parser.add_argument("--image", default="weir:dev", help="the weir image the StreamJobs run")
    parser.add_argument("--controller-image", default="weir-controller:0.1.0")
    parser.add_argument("--s3-host", default="127.0.0.1", help="where the S3 server listens")
    parser.add_argument("--s3-endpoint", default="", help="how pods reach the S3 server")
    parser.add_argument("--proxy", action="store_true", help="reach coordinators through the API server")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.chmod(args.out, 0o777)  # the job's pods run as a non-root user
    env = Env(args)
    env.s3_start()
    passed = failed = 0
    try:
        for scenario in SCENARIOS:
            if args.only and scenario.__name__ not in args.only.split(",") and scenario is not install:
                continue
            started = time.time()
            try:
                scenario(env)
                passed += 1
                print(f"PASS {scenario.__name__} ({time.time() - started:.0f} s)", flush=True)
            except Exception as e:
                failed += 1
                print(f"FAIL {scenario.__name__} ({time.time() - started:.0f} s): {e}", flush=True)
                traceback.print_exc()
                if scenario is install:
                    break
    finally:
        env.s3_stop()
    for line in env.measured:
        print(f"MEASURED {line}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
