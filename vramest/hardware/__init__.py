"""Hardware layer: the GPU database and what this machine has."""
