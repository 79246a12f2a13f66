"""Inference layer: one replica's memory, placement on GPUs, speed, engines."""
