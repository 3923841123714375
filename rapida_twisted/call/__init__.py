"""call layer."""
