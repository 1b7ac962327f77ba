"""Scheduling logic: cache, queue, framework and plugins (no I/O)."""
