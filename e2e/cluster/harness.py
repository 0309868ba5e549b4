#!/usr/bin/env python3
"""The harness of the cluster suite: the cluster, storage and binaries the
scenarios use (Env), waiting on conditions, StreamJob manifests, and the
exactly-once oracles. Scenarios live in scenarios.py and restart_scenarios.py.
"""

import glob
import json
import os
import subprocess
import time
import urllib.request

NS = "e2e"
BUCKET = "weir"


class Env:
    """The cluster, storage and binaries the scenarios use."""

    def __init__(self, args):
        self.kubectl_bin = args.kubectl
        self.kubeconfig = args.kubeconfig
        self.weir = args.weir
        self.s3_dir = args.s3_dir
        self.s3_port = args.s3_port
        self.s3_server = args.s3_server
        self.s3_proc = None
        self.out_root = args.out
        self.chart = args.chart
        self.repo = args.repo
        self.image = args.image
        self.controller_image = args.controller_image
        self.s3_host = args.s3_host
        self.s3_endpoint = args.s3_endpoint or f"http://127.0.0.1:{args.s3_port}"
        self.proxy = args.proxy
        self.measured = []

    # ---- kubectl ----

    def kubectl(self, *args, input=None, check=True):
        cmd = [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get(self, kind, name, ns=NS):
        r = self.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def apply(self, manifest):
        return self.kubectl("apply", "-f", "-", input=manifest)

    def patch(self, name, patch):
        self.kubectl("patch", "streamjob", name, "-n", NS, "--type", "merge", "-p", json.dumps(patch))

    def job(self, name):
        return self.get("streamjob", name) or {}

    def status(self, name):
        return self.job(name).get("status") or {}

    def condition(self, name, kind):
        for c in self.status(name).get("conditions", []):
            if c.get("type") == kind:
                return c
        return {}

    # ---- storage ----

    def s3_start(self):
        os.makedirs(os.path.join(self.s3_dir, BUCKET), exist_ok=True)
        self.s3_proc = subprocess.Popen(
            [self.s3_server, "--host", self.s3_host, "--port", str(self.s3_port),
             "--access-key", "e2e-key", "--secret-key", "e2e-secret", self.s3_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.s3_port), 10, "the S3 server to listen")

    def s3_stop(self):
        if self.s3_proc:
            self.s3_proc.kill()
            self.s3_proc.wait()
            self.s3_proc = None

    def completed_checkpoints(self, name, prefix="e2e"):
        """The `_metadata` of the job's completed checkpoints under
        s3://weir/{prefix}/{namespace}/{name}/{pipeline}/{deployment}/."""
        job = os.path.join(self.s3_dir, BUCKET, prefix, NS, name)
        return glob.glob(os.path.join(job, "*", "*", "checkpoints", "chk-*", "_metadata"))

    def deployments(self, name, prefix="e2e"):
        """The deployment identities with storage under the job's directory."""
        job = os.path.join(self.s3_dir, BUCKET, prefix, NS, name)
        return sorted(os.path.basename(d) for d in glob.glob(os.path.join(job, "*", "*")))

    def s3_local(self, uri):
        """The directory on the S3 server's disk of an s3:// URI."""
        return os.path.join(self.s3_dir, uri.replace("s3://", ""))

    # ---- the coordinator ----

    def coordinator_pods(self, name):
        """The job's coordinator pods that run and are not being deleted."""
        pods = self.kubectl("get", "pods", "-n", NS, "-l", f"weir.dev/job={name},weir.dev/role=coordinator",
                            "-o", "json", check=False)
        if pods.returncode != 0:
            return []
        return [p for p in json.loads(pods.stdout).get("items", [])
                if (p.get("status") or {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]

    def pod_http(self, pod, path):
        """GET the coordinator's HTTP endpoint `path`: at the pod's IP, or through the
        API server's pod proxy (--proxy: pod IPs of a kind cluster are not routable
        from the host)."""
        if self.proxy:
            r = self.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}:6180/proxy{path}",
                             check=False)
            if r.returncode != 0:
                raise OSError(r.stderr.strip())
            return r.stdout
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:6180{path}", timeout=1) as r:
            return r.read().decode()

    def coordinator_status(self, name):
        for pod in self.coordinator_pods(name):
            try:
                return json.loads(self.pod_http(pod, "/v1/status"))
            except (OSError, ValueError):
                return None
        return None

    def out_dir(self, name):
        return os.path.join(self.out_root, name)


class FlowWatch:
    """Samples the records a job's coordinators report (their /metrics, fed by
    worker heartbeats every second) to time a gap in the flow: when the old
    coordinator last saw records move, when a new one first saw any."""

    def __init__(self, env, name):
        import threading
        self.env, self.name = env, name
        self.last_moved = {}   # coordinator pod ip -> (records, time they last changed)
        self.first_seen = {}   # coordinator pod ip -> time records were first above 0
        self.stopped = threading.Event()
        self.pods = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def records(self, pod):
        total = 0
        for line in self.env.pod_http(pod, "/metrics").splitlines():
            if line.startswith("weir_records_in_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def run(self):
        refreshed = 0
        while not self.stopped.is_set():
            if time.time() - refreshed > 0.5:
                self.pods = self.env.coordinator_pods(self.name)
                refreshed = time.time()
            for pod in self.pods:
                ip = pod["status"]["podIP"]
                try:
                    n = self.records(pod)
                except (OSError, ValueError):
                    continue
                now = time.time()
                if n > 0 and ip not in self.first_seen:
                    self.first_seen[ip] = now
                if self.last_moved.get(ip, (None,))[0] != n:
                    self.last_moved[ip] = (n, now)
            time.sleep(0.1)

    def gap(self, old_ip):
        """Seconds from the last records the old coordinator saw move to the first
        records a later coordinator saw."""
        self.stopped.set()
        self.thread.join()
        stopped = self.last_moved[old_ip][1]
        resumed = min(t for ip, t in self.first_seen.items() if ip != old_ip and t > stopped)
        return resumed - stopped


def port_open(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    last_error = None
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition is polled until it holds
            last_error = e
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def ts(text):
    import datetime
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---- manifests ----

def stream_job(name, pipeline, args, parallelism=2, mode="savepoint", extra=""):
    args_yaml = json.dumps(args)
    return f"""
apiVersion: weir.dev/v1alpha1
kind: StreamJob
metadata:
  name: {name}
  namespace: {NS}
spec:
  image: "{{image}}"
  job:
    pipeline: {pipeline}
    args: {args_yaml}
  parallelism: {parallelism}
  checkpoints:
    interval: 1s
    storage: s3://{BUCKET}/e2e
    s3:
      endpoint: "{{s3_endpoint}}"
      pathStyle: true
      credentialsSecret: s3-credentials
  upgradeMode: {mode}
  # The jobs write their output to a host directory the suite reads (on kind,
  # shared with the node by e2e/cluster/kind.yaml).
  podTemplate:
    spec:
      containers:
      - name: weir
        volumeMounts:
        - {{name: e2e-out, mountPath: "{{out}}"}}
      volumes:
      - {{name: e2e-out, hostPath: {{path: "{{out}}", type: Directory}}}}
{extra}
"""


def sql_job(name, script, args, parallelism=2, mode="savepoint"):
    """A StreamJob whose job is the SQL `script` (job.sql), with `weir sql`'s `args`."""
    indented = "\n".join("      " + line for line in script.splitlines())
    manifest = stream_job(name, "sql", [], parallelism, mode).replace(
        "    pipeline: sql\n    args: []", "    sql: |\n" + indented + "\n    args: " + json.dumps(args))
    assert "sql: |" in manifest, manifest
    return manifest


def stream_table(name, sql):
    """A StreamTable declaring `sql` (its table's name is `name` with `-` as `_`)."""
    indented = "\n".join("    " + line for line in sql.splitlines())
    return f"""
apiVersion: weir.dev/v1alpha1
kind: StreamTable
metadata:
  name: {name}
  namespace: {NS}
spec:
  sql: |
{indented}
"""


def render(env, manifest):
    return (manifest.replace("{s3_endpoint}", env.s3_endpoint).replace("{image}", env.image)
            .replace("{out}", env.out_root))


# ---- oracles ----

def mix(z):
    mask = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & mask
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & mask
    return z ^ (z >> 31)


def committed(dir):
    lines = []
    for path in glob.glob(os.path.join(dir, "part-*")):
        with open(path) as f:
            lines.extend(l.rstrip("\n") for l in f)
    return lines


def check_keyed_sum(lines, records, keys):
    """Every key's sorted sums step up by exactly its values, each once."""
    sums = {}
    for line in lines:
        k, s = line.split(",")
        sums.setdefault(int(k), []).append(int(s))
    values = {}
    for i in range(records):
        values.setdefault((mix(i) >> 1) % keys, []).append(i)
    for key, expected in values.items():
        got = sorted(sums.pop(key, []))
        steps = sorted(b - a for a, b in zip([0] + got, got))
        if steps != sorted(expected):
            raise AssertionError(f"key {key}: {len(got)} sums for {len(expected)} records (lost or repeated)")
    if sums:
        raise AssertionError(f"sums for keys without records: {sorted(sums)[:5]}")


def reference_alerts(env, records, error_rate, seed):
    out = os.path.join(env.out_root, f"reference-{records}-{error_rate}-{seed}")
    if not os.path.isdir(out):
        subprocess.run([env.weir, "run", "state-machine", "--checkpoint-interval", "off",
                        "--checkpoint-dir", out + "-chk", "--", "--records", str(records),
                        "--error-rate", str(error_rate), "--seed", str(seed), "--output", out],
                       check=True, stderr=subprocess.DEVNULL)
    return sorted(committed(out))


def wait_finished(env, name, timeout=240):
    """The bounded job read all its input; its StreamJob says Finished."""
    wait_for(lambda: (env.coordinator_status(name) or {}).get("state") == "finished", timeout,
             f"{name} to finish")
    wait_for(lambda: env.status(name).get("phase") == "Finished", 60, f"{name}'s phase Finished")


