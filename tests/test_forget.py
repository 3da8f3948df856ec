"""crossrec forget: an erased account or person leaves no trace in any file of the workspace.

A real workspace (a few hundred MovieLens ratings split over two platforms, with known links,
shared e-mail identifiers that make asserted links, and bad rows in the quarantine) is
trained and linked; one account and one person are forgotten through the CLI. Every file is
then read as bytes, zip members decompressed, and searched for the erased pseudonyms (UTF-8
and numpy's UTF-32) and the erased raw ids.
"""

from __future__ import annotations

import csv
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from crossrec.cli import app
from tests.conftest import MOVIELENS

pytestmark = pytest.mark.skipif(not MOVIELENS.is_dir(), reason="MovieLens data not available")

PLATFORMS = ("video", "music")


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _world(out: Path) -> dict[str, list[dict[str, str]]]:
    from crossrec.datasets.canonical import Dataset
    from crossrec.datasets.movielens import load_movielens
    from crossrec.datasets.split import SplitConfig, build_split

    ds = load_movielens(MOVIELENS)
    users = ds.events["account"].unique(maintain_order=True)[:60]
    events = (
        ds.events.filter(pl.col("account").is_in(users.implode()))
        .group_by("account", maintain_order=True)
        .head(8)
    )
    items = ds.items.filter(pl.col("item").is_in(events["item"].unique().implode()))
    build_split(
        Dataset("ml-few", events, items),
        out,
        SplitConfig(
            platforms=2, names=PLATFORMS, single_fraction=0.2, anchor_fraction=0.15, seed=1
        ),
    )
    return {
        name: list(csv.DictReader((out / f"{name}.csv").open(encoding="utf-8")))
        for name in ("known_links", "truth_links")
    }


def _add_email_and_bad_rows(path: Path, emails: dict[str, str], bad: list[str]) -> None:
    """An ``email`` column (shared by truth pairs: identifier links) and one row with an
    unparsable value per account of ``bad`` (quarantined with its raw id)."""
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    fields = [*rows[0].keys(), "email"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "email": emails.get(r["account"], "")})
        for account in bad:
            w.writerow({**rows[0], "account": account, "value": "not-a-number", "email": ""})


