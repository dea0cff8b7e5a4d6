"""The label-free choices (``jaxad.selection``): which generator scores an epoch and which
epoch is selected, from training evidence only."""

import pytest

from jaxad.selection import choose_scoring_generator, label_free_key, select_epoch


def evidence(normal_score, train_auroc=None):
    record = {"train_normal_score": normal_score}
    return record if train_auroc is None else {**record, "train_auroc": train_auroc}


def test_without_training_anomalies_the_generator_that_reconstructs_training_normals_better_scores():
    assert choose_scoring_generator({"average": evidence(5.0), "live": evidence(4.0)}, pick=True) == "live"
    assert choose_scoring_generator({"average": evidence(4.0), "live": evidence(5.0)}, pick=True) == "average"
    assert choose_scoring_generator({"average": evidence(4.0), "live": evidence(4.0)}, pick=True) == "average"  # tie
    assert choose_scoring_generator({"average": evidence(5.0), "live": evidence(4.0)}, pick=False) == "average"
    assert choose_scoring_generator({"live": evidence(4.0)}, pick=True) == "live"  # no average kept


def test_with_training_anomalies_telling_them_apart_comes_before_the_normal_error():
    # The fall of docs/fidelity-study.md, 6.4: a generator that reconstructs the anomalies too
    # has the lowest error on normals, and tells the training anomalies apart worse.
    fallen, sound = evidence(18.4, train_auroc=93.0), evidence(23.0, train_auroc=99.9)
    assert choose_scoring_generator({"average": sound, "live": fallen}, pick=True) == "average"
    assert choose_scoring_generator({"average": fallen, "live": sound}, pick=True) == "live"
    # On equal separation the normal error decides, as at gamma 0.
    assert choose_scoring_generator({"average": evidence(5.0, 100.0), "live": evidence(4.0, 100.0)},
                                    pick=True) == "live"
    assert label_free_key(evidence(4.0, 0.0)) > label_free_key(evidence(1.0))  # recorded evidence ranks first


def test_the_selected_epoch_is_the_best_by_the_same_rule_the_first_on_a_tie():
    assert select_epoch([evidence(9.0), evidence(5.0), evidence(7.0), evidence(5.0)]) == 2
    # gamma > 0: epoch 3 has the lowest normal error, but epoch 2 tells the anomalies apart best.
    assert select_epoch([evidence(9.0, 98.0), evidence(8.0, 99.5), evidence(6.0, 90.0)]) == 2
    assert select_epoch([evidence(9.0, 99.5), evidence(8.0, 99.5)]) == 2
    with pytest.raises(ValueError, match="at least one"):
        select_epoch([])
