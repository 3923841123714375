"""assistants layer."""
