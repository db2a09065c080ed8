"""The short variant of bench/load.py: the real node process for 20 s at a steady rate with
people coming and going (1,000 ids). Every input must be answered, tracks must expire, and the
node's resident memory must not grow after warm-up. The full run (10 people, 60 Hz, 10 minutes)
and its figures are in docs/reliability.md."""
import json
import math
import os
import subprocess
import sys

from conftest import REPO, next_domain_id

PEOPLE, RATE, SECONDS, IDS, WARMUP = 3, 30.0, 20.0, 1000, 8.0
TRACK_TIMEOUT = 1.0  # config/lift.yaml
# Growth of the node's RSS from the end of warm-up to the end (~12 s, ~360 frames). The run
# itself measures under 0.5 MiB; leaking one input message (about 8 KiB with 3 people) or the
# model windows (16 KiB) per frame measured 3.9 and 6.3 MiB: both fail this bound.
RSS_GROWTH_MIB = 2.0


def test_short_load_answers_every_input_expires_tracks_and_holds_memory(tmp_path):
    out = tmp_path / "load.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(REPO / "bench" / "load.py"), "--people", str(PEOPLE), "--rate", str(RATE),
           "--minutes", str(SECONDS / 60), "--ids", str(IDS), "--warmup", str(WARMUP),
           "--domain", str(next_domain_id()), "--log", str(tmp_path / "node.log"), "--json", str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert out.is_file(), run.stdout + run.stderr
    r = json.loads(out.read_text())
    print("\n" + run.stdout)
    # Every input reached the node, and each one not answered was counted: lifting fell behind and the
    # newest-input mailbox skipped it (dropped_behind). On this 2-core machine a few of 600 are
    # (1001 ids in 20 s: a new track almost every frame); answering all is bench/load.py's target.
    assert r["node_inputs"] == r["inputs_sent"] and r["missing"] == r["dropped_behind"], r
    assert r["dropped_behind"] <= 0.03 * r["inputs_sent"], r
    assert r["rejected_total"] == 0 and r["internal_errors"] == 0, r
    assert r["tracebacks"] == 0 and r["error_lines"] == 0 and r["exit_status"] == 0, r
    assert r["distinct_ids"] >= IDS, r
    # alive at once: the people in view plus the ids that left within the track timeout
    # (+ one diagnostics period of lag in the count)
    assert r["tracks_max"] <= PEOPLE + math.ceil(IDS / SECONDS * (TRACK_TIMEOUT + 1.0)), r
    assert r["rss_growth_mib"] < RSS_GROWTH_MIB, r
