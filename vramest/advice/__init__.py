"""Advice layer: size tiers, hardware recommendations, cost."""
