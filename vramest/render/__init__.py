"""Rendering: terminal text, the HTML report, charts."""
