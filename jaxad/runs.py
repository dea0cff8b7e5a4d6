"""Train AGAD models, score images, save and load runs: the API for research code, in one place.

The epoch loop is ``jaxad.loop`` (``fit``, ``fit_many``, ``score``, ``train_and_evaluate``)
and the run directory ``jaxad.rundir`` (``load_run``, the files a run writes and the checks on
them); this module names both, as the documentation does (``jaxad.runs.X``). ``jaxad.fit`` is
the function and ``jaxad.runs`` the module, so ``import jaxad.runs`` never reaches a function
of the same name. Patch a name where it is used (``jaxad.loop.X``), not here.

    from jaxad import ExperimentConfig, fit, score, load_run
    result = fit(ExperimentConfig(), run_dir="runs/digits-0")   # digits, normal class 0
    scores = score(result.state, images)                         # ||x - G(x)||_2 per image
    state, config = load_run("runs/digits-0", epoch="selected")  # the label-free selected epoch's
"""

from __future__ import annotations

from jaxad.loop import (EPOCH_EXTREMES, MODELS_AT_ONCE, NORMAL_ERROR_IMAGES, SCORE_BATCH, EpochInputs,  # noqa: F401
                        Layout, RunResult, batch_statistics_aurocs, epoch_inputs, epoch_seconds, fit, fit_many,
                        jitted_train_step, normal_first, one_model_layout, progress_postfix, recalibrated, score,
                        scoring_candidates, train_and_evaluate, training_evidence)
from jaxad.rundir import (BATCH_STATISTICS_AUROCS, FINGERPRINTED, ConfigMismatchError,  # noqa: F401
                          DataMismatchError, array_fingerprint, as_scored, check_run_data, check_run_dir,
                          config_differences, is_complete, load_run, load_training_state, open_run,
                          read_run_config, run_config_differences, save_final_scores, split_fingerprint,
                          write_result, writing)
