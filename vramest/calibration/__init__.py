"""Calibration: measure real models on this machine, fit the estimator's constants, and use
the resulting profile in estimates.

`profile` (loading, validating, applying a profile) and `fit`/`report`/`store` are torch-free;
`device`, `models` and `measure` import torch and transformers inside their functions, and
`device` is the only module with CUDA-specific calls.
"""
