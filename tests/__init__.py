"""rapida-twisted tests."""
