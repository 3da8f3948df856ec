"""Split one dataset into several platforms with known ground truth."""

from __future__ import annotations

from crossrec.datasets.perturb import perturb_title

__all__ = ["perturb_title"]
