"""The matcher's view: relative z-scores within candidate lists, leakage masking."""

from __future__ import annotations

import numpy as np

from crossrec.link.features import LEAKY, SEQUENCE, _group_z, matcher_view


class _Ctx:
    """The two attributes matcher_view reads: platforms and each row's platform code."""

    def __init__(self, codes):
        self.platforms = ["p", "q"]
        self.platform_code = np.asarray(codes, dtype=np.int32)


def test_group_z_known_answer():
    keys = np.array([1, 1, 1, 2, 2, 3])
    values = np.array([1.0, 2.0, 3.0, 5.0, np.nan, 7.0])
    z = _group_z(keys, values)
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
