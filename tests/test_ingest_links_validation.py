"""`ingest-links` validates like `ingest`: platform names, the identity rule, conflicting
links quarantined with the reason, accounts that exist nowhere counted in the summary."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.conftest import write

HEADER = "platform_a,account_a,platform_b,account_b\n"


def _reasons(ws) -> dict[int, tuple[str, str]]:
    return {r["line"]: (r["field"], r["reason"]) for r in ws.quarantine().list(limit=100)}


def _events(ws, tmp_path) -> None:
    ws.ingest_events("video", write(tmp_path / "v.csv", "account,item\nv1,i\nv2,i\nv3,i\n"))
    ws.ingest_events("music", write(tmp_path / "m.csv", "account,item\nm1,s\nm2,s\nm3,s\n"))


def test_platform_names_follow_the_ingest_rule(ws, tmp_path):
    _events(ws, tmp_path)
    body = HEADER + "../x,v1,music,m1\nvideo,v1,bad name,m1\nvideo,v1,music,m1\n"
    s = ws.ingest_links(write(tmp_path / "l.csv", body))
    assert (s.accepted, s.quarantined) == (1, 2)
    reasons = _reasons(ws)
    assert reasons[2][0] == "platform_a" and reasons[2][1].startswith("invalid platform_a: ../x")
    assert reasons[3][0] == "platform_b" and reasons[3][1].startswith("invalid platform_b")
    assert ws.store.count("known_links") == 1


def test_account_ids_follow_the_identity_rule(ws, tmp_path):
    _events(ws, tmp_path)
    body = HEADER + f"video,{'x' * 513},music,m1\nvideo,  v1 ,music,m1\n"
    s = ws.ingest_links(write(tmp_path / "l.csv", body))
    assert (s.accepted, s.quarantined, s.unknown_accounts) == (1, 1, 0)
    assert _reasons(ws)[2] == ("account_a", "invalid account_a: 513 characters (at most 512)")
    [link] = ws.store.read("known_links").to_pylist()
    assert {link["account_a"], link["account_b"]} == {
        ws.account_id("video", "v1"),
        ws.account_id("music", "m1"),
    }


def test_conflicting_links_are_quarantined_with_the_reason(ws, tmp_path):
    _events(ws, tmp_path)
    ws.ingest_links(write(tmp_path / "first.csv", HEADER + "video,v1,music,m1\n"))
    body = (
        HEADER
        + "video,v2,music,m1\n"  # m1 already has a video account (stored)
        + "video,v3,music,m2\n"  # v3: two music accounts in this file
        + "video,v3,music,m3\n"
        + "music,m1,video,v1\n"  # the stored link again, either way round: a duplicate
    )
    s = ws.ingest_links(write(tmp_path / "second.csv", body))
    assert (s.accepted, s.quarantined, s.duplicates) == (0, 3, 1)
    assert s.reasons == {"conflicting link": 3}
    reasons = _reasons(ws)
    assert reasons[2] == (
        "account_b",
        "conflicting link: this music account is linked to two or more video accounts; "
        "a person has one account per platform",
    )
    assert reasons[3][0] == reasons[4][0] == "account_a"
    raw = json.loads(ws.quarantine().list(limit=100)[0]["raw"])
    assert raw == {
        "platform_a": "video",
        "account_a": "v2",
        "platform_b": "music",
        "account_b": "m1",
    }
    # the stored link stays; nothing the file contradicts itself on reaches the links
    assert ws.store.count("known_links") == 1


def test_accounts_that_exist_nowhere_are_counted(ws, tmp_path):
    _events(ws, tmp_path)
    body = HEADER + "video,v1,music,ghost\nvideo,nobody,books,b1\n"
    s = ws.ingest_links(write(tmp_path / "l.csv", body))
    assert (s.accepted, s.unknown_accounts) == (2, 3)
    ws.close()
    r = CliRunner().invoke(
        __import__("crossrec.cli", fromlist=["app"]).app,
        ["ingest-links", "--workspace", str(ws.root), "--json", str(tmp_path / "l.csv")],
    )
    assert r.exit_code == 0, r.output
    assert "unknown accounts" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["unknown_accounts"] == 3 and doc["duplicates"] == 2
