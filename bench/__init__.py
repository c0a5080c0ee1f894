"""Benchmarks that print figures and comparisons (not tests). Each public module is a script:
``python bench/<name>.py`` or ``python -m bench.<name>`` from the repository root; the private
``_*.py`` modules are what they share, and the processes they start."""
