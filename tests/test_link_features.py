"""The matcher's view: relative z-scores within candidate lists, leakage masking."""

from __future__ import annotations

import numpy as np

from crossrec.link.features import (
    LEAKY,
    RELATIVE,
    SEQUENCE,
    _group_ids,
    _z_in_groups,
    matcher_view,
)


class _Ctx:
    """The two attributes matcher_view reads: platforms and each row's platform code."""

    def __init__(self, codes):
        self.platforms = ["p", "q"]
        self.platform_code = np.asarray(codes, dtype=np.int32)


def test_group_z_known_answer():
    keys = np.array([1, 1, 1, 2, 2, 3])
    values = np.array([1.0, 2.0, 3.0, 5.0, np.nan, 7.0])
    z = _z_in_groups(*_group_ids(keys), values)
    np.testing.assert_allclose(z[:3], [-1.224745, 0.0, 1.224745], atol=1e-5)
    assert z[3] == 0.0  # a lone value in its group
    assert np.isnan(z[4])
    assert z[5] == 0.0


def test_matcher_view_drops_leaky_signals_and_masks_sequence_on_anchor_pairs():
    ctx = _Ctx([0, 0, 1, 1])  # rows 0,1 on p; rows 2,3 on q
    names = ["seq_cos", "text_cos", "rr_ab_fused", "log_events_gap"]
    a = np.array([0, 0, 1, 1])
    b = np.array([2, 3, 2, 3])
    X = np.array(
        [[0.9, 0.8, 1.0, 0.1], [0.1, 0.2, 0.5, 1.0], [0.3, 0.4, 0.5, 2.0], [0.7, 0.6, 1.0, 0.2]],
        dtype=np.float32,
    )
    anchors = np.array([True, False, True, False])  # rows 0 and 2 were encoder anchors
    Xm, m_names = matcher_view(ctx, a, b, X, names, anchors)
    assert not set(m_names) & LEAKY
    seq = m_names.index("seq_cos")
    # pairs touching an anchor row know nothing of the sequence space
    assert np.isnan(Xm[[0, 1, 2], seq]).all() and Xm[3, seq] == np.float32(0.7)
    assert "z_hi_text_cos" in m_names and "z_lo_text_cos" in m_names
    # within a's list (rows 0: pairs 0,1), the higher text similarity has the higher z
    z_hi = Xm[:, m_names.index("z_hi_text_cos")]
    assert z_hi[0] > z_hi[1]
    # a smaller activity gap counts as more alike
    gap = Xm[:, m_names.index("z_hi_log_events_gap")]
    assert gap[0] > gap[1]
    assert set(SEQUENCE) >= {"seq_cos"}
    # the input is left untouched
    assert X[0, 0] == np.float32(0.9)


class _LinkedCtx(_Ctx):
    """Three platforms, rows 0-1 on p, 2-3 on q, 4 on r; known links 0-2 and 2-4."""

    def __init__(self):
        super().__init__([0, 0, 1, 1, 2])
        self.platforms = ["p", "q", "r"]
        self.link_a = np.array([0, 2])
        self.link_b = np.array([2, 4])

    def __len__(self):
        return 5


def test_training_rows_label_each_side_by_its_known_partner_on_that_platform():
    from crossrec.link.pipeline import training_rows

    ctx = _LinkedCtx()
    # candidate pairs: 0-2 (the link), 0-3, 1-2, 1-3, 3-4
    a = np.array([0, 0, 1, 1, 3])
    b = np.array([2, 3, 2, 3, 4])
    t = training_rows(ctx, a, b)
    got = sorted(zip(t.src.tolist(), t.dst.tolist(), t.pair.tolist(), t.y.tolist(), strict=True))
    # from a's side: 0 has partner 2 on q (pairs 0-2 true, 0-3 false); 1 and 3 have none.
    # from b's side: 2 has partner 0 on p (2-0 true, 2-1 false); 4 has partner 2 on q, and
    # its candidate on q is 3 (false); 3 has no partner.
    assert got == [
        (0, 2, 0, True),
        (0, 3, 1, False),
        (2, 0, 0, True),
        (2, 1, 2, False),
        (4, 3, 4, False),
    ]


# -- the kernels give the numbers of the numpy code they replaced ------------------------------
def _z_bincount(inv, n_groups, values):  # type: ignore[no-untyped-def]
    """The replaced numpy code: three bincounts over the non-NaN values."""
    out = np.full(values.shape, np.nan, dtype=np.float32)
    ok = ~np.isnan(values)
    if not ok.any():
        return out
    g, v = inv[ok], values[ok].astype(np.float64)
    n = np.maximum(np.bincount(g, minlength=n_groups), 1).astype(np.float64)
    mean = np.bincount(g, weights=v, minlength=n_groups) / n
    var = np.bincount(g, weights=v * v, minlength=n_groups) / n - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    z = np.where(std[g] > 1e-9, (v - mean[g]) / np.maximum(std[g], 1e-9), 0.0)
    out[ok] = z.astype(np.float32)
    return out


def _matcher_view_numpy(ctx, a, b, X, names, anchors):  # type: ignore[no-untyped-def]
    """The replaced matcher_view: copy, mask, z-scores by np.unique groups, hstack."""
    X = X.copy()
    seen = anchors[a] | anchors[b]
    for name in SEQUENCE:
        if name in names:
            X[seen, names.index(name)] = np.nan
    keep = [j for j, n in enumerate(names) if n not in LEAKY]
    groups = []
    for own, other in ((a, b), (b, a)):
        uniq, inv = np.unique(
            own.astype(np.int64) * 2 + ctx.platform_code[other], return_inverse=True
        )
        groups.append((inv, len(uniq)))
    cols, rel = [], []
    for name in RELATIVE:
        if name not in names:
            continue
        za, zb = (_z_bincount(inv, n, X[:, names.index(name)]) for inv, n in groups)
        if name == "log_events_gap":
            za, zb = -za, -zb
        cols += [np.fmax(za, zb), np.fmin(za, zb)]
        rel += [f"z_hi_{name}", f"z_lo_{name}"]
    return np.hstack([X[:, keep], np.stack(cols, axis=1)]), [names[j] for j in keep] + rel


def test_group_z_equals_the_bincount_code_on_random_data_with_nans() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 500, 20_000)
    values = rng.normal(size=20_000).astype(np.float32)
    values[rng.random(20_000) < 0.2] = np.nan
    values[keys == 3] = 1.5  # a group of equal values: z 0
    for k in (keys, np.sort(keys)):  # unsorted keys, and sorted ones (no sort needed)
        inv, n = _group_ids(k)
        np.testing.assert_array_equal(_z_in_groups(inv, n, values), _z_bincount(inv, n, values))


def test_matcher_view_equals_the_numpy_code_on_random_data_with_nans() -> None:
    rng = np.random.default_rng(1)
    ctx = _Ctx(np.repeat([0, 1], 300))
    a = np.sort(rng.integers(0, 300, 5000))
    b = rng.integers(300, 600, 5000)
    names = ["seq_cos", "text_cos", "rr_ab_fused", "log_events_gap", "rhythm_cos", "mutual_best"]
    X = rng.normal(size=(5000, len(names))).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    anchors = rng.random(600) < 0.3
    got, got_names = matcher_view(ctx, a, b, X, names, anchors)
    want, want_names = _matcher_view_numpy(ctx, a, b, X, names, anchors)
    assert got_names == want_names
    np.testing.assert_array_equal(got, want)
    assert not np.isnan(X).all(axis=0).any()  # the input is left as it was (NaNs as drawn)
