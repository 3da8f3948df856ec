"""``crossrec report``: one self-contained HTML page about a workspace.

Sections: the data in the store, the linkage evaluation (score distributions,
precision-recall curve, calibration, metrics beside baselines), the recommendation
evaluations, a 2-D map of the account vectors and the current model's metadata. A section
whose data is missing says which command produces it.
"""

from __future__ import annotations

from crossrec.report.build import build_report

__all__ = ["build_report"]
