"""Benchmarks run by `make bench`: each reports a ratio to a baseline measured in the same run."""
