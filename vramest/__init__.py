"""vramest."""
