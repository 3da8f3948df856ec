"""Evaluation: linkage metrics (rank of the truth, Hits@k, MRR, precision/recall/F1) and
recommendation metrics (Recall@k, NDCG@k, HR@k), computed on arrays for many queries at once."""
