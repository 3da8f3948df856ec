"""The command line: contract output, one-line errors, no tracebacks for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import write


def crossrec(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossrec", *args], capture_output=True, text=True, cwd=cwd
    )


def test_init_ingest_stats_json(tmp_path):
    w = str(tmp_path / "ws")
    assert crossrec("init", "--workspace", w).returncode == 0
    events = write(tmp_path / "e.csv", "uid,mid,rating\nu1,m1,4\nu2,m1,\nu3,,2\n")
    r = crossrec(
        "ingest",
        "--workspace",
        w,
        "--platform",
        "video",
        "--events",
        str(events),
        "--columns",
        "account=uid,item=mid,value=rating",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout holds only the JSON document
    assert doc[0]["accepted"] == 2 and doc[0]["quarantined"] == 1
    assert "accepted 2, quarantined 1" in r.stderr
    r = crossrec("stats", "--workspace", w, "--json")
    assert json.loads(r.stdout) == {
        "platforms": {"video": {"accounts": 2, "items": 1, "events": 2}},
        "quarantined": 1,
        "duplicates": 0,
        "known_links": 0,
    }
    r = crossrec("quarantine", "list", "--workspace", w, "--json")
    assert json.loads(r.stdout)["rows"][0]["reason"] == "missing item"
    r = crossrec("quarantine", "purge", "--workspace", w)
    assert r.returncode == 0
    assert json.loads(crossrec("stats", "--workspace", w, "--json").stdout)["quarantined"] == 0


def test_not_a_workspace_is_one_line_with_the_fix(tmp_path):
    r = crossrec("stats", "--workspace", str(tmp_path))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "crossrec init --workspace" in r.stderr


def test_garbage_file_exits_nonzero_with_one_line(tmp_path):
    w = str(tmp_path / "ws")
    crossrec("init", "--workspace", w)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\xff\x13" * 500)
    r = crossrec("ingest", "--workspace", w, "--platform", "p", "--events", str(garbage))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "garbage.csv" in errors[0]


def test_bad_columns_flag_is_a_user_error(tmp_path):
    w = str(tmp_path / "ws")
    crossrec("init", "--workspace", w)
    events = write(tmp_path / "e.csv", "account,item\na,b\n")
    r = crossrec(
        "ingest",
        "--workspace",
        w,
        "--platform",
        "p",
        "--events",
        str(events),
        "--columns",
        "account",
    )
    assert r.returncode == 2
    assert "not canon=source" in r.stderr and "Traceback" not in r.stderr


def test_config_typo_is_reported_with_its_key(tmp_path):
    w = tmp_path / "ws"
    crossrec("init", "--workspace", str(w))
    cfg = w / "crossrec.toml"
    cfg.write_text(
        cfg.read_text().replace("factors = 64", "factor = 64").replace("seed = 42", "seed = 'x'")
    )
    r = crossrec("stats", "--workspace", str(w))
    assert r.returncode == 2
    assert "train.factor" in r.stderr and "train.seed" in r.stderr
    assert "Traceback" not in r.stderr
