"""vramest: how much GPU memory an LLM needs and how fast it runs."""

from vramest.capacity import CheckReport, check
from vramest.errors import InputError
from vramest.estimator import Estimate, estimate

__all__ = ["CheckReport", "Estimate", "InputError", "check", "estimate"]
