"""Ingest: read → validate → quarantine bad rows → pseudonymise → dedupe → store."""
