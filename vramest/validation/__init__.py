"""Scoring against published measurements (make accuracy)."""
