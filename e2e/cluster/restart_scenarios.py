"""Cluster scenarios of the operator's restart paths: the controller killed while
a savepoint is in flight, two controller replicas handing over the Lease, a
stateless upgrade, restartNonce, periodic savepoints, deletion with a final
savepoint (with S3 up and down), initialSavepoint, and a StreamJob deleted and
created again under the same name. Each checks the output exactly once where the
job writes any, and waits on status, never on fixed sleeps.
"""

import glob
import json
import os
import time

from harness import NS, check_keyed_sum, committed, port_open, render, stream_job, wait_finished, wait_for

CONTROLLER_NS = "weir-system"
CONTROLLER_PODS = "app.kubernetes.io/name=weir,app.kubernetes.io/component=controller"
LEASE = "weir-controller"


def keyed_sum_args(records, keys, out, rate=20000):
    return ["--records", str(records), "--rate", str(rate), "--keys", str(keys), "--output", out]


def ready(env, name, timeout=120):
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", timeout, f"{name} Ready")


def delete_and_wait(env, name, timeout=120):
    env.kubectl("delete", "streamjob", name, "-n", NS, "--wait=false", check=False)
    wait_for(lambda: env.get("streamjob", name) is None, timeout, f"{name} deleted")


def coordinator_args(env, name):
    deployment = env.get("deployment", f"{name}-coordinator") or {}
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
    return containers[0].get("args", [])


def controller_pods(env):
    pods = json.loads(env.kubectl("get", "pods", "-n", CONTROLLER_NS, "-l", CONTROLLER_PODS, "-o", "json").stdout)
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def lease_holder(env):
    lease = env.get("lease", LEASE, ns=CONTROLLER_NS) or {}
    return (lease.get("spec") or {}).get("holderIdentity")


def controller_kubeconfig(env):
    """A kubeconfig with the chart's controller ServiceAccount (its RBAC, as a
    replica of the chart has), its token from the TokenRequest API."""
    import base64
    view = lambda path: env.kubectl("config", "view", "--raw", "-o", f"jsonpath={{{path}}}").stdout.strip()
    server = view(".clusters[0].cluster.server")
    token = env.kubectl("create", "token", "weir-controller", "-n", CONTROLLER_NS).stdout.strip()
    ca = view(".clusters[0].cluster.certificate-authority-data")
    if not ca:
        with open(view(".clusters[0].cluster.certificate-authority"), "rb") as f:
            ca = base64.b64encode(f.read()).decode()
    path = os.path.join(env.out_root, "standby.kubeconfig")
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "standby",
                   "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": ca}}],
                   "users": [{"name": "u", "user": {"token": token}}],
                   "contexts": [{"name": "standby", "context": {"cluster": "c", "user": "u"}}]}, f)
    return path


def savepoints_in_s3(env, name):
    job = os.path.join(env.s3_dir, "weir", "e2e", NS, name)
    return glob.glob(os.path.join(job, "*", "*", "savepoints", "sp-*", "_metadata"))


def controller_killed_while_savepointing(env):
    """The controller is killed (SIGKILL) while an upgrade savepoint is in flight:
    its successor follows that savepoint to its end, the upgrade completes, and the
    output is exactly once."""
    name, records, keys = "ctlkill", 1_000_000, 200
    out = env.out_dir(name)
    env.apply(render(env, stream_job(name, "keyed-sum", keyed_sum_args(records, keys, out))))
    ready(env, name)
    env.patch(name, {"spec": {"parallelism": 3}})
    wait_for(lambda: env.status(name).get("pendingSavepoint"), 60, "the upgrade savepoint in flight")
    killed = time.time()
    for pod in controller_pods(env):
        env.kubectl("delete", "pod", pod["metadata"]["name"], "-n", CONTROLLER_NS, "--grace-period=0", "--force")
    wait_for(lambda: (env.coordinator_status(name) or {}).get("parallelism") == 3 and
             (env.coordinator_status(name) or {}).get("state") in ("running", "finished"), 180,
             "the upgrade completed by the new controller")
    env.measured.append(f"controller killed while savepointing -> upgraded job running: {time.time() - killed:.1f} s")
    assert env.status(name)["lastSavepoint"]["reason"] == "upgrade", env.status(name).get("lastSavepoint")
    assert env.status(name)["lastSavepoint"]["path"] in coordinator_args(env, name), "restored from it"
    wait_finished(env, name)
    check_keyed_sum(committed(out), records, keys)
    delete_and_wait(env, name)


