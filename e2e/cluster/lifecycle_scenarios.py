"""Scenarios of what the controller does with storage and the coordinator's
API on its own: the per-job API token, expired savepoints deleted while no
coordinator runs, and a StreamJob's state deleted with it when its spec says
so, retried while S3 is down."""

import base64
import os
import subprocess

from harness import BUCKET, NS, render, stream_job, wait_for


def api_token(env):
    """The coordinator's job control API answers only calls with the job's
    token, which the controller keeps in the Secret NAME-api-token."""
    name = "guarded"
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "10000", "--error-rate", "0"])))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    secret = env.get("secret", f"{name}-api-token")
    assert secret and secret["metadata"]["ownerReferences"][0]["kind"] == "StreamJob", secret
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 64, "a 256-bit token"
    if env.proxy:
        # Pod IPs of a kind cluster are not routable from the host: the
        # controller's own calls (Ready above) are what shows the token works.
        env.kubectl("delete", "streamjob", name, "-n", NS)
        return
    pod = env.coordinator_pods(name)[0]
    address = f"{pod['status']['podIP']}:6123"

    def status(token):
        environ = {k: v for k, v in os.environ.items() if k != "WEIR_API_TOKEN"}
        if token is not None:
            environ["WEIR_API_TOKEN"] = token
        return subprocess.run([env.weir, "status", "--coordinator", address], env=environ,
                              capture_output=True, text=True, timeout=30)

    refused = status(None)
    assert refused.returncode != 0 and "needs an API token" in refused.stderr, refused.stderr
    assert "wrong API token" in status("0" * 64).stderr
    answered = status(token)
    assert answered.returncode == 0 and "job state-machine: running" in answered.stdout, answered
    env.kubectl("delete", "streamjob", name, "-n", NS)
    wait_for(lambda: env.get("secret", f"{name}-api-token") is None, 60, "the token's Secret collected")


def state_deletion(env):
    """deletion.state delete: savepoints the history no longer keeps are deleted
    by the controller while the job is suspended (no coordinator runs); deleting
    the StreamJob removes the pods, then everything its deployments wrote, and
    while S3 is down it waits, Degraded saying why, and finishes once S3 is back;
    an earlier StreamJob's savepoint under the same name is left alone."""
    name = "ephemeral"
    earlier = os.path.join(env.s3_dir, BUCKET, "e2e", NS, name, "state-machine", "earlier-uid",
                           "savepoints", "sp-1-e2e")
    os.makedirs(earlier, exist_ok=True)
    with open(os.path.join(earlier, "_metadata"), "w") as f:
        f.write("{}")
    env.apply(render(env, stream_job(name, "state-machine", ["--rate", "10000", "--error-rate", "0"],
                                     extra="  deletion: {state: delete}\n  savepointHistory: {maxCount: 1}")))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    env.patch(name, {"spec": {"savepointTriggerNonce": 1}})
    manual = wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("path"), 60, "a savepoint")
    assert os.path.exists(os.path.join(env.s3_local(manual), "_metadata")), manual

    # Suspended, the job's last savepoint pushes the manual one out of the history.
    env.patch(name, {"spec": {"state": "suspended"}})
    wait_for(lambda: env.status(name).get("phase") == "Suspended", 120, "Suspended")
    wait_for(lambda: env.get("deployment", f"{name}-coordinator") is None, 60, "the pods gone")
    # (The S3 server leaves a deleted object's directories behind, empty.)
    wait_for(lambda: not os.path.exists(os.path.join(env.s3_local(manual), "_metadata")), 60,
             "the expired savepoint deleted with no coordinator running")
    kept = [s["reason"] for s in env.status(name)["savepoints"]]
    assert kept == ["suspend"], kept

    uid = env.job(name)["metadata"]["uid"]
    assert uid in env.deployments(name), env.deployments(name)
    env.s3_stop()
    try:
        env.kubectl("delete", "streamjob", name, "-n", NS, "--wait=false")
        degraded = wait_for(lambda: (lambda c: c if c.get("reason") == "StateDeletionFailed" else None)(
            env.condition(name, "Degraded")), 90, "Degraded while S3 is down")
        assert "weir.dev/keep-state" in degraded["message"], degraded
        assert env.get("streamjob", name), "the StreamJob waits for its state to go"
    finally:
        env.s3_start()
    wait_for(lambda: env.get("streamjob", name) is None, 90, "the deletion to finish once S3 is back")
    job_dir = os.path.join(env.s3_dir, BUCKET, "e2e", NS, name, "state-machine")
    left = [os.path.relpath(os.path.join(d, f), job_dir)
            for d, _, files in os.walk(job_dir) for f in files]
    assert left == [os.path.join("earlier-uid", "savepoints", "sp-1-e2e", "_metadata")], left


SCENARIOS = [api_token, state_deletion]
