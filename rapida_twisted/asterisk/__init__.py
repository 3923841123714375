"""asterisk layer."""