def _profiles(ws, version: str | None = None):
    from crossrec.models import ModelRegistry
    from crossrec.represent.profiles import AccountProfiles

    return AccountProfiles.load(ModelRegistry(ws.models_dir).path(version) / "accounts")


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory):
    from crossrec.workspace import Workspace

    tmp = tmp_path_factory.mktemp("forget")
    links = _world(tmp / "world")
    known, truth = links["known_links"], links["truth_links"]
    # the account forgotten alone: one side of a truth pair linked by a shared e-mail
    alone = truth[0]
    pairs = truth[:4]  # four e-mail linked pairs; the first is forgotten
    emails = {
        r[f"account_{s}"]: f"person{i}@example.org" for i, r in enumerate(pairs) for s in "ab"
    }
    person = known[0]  # the person forgotten whole (a known link)
    control = known[1]  # stays: the scan must find it
    bad = {
        p: [
            r[f"account_{s}"]
            for r in (alone, person, control)
            for s in "ab"
            if r[f"platform_{s}"] == p
        ]
        for p in PLATFORMS
    }
    for p in PLATFORMS:
        _add_email_and_bad_rows(tmp / "world" / p / "events.csv", emails, bad[p])

    root = tmp / "ws"
    Workspace.init(root).close()
    cfg = root / "crossrec.toml"
    text = cfg.read_text()
    for old, new in (
        ('encoder = "minilm"', 'encoder = "static"'),
        ("personal_columns = []", 'personal_columns = ["email"]'),
        ("epochs = 20", "epochs = 1"),
        ("dim = 64", "dim = 16"),
        ("factors = 64", "factors = 8"),
        ("cf_iterations = 15", "cf_iterations = 3"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    ws = Workspace(root)
    for p in PLATFORMS:
        ws.ingest_events(p, tmp / "world" / p / "events.csv", items=tmp / "world" / p / "items.csv")
    ws.ingest_links(tmp / "world" / "known_links.csv")
    ws.close()
    assert cli("train", "--workspace", str(root))[0] == 0
    assert cli("link", "--workspace", str(root))[0] == 0

    ws = Workspace(root)
    a_key = (alone["platform_a"], alone["account_a"])
    b_key = (alone["platform_b"], alone["account_b"])
    person_keys = [
        (person["platform_a"], person["account_a"]),
        (person["platform_b"], person["account_b"]),
    ]
    control_keys = [
        (control["platform_a"], control["account_a"]),
        (control["platform_b"], control["account_b"]),
    ]
    pseud = {k: ws.account_id(*k) for k in [a_key, b_key, *person_keys, *control_keys]}
    profiles = _profiles(ws)
    vectors = {k: profiles.sequence[profiles.row(k[0], pseud[k])] for k in (a_key, *person_keys)}
    before = SimpleNamespace(
        links=ws.store.read("links").num_rows,
        identifiers=ws.store.read("account_identifiers").num_rows,
        quarantined=ws.quarantine().count(),
        control_links={
            k: cli(
                "links", "--workspace", str(root), "--platform", k[0], "--account", k[1], "--json"
            )[1]
            for k in control_keys
        },
        partner_links=json.loads(
            cli(
                "links",
                "--workspace",
                str(root),
                "--platform",
                b_key[0],
                "--account",
                b_key[1],
                "--json",
            )[1]
        ),
    )
    ws.close()

    code, out, err = cli(
        "forget", "--workspace", str(root), "--platform", a_key[0], "--account", a_key[1], "--json"
    )
    assert code == 0, err
    one = json.loads(out)
    code, out, err = cli(
        "forget",
        "--workspace",
        str(root),
        "--platform",
        person_keys[1][0],
        "--account",
        person_keys[1][1],
        "--person",
        "--json",
    )
    assert code == 0, err
    whole = json.loads(out)
    yield SimpleNamespace(
        root=root,
        alone=a_key,
        partner=b_key,
        person=person_keys,
        control=control_keys,
        pseud=pseud,
        vectors=vectors,
        before=before,
        one=one,
        whole=whole,
        erased=[a_key, *person_keys],
    )


# -- the scan -------------------------------------------------------------------------------------
def _contents(path: Path) -> list[bytes]:
    """The file's bytes and, for a zip file (.npz), each member decompressed; for Parquet,
    its string columns (its pages are compressed)."""
    data = path.read_bytes()
    out = [data]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            out += [z.read(name) for name in z.namelist()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for col in table.columns:
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                out.append("\n".join(str(v) for v in col.to_pylist()).encode())
    return out


def scan(root: Path, strings: list[str]) -> dict[str, list[str]]:
    """string → files under ``root`` holding it (as UTF-8 or UTF-32-LE)."""
    found: dict[str, list[str]] = {s: [] for s in strings}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        blobs = _contents(path)
        for s in strings:
            needles = (s.encode("utf-8"), s.encode("utf-32-le"))
            if any(n in blob for blob in blobs for n in needles):
                found[s].append(path.relative_to(root).as_posix())
    return found


# -- tests ----------------------------------------------------------------------------------------
def test_forget_returns_the_erased_accounts_and_when(forgotten):
    from crossrec.workspace import Workspace

    f = forgotten
    assert f.one["accounts"] == [[f.alone[0], f.pseud[f.alone]]]
    assert sorted(map(tuple, f.whole["accounts"])) == sorted((k[0], f.pseud[k]) for k in f.person)
    for doc in (f.one, f.whole):
        when = datetime.fromisoformat(doc["deleted_until"])
        assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - when).total_seconds()) < 600
        assert doc["leftovers"] == []
    removed = f.one["removed"]
    # the e-mail linked account had events, an identifier, an asserted link and a person
    assert removed["store"]["events"] > 0
    assert removed["store"]["account_identifiers"] == 1
    assert removed["store"]["links"] >= 1
    assert removed["quarantine"] == 1
    assert removed["models"]["v0001"]["accounts"] == 1
    # the person's other account had a bad row too: found though only its pseudonym was known
    assert f.whole["removed"]["quarantine"] == 2
    with Workspace(f.root) as ws:
        assert ws.quarantine().count() == f.before.quarantined - 3
        assert ws.store.read("links").num_rows < f.before.links
        assert ws.store.read("account_identifiers").num_rows == f.before.identifiers - 1


def test_links_says_no_account_for_the_erased_and_others_are_unaffected(forgotten):
    f = forgotten
    for platform, raw in f.erased:
        code, out, err = cli(
            "links", "--workspace", str(f.root), "--platform", platform, "--account", raw
        )
        assert code == 4
        assert "no account" in err and len(err.strip().splitlines()) == 1
    for key in f.control:
        code, out, _ = cli(
            "links", "--workspace", str(f.root), "--platform", key[0], "--account", key[1], "--json"
        )
        assert code == 0 and out == f.before.control_links[key]
    # the partner linked only through the erased account stays, unlinked now
    code, out, _ = cli(
        "links",
        "--workspace",
        str(f.root),
        "--platform",
        f.partner[0],
        "--account",
        f.partner[1],
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert f.before.partner_links["person"] is not None
    assert doc["person"] is None and doc["links"] == []
    # forgetting again: the account is gone
    code, _, err = cli(
        "forget", "--workspace", str(f.root), "--platform", f.alone[0], "--account", f.alone[1]
    )
    assert code == 4 and "no account" in err


def test_no_file_of_the_workspace_holds_an_erased_pseudonym_or_raw_id(forgotten):
    f = forgotten
    names = [f.pseud[k] for k in f.erased]
    raws = [raw for _, raw in f.erased]
    kept_names = [f.pseud[k] for k in f.control]
    kept_raws = [raw for _, raw in f.control]
    found = scan(f.root, names + raws + kept_names + kept_raws)
    for s in names + raws:
        assert found[s] == [], (s, found[s])
    # the same scan sees the accounts that stay: in the store, the profiles, the CF maps
    # (numpy UTF-32) and, by raw id, in the quarantine
    for s in kept_names:
        assert "crossrec.duckdb" in found[s]
        assert "models/v0001/accounts/accounts.npz" in found[s]
        assert any(p.startswith("models/v0001/cf/") for p in found[s])
    for s in kept_raws:
        assert found[s] == ["quarantine.duckdb"]
    assert not list(f.root.glob("*.wal"))


def test_index_files_keep_no_erased_vector_and_rows_stay_consistent(forgotten):
    from crossrec.index import load_index
    from crossrec.workspace import Workspace

    f = forgotten
    with Workspace(f.root) as ws:
        profiles = _profiles(ws, "v0001")
        assert all(profiles.row(k[0], f.pseud[k]) is None for k in f.erased)
        control = [profiles.row(k[0], f.pseud[k]) for k in f.control]
        assert all(r is not None for r in control)
        model = ws.models_dir / "v0001"
        seen_control = 0
        for directory in sorted((model / "index" / "sequence").iterdir()):
            index = load_index(directory)
            stored = index._faiss.reconstruct_n(0, index._faiss.ntotal)
            assert len(index) == index._faiss.ntotal  # compacted: nothing merely masked
            for vector in f.vectors.values():
                assert (stored @ vector).max() < 0.9999
            # ids are the renumbered profile rows: each id's vector is that row's vector
            for pos, row in enumerate(index.ids.tolist()):
                assert profiles.platform[row] == directory.name
                np.testing.assert_allclose(stored[pos], profiles.sequence[row], atol=1e-5)
                seen_control += row in control
        assert seen_control == 2
        cands = np.load(model / "link" / "candidates.npz")
        assert cands["a_rows"].max() < len(profiles) and cands["b_rows"].max() < len(profiles)


def test_train_and_link_work_after_forget(forgotten):
    from crossrec.workspace import Workspace

    f = forgotten
    code, out, err = cli("train", "--workspace", str(f.root), "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == "v0002"
    code, _, err = cli("link", "--workspace", str(f.root))
    assert code == 0, err
    with Workspace(f.root) as ws:
        profiles = _profiles(ws)
        assert all(profiles.row(k[0], f.pseud[k]) is None for k in f.erased)
        assert all(profiles.row(k[0], f.pseud[k]) is not None for k in f.control)


# -- the pieces, on tiny inputs with known answers -------------------------------------------------
def _tiny_profiles():
    from crossrec.represent.profiles import AccountProfiles

    n = 4
    return AccountProfiles(
        platform=np.array(["m", "m", "v", "v"]),
        account=np.array(["a1", "a2", "a3", "a4"]),
        cf=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
        sequence=np.eye(n, dtype=np.float32),
        text=np.zeros((n, 0), np.float32),
        has_text=np.zeros(n, bool),
        rhythm=np.zeros((n, 168), np.float32),
        has_rhythm=np.zeros(n, bool),
        active_days=np.arange(n, dtype=np.int32),
        events=np.arange(n, dtype=np.int32) + 1,
        top_categories=[["x"], ["y"], [], ["z"]],
    )


def test_profiles_erase_removes_rows_and_maps_the_rest():
    profiles = _tiny_profiles()
    erased, row_map = profiles.erase([("m", "a2"), ("v", "nobody")])
    assert row_map.tolist() == [0, -1, 1, 2]
    assert erased.account.tolist() == ["a1", "a3", "a4"]
    assert erased.top_categories == [["x"], [], ["z"]]
    np.testing.assert_array_equal(erased.sequence, profiles.sequence[[0, 2, 3]])
    assert erased.row("v", "a4") == 2 and erased.row("m", "a2") is None


def test_cf_rows_leave_matrix_and_factors_together():
    from crossrec.config import TrainConfig
    from crossrec.represent.cf import CFModel
    from crossrec.represent.interactions import build_interactions

    events = pa.table(
        {
            "account": ["a", "a", "b", "c", "c", "d"],
            "item": ["i1", "i2", "i2", "i1", "i3", "i3"],
            "event_type": ["view"] * 6,
            "value": pa.array([None] * 6, pa.float64()),
        }
    )
    inter = build_interactions(events, TrainConfig())
    model = CFModel("als", factors=2, iterations=2, seed=1).fit(inter.matrix)
    users = model.user_factors.copy()
    erased, rows = inter.erase(["b", "zz"])
    assert rows.tolist() == [1]
    assert erased.accounts.tolist() == ["a", "c", "d"]
    assert erased.account_index("c") == 1  # sorted lookups still work
    np.testing.assert_array_equal(erased.matrix.toarray(), inter.matrix.toarray()[[0, 2, 3]])
    model.erase(rows)
    np.testing.assert_array_equal(model.user_factors, users[[0, 2, 3]])
    assert model.seen(1).tolist() == [0, 2]  # c's items i1, i3


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_index_erase_compacts_relabels_and_saves_no_erased_vector(tmp_path, kind):
    from crossrec.index import ExactIndex, HNSWIndex, load_index

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = ExactIndex(8) if kind == "exact" else HNSWIndex(8, m=8)
    index.build(x, np.arange(40))
    row_map = np.arange(40) - (np.arange(40) > 5)
    row_map[5] = -1
    assert index.erase(np.array([5]), relabel=row_map) == 1
    assert len(index) == 39 and 5 in index.ids and 39 not in index.ids
    _, ids = index.search(x[6], 1)
    assert ids[0, 0] == 5  # old row 6 is row 5 now
    index.save(tmp_path)
    data = (tmp_path / "index.faiss").read_bytes()
    assert x[5].tobytes() not in data and x[6].tobytes() in data
    assert len(load_index(tmp_path)) == 39


def test_matcher_erase_drops_every_pair_of_the_account_and_reloads(tmp_path):
    from crossrec.link.matcher import Matcher

    rng = np.random.default_rng(3)
    n_groups, k = 300, 6
    groups = np.repeat(np.arange(n_groups), k)
    partners = n_groups + rng.integers(0, n_groups, size=groups.size)
    y = np.zeros(groups.size, bool)
    y[::k] = True
    X = rng.normal(size=(groups.size, 2)).astype(np.float32)
    X[y, 0] += 2.0
    matcher = Matcher("hgb").fit(X, y, groups, seed=1, partners=partners)
    gone = np.array([7, int(partners[0])])
    expected = int((np.isin(groups, gone) | np.isin(partners, gone)).sum())
    assert matcher.erase(gone) == expected
    matcher.save(tmp_path)
    again = Matcher.load(tmp_path)  # the refit reproduces the stored held-out scores
    z = np.load(tmp_path / "matcher.npz")
    assert not np.isin(z["groups"], gone).any() and not np.isin(z["partners"], gone).any()
    np.testing.assert_allclose(again.predict_proba(X[:50]), matcher.predict_proba(X[:50]))


def test_rebuild_database_drops_deleted_bytes_and_keeps_constraints(tmp_path):
    import duckdb

    from crossrec.errors import WorkspaceError
    from crossrec.store.duckdb import rebuild_database

    values = [f"a{i:04d}" + np.random.default_rng(i).bytes(16).hex() for i in range(500)]
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v VARCHAR NOT NULL)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    con.execute("FORCE CHECKPOINT")
    con.execute("DELETE FROM t WHERE k = 7")
    con.execute("FORCE CHECKPOINT")
    with pytest.raises(WorkspaceError, match="close it and retry"):
        rebuild_database(path)  # still open here
    con.close()
    rebuild_database(path)
    data = path.read_bytes()
    assert values[7].encode() not in data
    assert values[8].encode() in data and values[499].encode() in data
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(499,)]
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO t VALUES (1, 'x')")
    con.close()


def test_quarantine_tokens_cover_json_values_and_csv_fields():
    from crossrec.forget import _tokens

    assert set(_tokens('{"uid": " u42 ", "mid": "m1", "n": 3}')) >= {"u42", "m1", "3"}
    assert set(_tokens('u42,"m1",not-a-number')) >= {"u42", "m1", "not-a-number"}
    assert _tokens(None) == []


def test_a_run_cut_short_after_the_commit_is_finished_by_the_next(ws, tmp_path, monkeypatch):
    import crossrec.store.duckdb as duck
    from crossrec.errors import NotFoundError
    from crossrec.forget_models import find_traces

    events = tmp_path / "e.csv"
    events.write_text("account,item,value\nu1,m1,4\nu2,m1,3\nu2,m2,5\nu3,m2,1\n")
    ws.ingest_events("video", events)
    gone, kept = ws.account_id("video", "u2"), ws.account_id("video", "u3")
    real = duck.rebuild_database

    def crash(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(duck, "rebuild_database", crash)
    with pytest.raises(KeyboardInterrupt):
        ws.forget("video", "u2")
    monkeypatch.setattr(duck, "rebuild_database", real)
    ws.close()
    # committed: the account is gone from the tables; the next run rewrites the file first
    with pytest.raises(NotFoundError):
        ws.forget("video", "u2")
    assert find_traces(ws.root, [gone]) == []
    assert find_traces(ws.root, [kept]) == ["crossrec.duckdb"]
    assert ws.forget("video", "u3")["leftovers"] == []


def test_recover_puts_back_a_directory_moved_aside(tmp_path):
    from crossrec.forget_models import recover, rewrite_dir

    d = tmp_path / "v0001" / "accounts"
    d.mkdir(parents=True)
    (d / "a.txt").write_text("old")
    rewrite_dir(d, lambda tmp: (tmp / "a.txt").write_text("new"))
    assert (d / "a.txt").read_text() == "new" and sorted(p.name for p in d.parent.iterdir()) == [
        "accounts"
    ]
    # a crash between the two renames: the original moved aside, the copy half written
    (d.parent / ".accounts.forget-old").mkdir()
    (d.parent / ".accounts.forget-old" / "a.txt").write_text("new")
    (d.parent / ".accounts.forget-new").mkdir()
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    recover(tmp_path)
    assert sorted(p.name for p in d.parent.iterdir()) == ["accounts"]
    assert (d / "a.txt").read_text() == "new"


def test_reports_are_redacted_and_traces_found_in_compressed_numpy(tmp_path):
    from crossrec.forget_models import erase_reports, find_traces

    name, other = "a" + "1" * 32, "a" + "2" * 32
    reports = tmp_path / "reports"
    (reports / "evaluation").mkdir(parents=True)
    (reports / "evaluation" / "top.json").write_text(json.dumps({"accounts": [name, other]}))
    np.savez_compressed(reports / "vectors.npz", accounts=np.array([name, other]))
    (reports / "plain.txt").write_text("nobody here")
    assert find_traces(tmp_path, [name]) == ["reports/evaluation/top.json", "reports/vectors.npz"]
    changed = erase_reports(reports, [name])
    assert changed == ["evaluation/top.json", "vectors.npz"]
    assert json.loads((reports / "evaluation" / "top.json").read_text()) == {
        "accounts": ["erased", other]
    }
    assert not (reports / "vectors.npz").exists()  # not text: removed whole
    assert find_traces(tmp_path, [name]) == [] and find_traces(tmp_path, [other]) != []
