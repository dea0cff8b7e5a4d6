"""The fidelity study's scripts: probes, replays and tables read from finished runs.

Each module is a program, run from the repository's root as ``python -m studies.NAME``;
README.md says what each measures and which results it made. They import ``jaxad`` only.
"""
