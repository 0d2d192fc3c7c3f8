"""Benchmarks that print speed ratios measured in one process (``kd-gym bench <name>``): an env's
episode against the same work as a plain training loop, and an agent against its SB3 reference."""
