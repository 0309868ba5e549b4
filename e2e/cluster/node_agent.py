#!/usr/bin/env python3
"""A node agent test fixture (in the spirit of kwok, but running real processes).

This is a TEST TOOL for weir's end-to-end suite, not part of the product. There
is no container runtime on the machines this suite runs on, so this agent
stands in for a kubelet:

- registers a Node and keeps it Ready;
- for every pod scheduled to it, runs each container's command as a local
  process: the image is mapped to a binary built from the workspace
  (--image weir:dev=/path/to/weir), the environment is the pod's (values,
  downward-API fields such as POD_IP, ConfigMap and Secret references), and
  $(VAR) references in command and args are expanded as Kubernetes does;
- gives each pod its own address on the loopback interface (127.0.1.N, or
  --pod-network) and reports it as its pod
  IP; ConfigMap, Secret, emptyDir and hostPath volumes are materialised at their mount
  paths on the host filesystem (pods share it: there are no mount namespaces);
- makes Service names resolve to the addresses of their ready pods (or all of
  them, with publishNotReadyAddresses) through a managed block of /etc/hosts,
  and headless-Service pod names too (Endpoints cannot carry loopback addresses,
  so the agent matches selectors itself);
- runs readiness probes (httpGet, tcpSocket) and reports pod phase, readiness,
  restart counts and exit codes; restarts containers as the pod's restartPolicy
  says, with backoff;
- stops a pod's processes (SIGTERM, then SIGKILL) when the pod is deleted, and
  then removes the pod object, as a kubelet does.

Not emulated: resource limits, security contexts (processes run as this user),
liveness probes, image pulls, network isolation, and per-pod filesystems (two
pods mounting different volumes at one path overwrite each other's files).

Usage: node_agent.py --kubeconfig FILE --work DIR --image NAME=BINARY [...]
"""

import argparse
import base64
import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

NODE = "weir-e2e-node"
HOSTS = "/etc/hosts"
BEGIN, END = "# weir-e2e begin", "# weir-e2e end"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(*parts):
    print(f"{now()} node-agent:", *parts, file=sys.stderr, flush=True)


