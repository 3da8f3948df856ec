"""The operating point: partner-share estimate, certified threshold, link probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec.link.operating import Units, choose_operating_point, estimate_partner_share


@pytest.mark.parametrize("pi", [0.1, 0.4, 0.8])
def test_partner_share_is_recovered_from_the_best_scores(pi: float) -> None:
    rng = np.random.default_rng(0)
    present = rng.beta(6, 2, 3000)
    absent = rng.beta(2, 6, 3000)
    n = 4000
    has = rng.random(n) < pi
    population = np.where(has, rng.beta(6, 2, n), rng.beta(2, 6, n))
    assert estimate_partner_share(population, present, absent) == pytest.approx(pi, abs=0.05)


def _world(
    n_units: int, n_pop: int, pi: float, seed: int
) -> tuple[Units, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns the units, the population pairs and scores, platform codes and the keys
    ``a * n + b`` of the true population pairs."""
    """Two platforms; each known-linked account has its partner and 5 other candidates; the
    partner scores high, others low. The population has the same shape, a share ``pi`` of its
    accounts holding a partner."""
    rng = np.random.default_rng(seed)
    src, dst, score, label, fold = [], [], [], [], []
    nxt = 0
    for u in range(n_units):
        s = nxt
        p = nxt + 1
        nxt += 2
        src.append(s)
        dst.append(p)
        score.append(rng.beta(8, 2))
        label.append(True)
        fold.append(u % 5)
        for _ in range(5):
            src.append(s)
            dst.append(nxt)
            nxt += 1
            score.append(rng.beta(2, 8))
            label.append(False)
            fold.append(u % 5)
    pa, pb, ps, truth_a, truth_b = [], [], [], [], []
    for _ in range(n_pop):
        s = nxt
        nxt += 1
        if rng.random() < pi:
            p = nxt
            nxt += 1
            pa.append(s)
            pb.append(p)
            ps.append(rng.beta(8, 2))
            truth_a.append(s)
            truth_b.append(p)
        for _ in range(5):
            pa.append(s)
            pb.append(nxt)
            nxt += 1
            ps.append(rng.beta(2, 8))
    n_rows = len(src)
    units = Units(
        np.array(src),
        np.array(dst),
        np.array(score),
        np.array(label),
        np.ones(n_rows, dtype=bool),
        np.array(fold),
    )
    # platform 0: sources, platform 1: candidates (codes by row parity is not needed here)
    code = np.zeros(nxt, dtype=np.int64)
    code[np.array(dst)] = 1
    code[np.array(pb)] = 1
    truth = np.array(truth_a) * nxt + np.array(truth_b)
    return units, np.array(pa), np.array(pb), np.array(ps), code, truth


def test_threshold_is_certified_with_enough_links_and_the_estimate_holds() -> None:
    units, pa, pb, ps, code, truth = _world(300, 2000, 0.5, seed=1)
    point = choose_operating_point(units, pa, pb, ps, code, 0.95, n_known_links=300)
    assert point.reason is None and point.threshold is not None
    # every account counts, candidates seen only from the other side too: here most of those
    # have no partner, so the share is well under the sources' 0.5
    assert 0.0 < point.partner_share < 0.5
    assert point.precision is not None and point.precision >= 0.95
    # the population's own precision at that threshold, counted against the truth
    from crossrec.link.assign import one_to_one

    kept = one_to_one(pa, pb, ps, code[pa], code[pb]) & (ps >= point.threshold)
    is_true = np.isin(pa * code.size + pb, truth)
    assert kept.sum() > 100
    assert is_true[kept].mean() >= 0.93
    # link probabilities: a map, increasing, in [0, 1], and measured out of fold
    assert point.link_x.size and (np.diff(point.link_y) >= 0).all()
    assert point.brier is not None and point.brier < 0.1
    assert point.calibration_error is not None and point.calibration_error < 0.1


def test_too_few_known_links_certify_nothing_and_say_how_many_would() -> None:
    units, pa, pb, ps, code, _ = _world(12, 300, 0.5, seed=2)
    point = choose_operating_point(units, pa, pb, ps, code, 0.95, n_known_links=12)
    assert point.threshold is None
    assert point.reason is not None and "below target 0.950" in point.reason
    assert point.known_links_needed is not None and point.known_links_needed > 12
    # the numbers agree with the words: the estimate quoted is the one that fell short
    assert f"{point.precision:.3f}" in point.reason
