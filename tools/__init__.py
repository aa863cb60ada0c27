"""The `lrcn` command line."""
