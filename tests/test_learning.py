"""A short real training on sklearn's digits: AGAD learns, and its contextual adversarial term
does what the paper claims."""

import statistics

import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, fit
from jaxad.data import load_split

# 2 x 25 epochs: run time, not compile time, dominates.
pytestmark = [pytest.mark.long, pytest.mark.optimized]

# Digit 8 is the hard class here: an untrained net scores it near chance.
CFG = ExperimentConfig(model=ModelConfig(width=0.25), train=TrainConfig(batch_size=32, epochs=25)).replace(
    **{"data.normal_class": 8})


@pytest.fixture(scope="module")
def runs():
    split = load_split(CFG.data)
    return {w: fit(CFG.replace(**{"loss.w_adcon": w}), split, progress=False) for w in (15.0, 0.0)}


def late(history: list[dict], metric: str) -> float:
    """The median of a training metric over the last 10 epochs. AGAD's training swings
    (docs/fidelity-study.md, section 5), and which epochs swing depends on float rounding, so on
    the CPU a run happens to meet: a claim about where training got to is not read off a few
    epochs. (On one machine the w_adcon = 15 run fell at epochs 21-23, reconstruction error
    0.29 -> 0.47, 0.96, 0.57, and recovered to 0.35: three of the last five epochs.)"""
    return statistics.median(h[metric] for h in history[-10:])


def test_training_reaches_clearly_better_than_chance_auroc(runs):
    history = runs[15.0].history
    assert history[0]["auroc"] < 75          # near chance before learning
    assert runs[15.0].final_auroc > 85       # clearly learnt (the generator chosen label-free)
    assert late(history, "g_contextual") < 0.6 * history[0]["g_contextual"]   # reconstructs better


def test_contextual_adversarial_term_makes_g_fail_on_its_own_reconstructions(runs):
    # |x_hat - G(x_hat)| grows when maximised (w_adcon = 15) and stays small without it.
    with_term = late(runs[15.0].history, "g_contextual_adversarial")
    without = late(runs[0.0].history, "g_contextual_adversarial")
    assert with_term > 4 * without, (with_term, without)
    assert with_term > runs[15.0].history[0]["g_contextual_adversarial"]
