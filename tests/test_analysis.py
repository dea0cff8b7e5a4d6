"""Finished runs' histories read under the label-free choices: what a study reports for a run."""

from jaxad import analysis


def epoch(auroc, live, score, live_score, **extra):
    return {"auroc": auroc, "auroc_live_generator": live, "train_normal_score": score,
            "train_normal_score_live_generator": live_score, "g_contextual_adversarial": 1.4, **extra}


def test_each_epoch_takes_the_generator_with_the_lower_error_on_training_normals():
    history = [epoch(90.0, 80.0, 7.0, 9.0),    # the average reconstructs normals better
               epoch(60.0, 95.0, 12.0, 10.0),  # the live G does
               epoch(70.0, 20.0, 8.0, 8.0)]    # a tie keeps the average
    assert analysis.label_free_choice(history) == [90.0, 95.0, 70.0]
    # Runs that did not record both errors have no choice to make.
    assert analysis.label_free_choice([{"auroc": 90.0, "g_contextual_adversarial": 1.0}]) == []


def test_the_selection_reports_at_each_epoch_the_lowest_normal_error_so_far():
    history = [epoch(70.0, 60.0, 9.0, 10.0),   # epoch 1: the average (9.0)
               epoch(90.0, 20.0, 6.0, 7.0),    # epoch 2: the average (6.0)
               epoch(30.0, 25.0, 20.0, 25.0),  # a collapse: both errors jump, epoch 2 stays selected
               epoch(80.0, 97.0, 6.5, 5.0)]    # the live G beats epoch 2
    assert analysis.label_free_selection(history) == ([70.0, 90.0, 90.0, 97.0], [1, 2, 2, 4])
    assert analysis.label_free_selection([{"auroc": 90.0}]) == ([], [])


def test_runs_that_picked_their_generator_are_read_the_same_way():
    # Written with pick_generator: "auroc" is the chosen one's, and each generator's is recorded.
    picked = {"auroc": 95.0, "auroc_average_generator": 80.0, "auroc_live_generator": 95.0,
              "train_normal_score": 8.0, "train_normal_score_average_generator": 9.0,
              "train_normal_score_live_generator": 8.0, "scoring_generator": "live", "g_contextual_adversarial": 1.4}
    assert analysis.label_free_choice([picked]) == [95.0]
    assert analysis.average_generator_auroc(picked) == 80.0


def test_with_training_anomalies_the_choice_reads_their_separation_first():
    # gamma > 0: the live G reconstructs normals better (8.0 < 9.0) but tells the training
    # anomalies apart worse (90.0 < 99.0), so the choice and the selection take the average.
    fallen_live = epoch(97.0, 60.0, 9.0, 8.0, train_auroc=99.0, train_auroc_average_generator=99.0,
                        train_normal_score_average_generator=9.0, train_auroc_live_generator=90.0)
    sound = epoch(96.0, 96.0, 10.0, 10.0, train_auroc=98.0, train_auroc_average_generator=98.0,
                  train_normal_score_average_generator=10.0, train_auroc_live_generator=98.0)
    assert analysis.label_free_choice([fallen_live]) == [97.0]
    assert analysis.label_free_selection([sound, fallen_live]) == ([96.0, 97.0], [1, 2])