class Api:
    """A minimal Kubernetes API client with a client certificate."""

    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()
        field = lambda name: re.search(rf"{name}: (\S+)", text).group(1)
        self.server = field("server")
        self.ctx = ssl.create_default_context(cafile=field("certificate-authority"))
        self.ctx.load_cert_chain(field("client-certificate"), field("client-key"))

    def call(self, method, path, body=None, content_type="application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}

    def get(self, path):
        code, body = self.call("GET", path)
        return body if code == 200 else None

    def merge_status(self, path, status):
        return self.call("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")


class Container:
    """One container of a pod, as a process."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.proc = None
        self.restarts = 0
        self.started_at = None
        self.last_exit = None
        self.next_start = 0.0
        self.ready = False
        self.next_probe = 0.0


class Pod:
    def __init__(self, obj, ip):
        self.uid = obj["metadata"]["uid"]
        self.ns = obj["metadata"]["namespace"]
        self.name = obj["metadata"]["name"]
        self.obj = obj
        self.ip = ip
        self.containers = [Container(c) for c in obj["spec"].get("containers", [])]
        self.start_time = now()
        self.reported = None
        self.terminating = False


class Agent:
    def __init__(self, api, work, images, api_port, pod_ips):
        self.api, self.work, self.images, self.api_port = api, work, images, api_port
        self.pods = {}
        self.free_ips = list(pod_ips)
        self.hosts_block = None

    # ---- the node ----

    def register(self):
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
        }
        code, body = self.api.call("POST", "/api/v1/nodes", node)
        if code not in (201, 409):
            raise SystemExit(f"registering the node failed: {code} {body}")
        self.heartbeat()

    def heartbeat(self):
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "500Gi"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "weir e2e node agent is running", "lastHeartbeatTime": now(),
                "lastTransitionTime": now(),
            }],
            "nodeInfo": {
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
                "architecture": "amd64", "containerRuntimeVersion": "weir-e2e://1", "osImage": "weir e2e",
                "kernelVersion": os.uname().release, "machineID": "", "systemUUID": "", "bootID": "",
            },
        }
        self.api.merge_status(f"/api/v1/nodes/{NODE}", status)
        # Registration adds the not-ready taint; the node lifecycle controller (not
        # run here) would lift it once the node is Ready, so the agent does.
        self.api.call("PATCH", f"/api/v1/nodes/{NODE}", {"spec": {"taints": []}},
                      "application/merge-patch+json")

    # ---- environment, volumes, commands ----

    def configmap(self, ns, name):
        return (self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{name}") or {}).get("data") or {}

    def secret(self, ns, name):
        data = (self.api.get(f"/api/v1/namespaces/{ns}/secrets/{name}") or {}).get("data") or {}
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}

    def field(self, pod, path):
        return {
            "status.podIP": pod.ip,
            "status.hostIP": "127.0.0.1",
            "metadata.name": pod.name,
            "metadata.namespace": pod.ns,
            "spec.nodeName": NODE,
            "spec.serviceAccountName": pod.obj["spec"].get("serviceAccountName", "default"),
        }.get(path, "")

    def environment(self, pod, spec):
        env = {
            "PATH": ":".join(sorted({os.path.dirname(b) for b in self.images.values()})) + ":/usr/bin:/bin",
            "HOME": "/tmp",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
            "HOSTNAME": pod.name,
        }
        for source in spec.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.configmap(pod.ns, source["configMapRef"]["name"]))
            if "secretRef" in source:
                env.update(self.secret(pod.ns, source["secretRef"]["name"]))
        for var in spec.get("env", []):
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
            elif "valueFrom" in var:
                vf = var["valueFrom"]
                if "fieldRef" in vf:
                    env[var["name"]] = self.field(pod, vf["fieldRef"]["fieldPath"])
                elif "secretKeyRef" in vf:
                    ref = vf["secretKeyRef"]
                    env[var["name"]] = self.secret(pod.ns, ref["name"]).get(ref["key"], "")
                elif "configMapKeyRef" in vf:
                    ref = vf["configMapKeyRef"]
                    env[var["name"]] = self.configmap(pod.ns, ref["name"]).get(ref["key"], "")
        return env

    def materialise(self, pod, spec):
        volumes = {v["name"]: v for v in pod.obj["spec"].get("volumes", [])}
        for mount in spec.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            path = mount["mountPath"]
            if "hostPath" in volume:
                # The host's filesystem is the pods' filesystem: the directory
                # itself, or a link to it at another mount path.
                host = volume["hostPath"]["path"]
                os.makedirs(host, exist_ok=True)
                if os.path.realpath(path) != os.path.realpath(host):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    os.symlink(host, path)
                continue
            os.makedirs(path, exist_ok=True)
            files = {}
            if "configMap" in volume:
                files = self.configmap(pod.ns, volume["configMap"]["name"])
            elif "secret" in volume:
                files = self.secret(pod.ns, volume["secret"]["secretName"])
            elif "projected" in volume:
                for source in volume["projected"].get("sources", []):
                    if "configMap" in source:
                        files.update(self.configmap(pod.ns, source["configMap"]["name"]))
                    if "secret" in source:
                        files.update(self.secret(pod.ns, source["secret"]["name"]))
            for key, value in files.items():
                with open(os.path.join(path, key), "w") as f:
                    f.write(value)

    def command(self, pod, spec, env):
        binary = self.images.get(spec["image"])
        if binary is None:
            raise ValueError(f"no binary for image {spec['image']} (use --image {spec['image']}=PATH)")
        command = [expand(c, env) for c in spec.get("command", [])]
        args = [expand(a, env) for a in spec.get("args", [])]
        if not command or os.path.basename(command[0]) == os.path.basename(binary):
            command = [binary] + command[1:]
        return command + args

    # ---- pods ----

    def start(self, pod, c):
        spec = c.spec
        env = self.environment(pod, spec)
        self.materialise(pod, spec)
        argv = self.command(pod, spec, env)
        logs = os.path.join(self.work, "pods", f"{pod.ns}_{pod.name}")
        os.makedirs(logs, exist_ok=True)
        out = open(os.path.join(logs, f"{c.name}.log"), "ab")
        cwd = spec.get("workingDir") or logs
        os.makedirs(cwd, exist_ok=True)
        c.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out, start_new_session=True)
        c.started_at = now()
        c.ready = False
        c.next_probe = time.time()
        log(f"started {pod.ns}/{pod.name}/{c.name} pid {c.proc.pid} on {pod.ip}: {' '.join(argv)}")

    def stop(self, pod, grace):
        for c in pod.containers:
            if c.proc and c.proc.poll() is None:
                try:
                    os.killpg(c.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + grace
        for c in pod.containers:
            while c.proc and c.proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if c.proc and c.proc.poll() is None:
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.proc.wait()

    def probe(self, pod, c):
        spec = c.spec.get("readinessProbe")
        if c.proc is None or c.proc.poll() is not None:
            return False
        if not spec:
            return True
        ports = {p.get("name"): p["containerPort"] for p in c.spec.get("ports", [])}
        try:
            if "httpGet" in spec:
                port = spec["httpGet"]["port"]
                port = ports.get(port, port)
                url = f"http://{pod.ip}:{port}{spec['httpGet'].get('path', '/')}"
                with urllib.request.urlopen(url, timeout=1) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in spec:
                port = spec["tcpSocket"]["port"]
                port = ports.get(port, port)
                with socket.create_connection((pod.ip, int(port)), timeout=1):
                    return True
        except (OSError, ValueError):
            return False
        return True

    def supervise(self, pod):
        policy = pod.obj["spec"].get("restartPolicy", "Always")
        for c in pod.containers:
            if c.proc is None:
                if time.time() >= c.next_start:
                    try:
                        self.start(pod, c)
                    except (OSError, ValueError) as e:
                        log(f"cannot start {pod.ns}/{pod.name}/{c.name}: {e}")
                        c.last_exit = {"exitCode": 128, "reason": "StartError", "message": str(e)}
                        c.next_start = time.time() + 5
                continue
            code = c.proc.poll()
            if code is not None:
                c.last_exit = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                               "startedAt": c.started_at, "finishedAt": now()}
                log(f"{pod.ns}/{pod.name}/{c.name} exited with {code}")
                c.proc = None
                c.ready = False
                restart = policy == "Always" or (policy == "OnFailure" and code != 0)
                if restart:
                    c.restarts += 1
                    c.next_start = time.time() + min(10.0, 0.5 * 2 ** min(c.restarts, 5))
                else:
                    c.next_start = float("inf")
                continue
            if time.time() >= c.next_probe:
                c.ready = self.probe(pod, c)
                period = (c.spec.get("readinessProbe") or {}).get("periodSeconds", 10)
                c.next_probe = time.time() + min(period, 1)

    def status(self, pod):
        policy = pod.obj["spec"].get("restartPolicy", "Always")
        running = [c for c in pod.containers if c.proc is not None]
        done = [c for c in pod.containers if c.proc is None and c.next_start == float("inf")]
        if done and len(done) == len(pod.containers):
            failed = any((c.last_exit or {}).get("exitCode", 1) != 0 for c in done)
            phase = "Failed" if failed and policy != "Always" else "Succeeded"
        elif running:
            phase = "Running"
        else:
            phase = "Pending" if not any(c.restarts for c in pod.containers) else "Running"
        ready = bool(pod.containers) and all(c.ready for c in pod.containers)
        statuses = []
        for c in pod.containers:
            state = {"running": {"startedAt": c.started_at}} if c.proc else (
                {"terminated": c.last_exit} if c.last_exit and c.next_start == float("inf")
                else {"waiting": {"reason": "CrashLoopBackOff" if c.restarts else "ContainerCreating"}})
            entry = {"name": c.name, "ready": c.ready, "restartCount": c.restarts, "image": c.spec["image"],
                     "imageID": "weir-e2e://" + c.spec["image"], "started": c.proc is not None, "state": state}
            if c.proc:
                entry["containerID"] = f"weir-e2e://{c.proc.pid}"
            if c.last_exit:
                entry["lastState"] = {"terminated": c.last_exit}
            statuses.append(entry)
        flag = lambda b: "True" if b else "False"
        return {
            "phase": phase, "hostIP": "127.0.0.1", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
            "startTime": pod.start_time,
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": flag(ready)},
                {"type": "ContainersReady", "status": flag(ready)},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": statuses,
        }

    def report(self, pod):
        status = self.status(pod)
        comparable = json.dumps(status, sort_keys=True)
        if comparable != pod.reported:
            code, body = self.api.merge_status(f"/api/v1/namespaces/{pod.ns}/pods/{pod.name}", status)
            if code == 200:
                pod.reported = comparable

    def finish(self, pod, grace):
        """Stops a deleted pod's processes, then removes the pod object."""
        self.stop(pod, grace)
        self.api.call("DELETE", f"/api/v1/namespaces/{pod.ns}/pods/{pod.name}",
                      {"gracePeriodSeconds": 0, "preconditions": {"uid": pod.uid}})
        self.forget(pod)
        log(f"removed {pod.ns}/{pod.name}")

    def forget(self, pod):
        self.pods.pop(pod.uid, None)
        self.free_ips.append(pod.ip)

    # ---- services ----

    def update_hosts(self):
        """Service names to the addresses of their pods here. Endpoints cannot hold
        loopback addresses (the API server refuses them), so the agent matches
        Service selectors against its own pods, as kube-proxy and DNS would."""
        services = self.api.get("/api/v1/services") or {}
        lines = []
        for svc in services.get("items", []):
            name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
            spec = svc.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector:
                continue
            not_ready_too = spec.get("publishNotReadyAddresses", False)
            ips = []
            for pod in self.pods.values():
                labels = pod.obj["metadata"].get("labels") or {}
                if pod.ns != ns or pod.terminating or any(labels.get(k) != v for k, v in selector.items()):
                    continue
                ready = all(c.ready for c in pod.containers)
                if not (ready or not_ready_too):
                    continue
                ips.append(pod.ip)
                hostname, subdomain = pod.obj["spec"].get("hostname"), pod.obj["spec"].get("subdomain")
                if hostname and subdomain == name:
                    h = f"{hostname}.{name}"
                    lines.append(f"{pod.ip} {h} {h}.{ns} {h}.{ns}.svc {h}.{ns}.svc.cluster.local")
            if ips:
                lines.append(f"{sorted(ips)[0]} {name} {name}.{ns} {name}.{ns}.svc {name}.{ns}.svc.cluster.local")
        block = "\n".join([BEGIN] + sorted(lines) + [END])
        if block == self.hosts_block:
            return
        text = open(HOSTS).read()
        text = re.sub(rf"\n?{re.escape(BEGIN)}.*?{re.escape(END)}\n?", "\n", text, flags=re.S).rstrip("\n")
        with open(HOSTS, "w") as f:
            f.write(text + "\n" + block + "\n")
        self.hosts_block = block

    def clear_hosts(self):
        try:
            text = open(HOSTS).read()
            text = re.sub(rf"\n?{re.escape(BEGIN)}.*?{re.escape(END)}\n?", "\n", text, flags=re.S).rstrip("\n")
            with open(HOSTS, "w") as f:
                f.write(text + "\n")
        except OSError:
            pass

    # ---- the loop ----

    def step(self):
        listed = self.api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}")
        if listed is None:
            return
        seen = set()
        for obj in listed.get("items", []):
            uid = obj["metadata"]["uid"]
            seen.add(uid)
            pod = self.pods.get(uid)
            if obj["metadata"].get("deletionTimestamp"):
                if pod is None:
                    self.api.call("DELETE", f"/api/v1/namespaces/{obj['metadata']['namespace']}/pods/{obj['metadata']['name']}",
                                  {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                elif not pod.terminating:
                    pod.terminating = True
                    grace = min(obj["spec"].get("terminationGracePeriodSeconds", 30), 5)
                    threading.Thread(target=self.finish, args=(pod, grace), daemon=True).start()
                continue
            if obj.get("status", {}).get("phase") in ("Succeeded", "Failed") and pod is None:
                continue
            if pod is None:
                if not self.free_ips:
                    log("out of pod addresses")
                    continue
                pod = Pod(obj, self.free_ips.pop(0))
                self.pods[uid] = pod
            pod.obj = obj
            self.supervise(pod)
            self.report(pod)
        for uid, pod in list(self.pods.items()):
            if uid not in seen and not pod.terminating:
                pod.terminating = True
                self.stop(pod, 2)
                self.forget(pod)
        self.update_hosts()

    def run(self, stop):
        self.register()
        last_beat = time.time()
        while not stop.is_set():
            try:
                self.step()
                if time.time() - last_beat > 10:
                    self.heartbeat()
                    last_beat = time.time()
            except Exception as e:  # a test fixture keeps going through API hiccups
                log(f"step failed: {e!r}")
            stop.wait(0.3)
        for pod in list(self.pods.values()):
            self.stop(pod, 2)
        self.clear_hosts()


def expand(text, env):
    """Expands $(VAR) as Kubernetes does ($$ escapes; unknown references stay)."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--image", action="append", default=[], help="IMAGE=BINARY")
    parser.add_argument("--api-port", type=int, default=6443)
    parser.add_argument("--pod-network", default="127.0.1",
                        help="pod IPs are PREFIX.2-254; a prefix outside 127/8 is added to the "
                             "loopback interface (needs CAP_NET_ADMIN), which lets the API "
                             "server proxy to pods (it refuses loopback addresses)")
    args = parser.parse_args()
    images = dict(i.split("=", 1) for i in args.image)
    os.makedirs(args.work, exist_ok=True)
    pod_ips = [f"{args.pod_network}.{i}" for i in range(2, 255)]
    added = [] if args.pod_network.startswith("127.") else pod_ips
    for ip in added:
        subprocess.run(["ip", "addr", "replace", f"{ip}/32", "dev", "lo"], check=True)
    agent = Agent(Api(args.kubeconfig), args.work, images, args.api_port, pod_ips)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log(f"node {NODE} with images {images}, pod IPs {pod_ips[0]}-{pod_ips[-1]}")
    try:
        agent.run(stop)
    finally:
        for ip in added:
            subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], check=False)


if __name__ == "__main__":
    main()
