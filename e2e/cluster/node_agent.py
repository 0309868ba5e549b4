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
  --pod-network) and reports it as its pod IP;
- runs each container in a mount namespace of its own (pod_sandbox.py) with the
  pod's volumes bind-mounted at their mount paths: emptyDir (a directory of the
  pod's, removed with the pod), ConfigMap, Secret, downward API and projected
  volumes (service-account tokens from the TokenRequest API, bound to the pod),
  hostPath; as the pod's runAsUser, runAsGroup and supplemental groups;
- makes Service names resolve, through a managed block of /etc/hosts, to the
  addresses the EndpointSlice controller lists for them, and headless-Service
  pod names too (as kube-proxy and cluster DNS would);
- runs startup, liveness and readiness probes (httpGet, tcpSocket), restarts a
  container whose liveness or startup probe fails failureThreshold times, and
  reports pod phase, readiness, restart counts, exit codes and waiting reasons
  (ErrImagePull, then ImagePullBackOff, for an image it has no binary for);
  restarts containers as the pod's restartPolicy says, with backoff;
- stops a pod's processes (SIGTERM, then SIGKILL) when the pod is deleted, and
  then removes the pod object, as a kubelet does.

Not emulated: resource limits, capabilities and seccomp, exec probes, network
isolation, and a root filesystem per container (pods see the host's, their
volumes mounted over it).

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
SANDBOX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pod_sandbox.py")
TOKEN_SECONDS = 3600
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


class ImagePullError(ValueError):
    """A container's image is none this node has a binary for."""


class ContainerConfigError(ValueError):
    """A container's spec cannot be run as it says (runAsNonRoot without a user)."""


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
        # Whether the startup probe has passed (or there is none) since the start.
        self.started = False
        # Consecutive failures of the liveness or startup probe.
        self.failures = 0
        # Why the container cannot be created ({"reason", "message"}), if it cannot.
        self.waiting = None
        self.started_clock = 0.0


class Pod:
    def __init__(self, obj, ip, work):
        self.uid = obj["metadata"]["uid"]
        self.ns = obj["metadata"]["namespace"]
        self.name = obj["metadata"]["name"]
        self.obj = obj
        self.ip = ip
        self.containers = [Container(c) for c in obj["spec"].get("containers", [])]
        self.start_time = now()
        # Its logs, sandbox specs and volumes (the volumes go with the pod).
        self.dir = os.path.join(work, "pods", f"{self.ns}_{self.name}_{self.uid[:8]}")
        self.reported = None
        self.terminating = False


