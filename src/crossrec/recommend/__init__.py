"""Cross-platform recommendation: blended components, tuned weights, a reason per item."""

from crossrec.recommend.service import Recommendation, Recommender

__all__ = ["Recommendation", "Recommender"]
