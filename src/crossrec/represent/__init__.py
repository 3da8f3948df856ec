"""Representations of items and accounts: text encoder, CF, sequence encoder, profiles.

Submodules import their heavy dependencies (torch, faiss, sentence-transformers) inside the
functions that need them, so importing this package stays cheap.
"""