def lease_handover(env):
    """Two controller replicas: the chart's pod and a standby started here with
    the controller ServiceAccount's token (the node agent runs pods on one host
    network, where two pods of one Deployment would fight over the metrics port).
    The chart's Deployment scaled to 0, its pod releases the Lease on SIGTERM and
    the standby takes it and reconciles; scaled back, the new pod waits, and takes
    the Lease when the standby stops in turn."""
    import signal
    import socket
    import subprocess
    holder = wait_for(lambda: lease_holder(env), 30, "a Lease holder")
    assert holder in [p["metadata"]["name"] for p in controller_pods(env)], holder
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = os.path.join(os.path.dirname(env.weir), "weir-controller")
    log = open(os.path.join(env.out_root, "standby-controller.log"), "wb")
    standby = subprocess.Popen(
        [controller, "--metrics-addr", f"127.0.0.1:{port}", "--identity", "e2e-standby",
         "--lease-namespace", CONTROLLER_NS],
        env={**os.environ, "KUBECONFIG": controller_kubeconfig(env)}, stderr=log)
    deployment = controller_deployment(env)
    try:
        wait_for(lambda: port_open(port), 30, "the standby's /healthz")
        assert lease_holder(env) == holder, "the standby waits while the holder renews"
        stopped = time.time()
        env.kubectl("scale", "deployment", deployment, "-n", CONTROLLER_NS, "--replicas", "0")
        wait_for(lambda: lease_holder(env) == "e2e-standby", 60, "the standby to take the Lease")
        env.measured.append(f"controller leader handover (scale the leader's Deployment to 0 -> the standby "
                            f"holds the Lease): {time.time() - stopped:.1f} s")
        # The new leader reconciles: a new job gets its identity and its pods.
        name = "handover"
        env.apply(render(env, stream_job(name, "state-machine", ["--rate", "5000", "--error-rate", "0"])))
        wait_for(lambda: env.status(name).get("jobId") and env.get("deployment", f"{name}-coordinator"), 60,
                 f"{name} deployed by the standby")
        # The chart's pod back as the standby; the standby stopped hands it the Lease.
        env.kubectl("scale", "deployment", deployment, "-n", CONTROLLER_NS, "--replicas", "1")
        wait_for(lambda: controller_pods(env), 60, "the chart's pod back")
        standby.send_signal(signal.SIGTERM)
        standby.wait(timeout=30)
        wait_for(lambda: lease_holder(env) in [p["metadata"]["name"] for p in controller_pods(env)], 60,
                 "the chart's pod to take the Lease back")
        delete_and_wait(env, name)
    finally:
        env.kubectl("scale", "deployment", deployment, "-n", CONTROLLER_NS, "--replicas", "1", check=False)
        if standby.poll() is None:
            standby.kill()
        log.close()


def controller_deployment(env):
    deployments = json.loads(env.kubectl("get", "deployments", "-n", CONTROLLER_NS, "-l", CONTROLLER_PODS,
                                         "-o", "json").stdout)["items"]
    return deployments[0]["metadata"]["name"]


def stateless_upgrade(env):
    """upgradeMode stateless: a change replaces the pods and starts a new
    deployment identity without state (no savepoint, no restore)."""
    name = "stateless"
    args = ["--rate", "5000", "--keys", "50"]
    env.apply(render(env, stream_job(name, "keyed-sum", args, mode="stateless")))
    ready(env, name)
    uid = env.job(name)["metadata"]["uid"]
    assert env.status(name).get("jobId") == uid, env.status(name).get("jobId")
    env.patch(name, {"spec": {"job": {"pipeline": "keyed-sum", "args": ["--rate", "6000", "--keys", "50"]}}})
    wait_for(lambda: "6000" in coordinator_args(env, name), 120, "the upgraded deployment")
    ready(env, name)
    args_now = coordinator_args(env, name)
    assert "--restore" not in args_now, f"starts without state: {args_now}"
    assert f"{uid}-1" in args_now, f"a new identity: {args_now}"
    assert env.status(name).get("jobId") == f"{uid}-1"
    assert not env.status(name).get("savepoints"), "stateless takes no savepoint"
    assert {uid, f"{uid}-1"} <= set(env.deployments(name)), env.deployments(name)
    delete_and_wait(env, name)


def restart_nonce(env):
    """restartNonce restarts the job as an upgrade (savepoint mode: with a
    savepoint), and the output stays exactly once."""
    name, records, keys = "nonce", 800_000, 100
    out = env.out_dir(name)
    env.apply(render(env, stream_job(name, "keyed-sum", keyed_sum_args(records, keys, out))))
    ready(env, name)
    first = env.get("deployment", f"{name}-coordinator")["metadata"]["uid"]
    env.patch(name, {"spec": {"restartNonce": 1}})
    wait_for(lambda: (env.get("deployment", f"{name}-coordinator") or {}).get("metadata", {}).get("uid")
             not in (None, first), 120, "a new coordinator deployment")
    assert env.status(name)["lastSavepoint"]["reason"] == "upgrade", env.status(name).get("lastSavepoint")
    assert env.status(name).get("observedRestartNonce") == 1
    wait_finished(env, name)
    check_keyed_sum(committed(out), records, keys)
    delete_and_wait(env, name)


