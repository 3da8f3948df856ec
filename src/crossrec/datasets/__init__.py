"""Datasets for crossrec: public-format loaders, a platform-split builder, a synthetic generator.

Submodules (import the one you need; this package imports nothing heavy):

- :mod:`crossrec.datasets.canonical` -- the canonical in-memory tables and file writers;
- :mod:`crossrec.datasets.movielens`, :mod:`crossrec.datasets.douban` -- real data loaders;
- :mod:`crossrec.datasets.split` -- one dataset into several platforms with ground truth;
- :mod:`crossrec.datasets.perturb` -- title, rating-scale and clock differences;
- :mod:`crossrec.datasets.synthetic` -- a generator for scale, streamed to Parquet or CSV.
"""
