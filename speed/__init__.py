"""Speed measurements: jaxad's train step and scoring timed against a PyTorch reference.

Run from the repository's root as ``python -m speed.bench``; README.md has the commands.
"""
