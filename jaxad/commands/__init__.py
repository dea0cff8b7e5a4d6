"""The command-line programs: ``jaxad-run`` (``experiments/run.py``) and ``jaxad-score``
(``experiments/score.py``). Each module's ``main(argv)`` returns the exit status."""