class Agent:
    def __init__(self, api, work, images, api_port, pod_ips):
        self.api, self.work, self.api_port = api, work, api_port
        self.images = self.install(images)
        # A kubelet reports the release it is of: this agent, the API server's.
        self.version = (api.get("/version") or {}).get("gitVersion", "v0.0.0")
        self.pods = {}
        self.free_ips = list(pod_ips)
        self.hosts_block = None

    def install(self, images):
        """Each image's binary linked (or copied) into the work directory, where a
        pod's runAsUser can execute it (a build directory under /root is not)."""
        directory = os.path.join(self.work, "images")
        os.makedirs(directory, exist_ok=True)
        installed = {}
        for image, binary in images.items():
            target = os.path.join(directory, os.path.basename(binary))
            if os.path.exists(target):
                os.unlink(target)
            try:
                os.link(binary, target)
            except OSError:
                shutil.copy2(binary, target)
            os.chmod(target, 0o755)
            installed[image] = target
        for path in (self.work, directory):
            os.chmod(path, 0o755)
        return installed

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
                "kubeletVersion": self.version, "kubeProxyVersion": self.version, "operatingSystem": "linux",
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

    def token(self, pod, source):
        """A service-account token for `pod` from the TokenRequest API, bound to it."""
        sa = pod.obj["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else None,
                "expirationSeconds": max(source.get("expirationSeconds", TOKEN_SECONDS), 600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid},
            },
        }
        code, body = self.api.call("POST", f"/api/v1/namespaces/{pod.ns}/serviceaccounts/{sa}/token", request)
        if code != 201:
            raise ValueError(f"no token for service account {pod.ns}/{sa}: {code} {body.get('message', '')}")
        return body["status"]["token"]

    def volume_files(self, pod, volume):
        """The files of a ConfigMap, Secret, downward API or projected volume, by path."""
        def pick(data, items):
            if not items:
                return dict(data)
            return {item.get("path", item["key"]): data[item["key"]] for item in items if item["key"] in data}
        def downward(items):
            return {item["path"]: self.field(pod, item["fieldRef"]["fieldPath"])
                    for item in items if "fieldRef" in item}
        if "configMap" in volume:
            return pick(self.configmap(pod.ns, volume["configMap"]["name"]), volume["configMap"].get("items"))
        if "secret" in volume:
            return pick(self.secret(pod.ns, volume["secret"]["secretName"]), volume["secret"].get("items"))
        if "downwardAPI" in volume:
            return downward(volume["downwardAPI"].get("items", []))
        files = {}
        for source in volume["projected"].get("sources", []):
            if "configMap" in source:
                files.update(pick(self.configmap(pod.ns, source["configMap"]["name"]), source["configMap"].get("items")))
            if "secret" in source:
                files.update(pick(self.secret(pod.ns, source["secret"]["name"]), source["secret"].get("items")))
            if "downwardAPI" in source:
                files.update(downward(source["downwardAPI"].get("items", [])))
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files[token.get("path", "token")] = self.token(pod, token)
        return files

    def mounts(self, pod, spec):
        """The container's volume mounts as [source, target, read_only], each volume
        made ready: an emptyDir once per pod, file volumes written afresh."""
        volumes = {v["name"]: v for v in pod.obj["spec"].get("volumes", [])}
        mounts = []
        for mount in spec.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ValueError(f"volume {mount['name']} is not a volume of the pod")
            if "hostPath" in volume:
                source = volume["hostPath"]["path"]
                if volume["hostPath"].get("type", "") in ("", "DirectoryOrCreate"):
                    os.makedirs(source, exist_ok=True)
            else:
                source = os.path.join(pod.dir, "volumes", mount["name"])
                if "emptyDir" in volume:
                    if not os.path.isdir(source):
                        os.makedirs(source)
                        os.chmod(source, 0o777)
                elif any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected")):
                    shutil.rmtree(source, ignore_errors=True)
                    os.makedirs(source)
                    os.chmod(source, 0o755)
                    for path, text in self.volume_files(pod, volume).items():
                        file = os.path.join(source, path)
                        os.makedirs(os.path.dirname(file), exist_ok=True)
                        with open(file, "w") as f:
                            f.write(text)
                        os.chmod(file, 0o644)
                else:
                    raise ValueError(f"volume {mount['name']}: this node agent has no such kind of volume")
            if mount.get("subPath"):
                source = os.path.join(source, mount["subPath"])
            mounts.append([source, mount["mountPath"], bool(mount.get("readOnly"))])
        return mounts

    def user(self, pod, spec):
        """(uid, gid, groups) of the container's security context and its pod's,
        or None to run as this agent's user."""
        pod_context = pod.obj["spec"].get("securityContext") or {}
        context = {**pod_context, **(spec.get("securityContext") or {})}
        uid = context.get("runAsUser")
        if uid is None:
            if context.get("runAsNonRoot"):
                raise ContainerConfigError("container has runAsNonRoot and no runAsUser: "
                                           "this node agent's images have no user of their own")
            return None
        if uid == 0 and context.get("runAsNonRoot"):
            raise ContainerConfigError("container has runAsNonRoot and runAsUser 0")
        groups = list(pod_context.get("supplementalGroups", []))
        if "fsGroup" in pod_context:
            groups.append(pod_context["fsGroup"])
        return uid, context.get("runAsGroup", 0), groups

    def command(self, pod, spec, env):
        binary = self.images.get(spec["image"])
        if binary is None:
            raise ImagePullError(f"image {spec['image']} is not known to this node "
                                 f"(node_agent.py --image {spec['image']}=BINARY)")
        command = [expand(c, env) for c in spec.get("command", [])]
        args = [expand(a, env) for a in spec.get("args", [])]
        if not command or os.path.basename(command[0]) == os.path.basename(binary):
            command = [binary] + command[1:]
        return command + args

    # ---- pods ----

    def start(self, pod, c):
        spec = c.spec
        env = self.environment(pod, spec)
        argv = self.command(pod, spec, env)
        user = self.user(pod, spec)
        mounts = self.mounts(pod, spec)
        os.makedirs(pod.dir, exist_ok=True)
        sandbox = {
            "mounts": mounts, "argv": argv, "cwd": spec.get("workingDir") or "/",
            "uid": user[0] if user else None, "gid": user[1] if user else None,
            "groups": user[2] if user else [],
        }
        spec_file = os.path.join(pod.dir, f"{c.name}.sandbox.json")
        with open(spec_file, "w") as f:
            json.dump(sandbox, f)
        out = open(os.path.join(pod.dir, f"{c.name}.log"), "ab")
        c.proc = subprocess.Popen([sys.executable, SANDBOX, spec_file], env=env, cwd="/",
                                  stdout=out, stderr=out, start_new_session=True)
        c.started_at = now()
        c.started_clock = time.time()
        c.ready = False
        c.started = "startupProbe" not in spec
        c.failures = 0
        c.waiting = None
        c.next_probe = time.time() + (spec.get("startupProbe") or {}).get("initialDelaySeconds", 0)
        as_user = f" as uid {user[0]}" if user else ""
        log(f"started {pod.ns}/{pod.name}/{c.name} pid {c.proc.pid} on {pod.ip}{as_user}: {' '.join(argv)}")

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

    def probe(self, pod, c, spec):
        """Whether the probe `spec` (httpGet or tcpSocket) passes now."""
        ports = {p.get("name"): p["containerPort"] for p in c.spec.get("ports", [])}
        try:
            if "httpGet" in spec:
                port = spec["httpGet"]["port"]
                port = ports.get(port, port)
                url = f"http://{pod.ip}:{port}{spec['httpGet'].get('path', '/')}"
                with urllib.request.urlopen(url, timeout=spec.get("timeoutSeconds", 1)) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in spec:
                port = spec["tcpSocket"]["port"]
                port = ports.get(port, port)
                with socket.create_connection((pod.ip, int(port)), timeout=spec.get("timeoutSeconds", 1)):
                    return True
        except (OSError, ValueError):
            return False
        return True

    def run_probes(self, pod, c):
        """The startup probe until it passes, then liveness and readiness, as a
        kubelet runs them: a container whose startup or liveness probe fails
        failureThreshold times in a row is killed (and restarted as its pod's
        restartPolicy says)."""
        startup, liveness = c.spec.get("startupProbe"), c.spec.get("livenessProbe")
        readiness = c.spec.get("readinessProbe")
        if not c.started:
            if self.probe(pod, c, startup):
                c.started, c.failures = True, 0
                c.next_probe = time.time()
                return
            c.failures += 1
            if c.failures >= startup.get("failureThreshold", 3):
                log(f"{pod.ns}/{pod.name}/{c.name} failed its startup probe {c.failures} times: killing it")
                self.kill(c)
            c.next_probe = time.time() + startup.get("periodSeconds", 10)
            return
        running_for = time.time() - c.started_clock
        if liveness and running_for >= liveness.get("initialDelaySeconds", 0):
            if self.probe(pod, c, liveness):
                c.failures = 0
            else:
                c.failures += 1
                if c.failures >= liveness.get("failureThreshold", 3):
                    log(f"{pod.ns}/{pod.name}/{c.name} failed its liveness probe {c.failures} times: killing it")
                    self.kill(c)
                    return
        c.ready = readiness is None or (
            running_for >= readiness.get("initialDelaySeconds", 0) and self.probe(pod, c, readiness))
        periods = [p.get("periodSeconds", 10) for p in (liveness, readiness) if p]
        # Readiness is looked at every second at most (the suite waits on it);
        # liveness at its own period.
        c.next_probe = time.time() + min(periods + [1] if readiness else periods or [1])

    def kill(self, c):
        try:
            os.killpg(c.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        c.proc.wait()

    def supervise(self, pod):
        policy = pod.obj["spec"].get("restartPolicy", "Always")
        for c in pod.containers:
            if c.proc is None:
                if time.time() >= c.next_start:
                    try:
                        self.start(pod, c)
                    except ImagePullError as e:
                        pulls = (c.waiting or {}).get("pulls", 0) + 1
                        reason = "ErrImagePull" if pulls % 2 else "ImagePullBackOff"
                        if c.waiting is None:
                            log(f"cannot start {pod.ns}/{pod.name}/{c.name}: {e}")
                        c.waiting = {"reason": reason, "message": str(e), "pulls": pulls}
                        c.next_start = time.time() + 5
                    except ContainerConfigError as e:
                        log(f"cannot start {pod.ns}/{pod.name}/{c.name}: {e}")
                        c.waiting = {"reason": "CreateContainerConfigError", "message": str(e)}
                        c.next_start = time.time() + 5
                    except (OSError, ValueError) as e:
                        log(f"cannot start {pod.ns}/{pod.name}/{c.name}: {e}")
                        c.waiting = {"reason": "CreateContainerError", "message": str(e)}
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
                self.run_probes(pod, c)

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
            if c.proc:
                state = {"running": {"startedAt": c.started_at}}
            elif c.last_exit and c.next_start == float("inf"):
                state = {"terminated": c.last_exit}
            elif c.waiting:
                state = {"waiting": {"reason": c.waiting["reason"], "message": c.waiting["message"]}}
            else:
                state = {"waiting": {"reason": "CrashLoopBackOff" if c.restarts else "ContainerCreating"}}
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
        """Lets a stopped pod go: its address, and its volumes (an emptyDir lives as
        long as its pod); its logs stay in the work directory."""
        self.pods.pop(pod.uid, None)
        self.free_ips.append(pod.ip)
        shutil.rmtree(os.path.join(pod.dir, "volumes"), ignore_errors=True)

    # ---- services ----

    def update_hosts(self):
        """Service names to the addresses the EndpointSlice controller lists for
        them (its ready ones: a pod that is not ready, or terminating, is left out
        unless the Service publishes not-ready addresses), and the pods of a
        headless Service by their hostnames, as cluster DNS serves them."""
        slices = self.api.get("/apis/discovery.k8s.io/v1/endpointslices")
        if slices is None:
            return
        addresses, lines = {}, []
        for endpoint_slice in slices.get("items", []):
            meta = endpoint_slice["metadata"]
            name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if not name or endpoint_slice.get("addressType") != "IPv4":
                continue
            ns = meta["namespace"]
            for endpoint in endpoint_slice.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False or not endpoint.get("addresses"):
                    continue
                ip = endpoint["addresses"][0]
                addresses.setdefault((ns, name), []).append(ip)
                if endpoint.get("hostname"):
                    h = f"{endpoint['hostname']}.{name}"
                    lines.append(f"{ip} {h} {h}.{ns} {h}.{ns}.svc {h}.{ns}.svc.cluster.local")
        for (ns, name), ips in addresses.items():
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
                pod = Pod(obj, self.free_ips.pop(0), self.work)
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
    parser.add_argument("--pod-network", default="10.244.0",
                        help="pod IPs are PREFIX.2-254, added to the loopback interface (needs "
                             "CAP_NET_ADMIN) unless in 127/8: the API server refuses loopback "
                             "addresses in EndpointSlices and will not proxy to them")
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