def periodic_savepoints(env):
    """periodicSavepointInterval takes savepoints on schedule without stopping the
    job; savepointHistory.maxCount keeps the newest two (the older deleted from S3)."""
    name = "periodic"
    extra = "  periodicSavepointInterval: 5s\n  savepointHistory: {maxCount: 2}"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "5000", "--error-rate", "0"], extra=extra)))
    ready(env, name)
    coordinator = env.get("deployment", f"{name}-coordinator")["metadata"]["uid"]
    seen = []

    def three_taken():
        last = env.status(name).get("lastSavepoint") or {}
        if last.get("reason") == "periodic" and last.get("path") not in seen:
            seen.append(last["path"])
        return len(seen) >= 3
    wait_for(three_taken, 90, "three periodic savepoints")
    wait_for(lambda: not os.path.exists(os.path.join(env.s3_local(seen[0]), "_metadata")), 60,
             "the oldest deleted from S3")
    # Deleted from storage first, then dropped from the status.
    wait_for(lambda: seen[0] not in [s["path"] for s in env.status(name)["savepoints"]], 30,
             "the oldest dropped from the status")
    assert len(env.status(name)["savepoints"]) <= 2, env.status(name)["savepoints"]
    assert env.get("deployment", f"{name}-coordinator")["metadata"]["uid"] == coordinator, "no redeploy"
    assert (env.coordinator_status(name) or {}).get("state") == "running", "the job kept running"
    delete_and_wait(env, name)


def deletion_with_final_savepoint(env):
    """deletion.savepoint: deleting the StreamJob takes a final savepoint first. With
    S3 down the deletion waits, Degraded says why and how to go on without it, and
    the skip annotation lets it go."""
    name = "finalsp"
    extra = "  deletion: {savepoint: true, savepointTimeout: 10m}"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "5000", "--error-rate", "0"], extra=extra)))
    ready(env, name)
    before = set(savepoints_in_s3(env, name))
    delete_and_wait(env, name)
    after = set(savepoints_in_s3(env, name)) - before
    assert after, "the final savepoint is in S3"

    name = "stuck"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "5000", "--error-rate", "0"], extra=extra)))
    ready(env, name)
    env.s3_stop()
    try:
        env.kubectl("delete", "streamjob", name, "-n", NS, "--wait=false")
        wait_for(lambda: "skip-final-savepoint" in env.condition(name, "Degraded").get("message", ""), 180,
                 "Degraded naming the way out")
        assert env.get("streamjob", name), "the deletion waits for the final savepoint"
        message = env.condition(name, "Degraded")["message"]
        assert "savepoint" in message and "goes on without it at" in message, message
        env.kubectl("annotate", "streamjob", name, "-n", NS, "weir.dev/skip-final-savepoint=true")
        wait_for(lambda: env.get("streamjob", name) is None, 60, "the deletion without the final savepoint")
    finally:
        env.s3_start()


def initial_savepoint(env):
    """A StreamJob suspended (stopped with a savepoint) and deleted; a new StreamJob
    with initialSavepoint set to that savepoint continues the job exactly once."""
    first, second, records, keys = "first", "second", 800_000, 100
    out = env.out_dir(first)
    args = keyed_sum_args(records, keys, out)
    env.apply(render(env, stream_job(first, "keyed-sum", args)))
    ready(env, first)
    env.patch(first, {"spec": {"state": "suspended"}})
    wait_for(lambda: env.status(first).get("phase") == "Suspended", 120, f"{first} Suspended")
    savepoint = env.status(first)["lastSavepoint"]["path"]
    delete_and_wait(env, first)
    extra = f"  initialSavepoint: \"{savepoint}\""
    env.apply(render(env, stream_job(second, "keyed-sum", args, extra=extra)))
    wait_for(lambda: savepoint in coordinator_args(env, second), 60, "the coordinator restoring the savepoint")
    wait_finished(env, second)
    check_keyed_sum(committed(out), records, keys)
    delete_and_wait(env, second)


def recreated_under_the_same_name(env):
    """A StreamJob deleted and created again under the same name is a new
    deployment (a new UID): it starts clean, and never resumes the old one's
    checkpoints."""
    name, records, keys = "again", 400_000, 100
    env.apply(render(env, stream_job(name, "keyed-sum", keyed_sum_args(records, keys, env.out_dir("again-old")))))
    ready(env, name)
    old_uid = env.job(name)["metadata"]["uid"]
    wait_for(lambda: len(env.completed_checkpoints(name)) >= 2, 60, "checkpoints of the first")
    delete_and_wait(env, name)
    out = env.out_dir("again-new")
    env.apply(render(env, stream_job(name, "keyed-sum", keyed_sum_args(records, keys, out))))
    wait_for(lambda: env.status(name).get("jobId"), 60, "the new deployment's identity")
    assert env.status(name)["jobId"] != old_uid, "a new identity"
    assert "--restore" not in coordinator_args(env, name), coordinator_args(env, name)
    wait_finished(env, name)
    # Every record from the first: nothing was taken from the old deployment.
    check_keyed_sum(committed(out), records, keys)
    assert len(env.deployments(name)) == 2, env.deployments(name)
    delete_and_wait(env, name)


SCENARIOS = [controller_killed_while_savepointing, lease_handover, stateless_upgrade, restart_nonce,
             periodic_savepoints, deletion_with_final_savepoint, initial_savepoint, recreated_under_the_same_name]
