"""Tests of the pure custody package (no database, no network)."""
