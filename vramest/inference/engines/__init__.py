"""Serving engines: start-up memory accounting and speed profiles."""
