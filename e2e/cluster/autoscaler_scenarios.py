"""The autoscaler on a cluster: a keyed-sum job given more load than one
subtask can take scales up; once its input slows down (at a record count, so
the drop does not depend on timing) it scales down; and its output is exactly
once through both rescales."""

import json
import time

from harness import NS, check_keyed_sum, committed, render, stream_job, wait_finished, wait_for

AUTOSCALER = """  autoscaler:
    enabled: true
    minParallelism: 1
    maxParallelism: 3
    metricsWindow: 10s
    stabilizationWindow: 20s
    cooldown: 10s
"""


def decisions(env, name):
    return (env.status(name).get("autoscaler") or {}).get("decisions") or []


def decision(env, name, up, timeout):
    """The first decision up (or down), waited for; a timeout says what the
    autoscaler saw last."""
    try:
        return wait_for(lambda: [d for d in decisions(env, name) if (d["to"] > d["from"]) == up], timeout,
                        f"{name} scaled {'up' if up else 'down'}")[0]
    except AssertionError as e:
        raise AssertionError(f"{e}; autoscaler status: {env.status(name).get('autoscaler')}") from None


def running_at(env, name, parallelism):
    status = env.coordinator_status(name) or {}
    return status.get("parallelism") == parallelism and status.get("state") == "running"


def autoscaled_load(env):
    """keyed-sum at 3,000 records/s, each sum waiting 0.5 ms per record (one
    subtask takes 2,000/s): the autoscaler raises the parallelism through an
    upgrade savepoint. From record 120,000 on the input comes at 300/s: it lowers
    the parallelism again once the stabilization window asked for less. Every
    decision is in the status and an event, and every key's sums step up by
    exactly its values."""
    name, records, keys = "autoscaled", 140_000, 100
    out = env.out_dir(name)
    args = ["--records", str(records), "--keys", str(keys), "--rate", "3000",
            "--rate-change-at", "120000", "--then-rate", "300",
            "--work-per-record-us", "500", "--output", out]
    env.apply(render(env, stream_job(name, "keyed-sum", args, parallelism=1, extra=AUTOSCALER)))
    up = decision(env, name, True, 180)
    decided = time.time()
    assert up["from"] == 1 and "busiest sum -> work -> sink" in up["reason"], up
    wait_for(lambda: running_at(env, name, up["to"]), 120, f"{name} running at {up['to']}")
    env.measured.append(f"autoscaler scale-up decided -> running at {up['to']}: {time.time() - decided:.1f} s")
    assert (env.status(name).get("lastSavepoint") or {}).get("reason") == "upgrade", env.status(name)

    down = decision(env, name, False, 240)
    assert down["to"] < down["from"] and "busy" in down["reason"], down
    history = [(d["from"], d["to"]) for d in decisions(env, name)]
    env.measured.append(f"autoscaler decisions: {' then '.join(f'{a}->{b}' for a, b in history)}; "
                        f"the first: {up['reason']}")
    assert history.index((down["from"], down["to"])) > history.index((up["from"], up["to"])), history
    wait_finished(env, name, timeout=300)
    events = json.loads(env.kubectl("get", "events", "-n", NS, "--field-selector",
                                    f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    reasons = {e["reason"] for e in events}
    assert {"ScaledUp", "ScaledDown"} <= reasons, reasons
    check_keyed_sum(committed(out), records, keys)
    env.kubectl("delete", "streamjob", name, "-n", NS)


SCENARIOS = [autoscaled_load]
