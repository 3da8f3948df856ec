"""The matcher's view: relative z-scores within candidate lists, leakage masking."""

from __future__ import annotations

import numpy as np

from crossrec.link.features import LEAKY, SEQUENCE, _group_ids, _z_in_groups, matcher_view


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
