"""Benchmarks (``make bench``): the splitter core against the physical limit and a pandas peer,
and the per-message costs of the uploader and the callback. Results: ``docs/performance.md``."""
