"""Tests of the cluster layer (planning is pure; one test starts a two-node Ray cluster)."""
