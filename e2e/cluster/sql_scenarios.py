"""The operator's SQL scenarios: StreamJobs whose job is SQL (job.sql) over the
built-in Nexmark bids, rescaled through a savepoint that holds their windows,
and changed in ways that would lose state, which the controller refuses before
it tears anything down.
"""

import os
import subprocess

from harness import NS, committed, render, sql_job, wait_finished, wait_for

SQL_WINDOWS = """CREATE TABLE counts (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
INSERT INTO counts SELECT auction, window_start, COUNT(*), MAX(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;"""


def sql_job_rescale(env):
    """A StreamJob whose job is SQL (job.sql: a window aggregate over the built-in
    Nexmark bids): rescaled 2 -> 3 through a savepoint that holds its windows, its
    rows identical to a failure-free `weir sql` run (exactly once)."""
    name = "sql-windows"
    out = env.out_dir(name)
    options = ["--option", "bid.events.num=400000", "--option", "bid.events.per-second=10000"]
    script = SQL_WINDOWS.replace("{out}", out)
    env.apply(render(env, sql_job(name, script, options + ["--option", "bid.rate-limit=40000"])))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    wait_for(lambda: env.status(name).get("lastCheckpoint"), 60, f"{name}'s first checkpoint")
    env.patch(name, {"spec": {"parallelism": 3}})
    wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("reason") == "upgrade", 120,
             "the upgrade savepoint")
    wait_for(lambda: (env.coordinator_status(name) or {}).get("parallelism") == 3, 120, "the rescaled job")
    wait_finished(env, name)
    rows = sorted(committed(out))
    reference = os.path.join(env.out_root, "sql-windows-reference")
    with open(reference + ".sql", "w") as f:
        f.write(SQL_WINDOWS.replace("{out}", reference))
    subprocess.run([env.weir, "sql", "-f", reference + ".sql", "--checkpoint-interval", "off",
                    "--checkpoint-dir", reference + "-chk", *options],
                   check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    expected = sorted(committed(reference))
    assert rows == expected, f"{len(rows)} rows, a failure-free run has {len(expected)}"
    env.kubectl("delete", "streamjob", name, "-n", NS)


SQL_CHANGED = SQL_WINDOWS.replace("top BIGINT", "low BIGINT").replace("MAX(price)", "MIN(price)")


def sql_upgrade_checked(env):
    """A SQL job changed so that its window aggregate is another (MIN for MAX):
    the running coordinator builds the changed job and finds state it would
    drop, so the controller refuses the upgrade (Stalled UpgradeRefused, naming
    the operator) and the job runs on untouched; a script that does not plan is
    refused alike; with allowNonRestoredState the upgrade goes through its
    savepoint."""
    name = "sql-changed"
    out = env.out_dir(name)
    options = ["--option", "bid.events.per-second=10000", "--option", "bid.rate-limit=20000"]
    env.apply(render(env, sql_job(name, SQL_WINDOWS.replace("{out}", out), options)))
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True", 120, f"{name} Ready")
    wait_for(lambda: env.status(name).get("lastCheckpoint"), 60, f"{name}'s first checkpoint")
    deployed = env.get("deployment", f"{name}-coordinator")["metadata"]["uid"]

    def refused(text):
        stalled = env.condition(name, "Stalled")
        return stalled.get("reason") == "UpgradeRefused" and text in stalled.get("message", "")
    env.patch(name, {"spec": {"job": {"sql": SQL_CHANGED.replace("{out}", out)}}})
    wait_for(lambda: refused("window-aggregate-"), 60, "the upgrade refused for the state it drops")
    assert "allowNonRestoredState" in env.condition(name, "Stalled")["message"]
    env.patch(name, {"spec": {"job": {"sql": SQL_CHANGED.replace("{out}", out).replace("MIN(price)", "MIN(cost)")}}})
    wait_for(lambda: refused("cannot be built"), 60, "the upgrade refused for a script that does not plan")
    assert not env.status(name).get("lastSavepoint"), "no savepoint taken for a refused upgrade"
    assert env.get("deployment", f"{name}-coordinator")["metadata"]["uid"] == deployed, "the job was left running"
    assert (env.coordinator_status(name) or {}).get("state") == "running"
    env.patch(name, {"spec": {"allowNonRestoredState": True,
                              "job": {"sql": SQL_CHANGED.replace("{out}", out)}}})
    wait_for(lambda: (env.status(name).get("lastSavepoint") or {}).get("reason") == "upgrade", 120,
             "the upgrade savepoint")
    wait_for(lambda: env.condition(name, "Ready").get("status") == "True" and
             env.condition(name, "Stalled").get("status") == "False", 120, "the changed job running")
    env.kubectl("delete", "streamjob", name, "-n", NS)


SCENARIOS = [sql_job_rescale, sql_upgrade_checked]
