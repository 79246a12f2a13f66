"""Tracing: run the real model code on fake tensors and count live bytes."""
