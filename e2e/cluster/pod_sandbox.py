#!/usr/bin/env python3
"""Starts one container of the node agent test fixture (node_agent.py) in a sandbox.

This is a TEST TOOL of weir's end-to-end suite. It runs as root, is handed a JSON
file naming the container's volume mounts, user and command, and then:

- enters a mount namespace of its own (private propagation), so the pod's volumes
  are bind-mounted at their mount paths for its processes only: two pods mounting
  different emptyDirs at /var/lib/weir each see their own, and nothing outside sees
  either;
- opens every mount's source, and the command's executable, before mounting
  anything, so a source or a binary under a path a mount covers (the agent's work
  directory under /tmp, with an emptyDir at /tmp) is still the host's;
- mounts parents before children, read-only where the volume mount says so;
- drops to the pod's runAsUser, runAsGroup and supplemental groups (fsGroup among
  them) and executes the command in the working directory.

Usage: pod_sandbox.py SPEC.json   (spec: mounts [[source, target, read_only]], uid,
gid, groups, cwd, argv; the environment is passed through)
"""

import ctypes
import json
import os
import shutil
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source, target, flags):
    check(libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
          f"mount {source} at {target}")


def main():
    spec = json.load(open(sys.argv[1]))
    argv = spec["argv"]
    path = shutil.which(argv[0], path=os.environ.get("PATH")) or argv[0]
    executable = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    check(libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", MS_REC | MS_PRIVATE)
    mounts = sorted(spec["mounts"], key=lambda m: m[1].rstrip("/").count("/"))
    sources = [os.open(source, os.O_PATH) for source, _, _ in mounts]
    for fd, (source, target, read_only) in zip(sources, mounts):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        mount(f"/proc/self/fd/{fd}", target, MS_BIND | MS_REC)
        if read_only:
            mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    if spec.get("uid") is not None:
        os.setgroups(spec.get("groups", []))
        os.setgid(spec.get("gid") or 0)
        os.setuid(spec["uid"])
    os.chdir(spec["cwd"])
    os.execve(executable, argv, os.environ)


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        print(f"pod sandbox: {e}", file=sys.stderr)
        sys.exit(128)
