"""results.md: the paper's figures stand beside ours over the same classes."""

import numpy as np

from jaxad import report


def _rows(classes, gamma=0.0, auroc=95.0):
    return [{"normal_class": c, "gamma": gamma, "seed": 0, "status": "complete", "final_auroc": auroc,
             "best_auroc": auroc, "selected_auroc": auroc} for c in classes]


def test_a_table_of_some_classes_sets_the_papers_mean_over_those_classes_beside_ours():
    # Fashion-MNIST naive, Table 9: classes 1, 3, 5, 7 are 100, 99.7, 100, 100; all ten average 99.2.
    table = report.markdown_tables(_rows([1, 3, 5, 7]), "fashion_mnist", "naive", 10, 1)
    paper_row = next(line for line in table.splitlines() if line.startswith("| paper |"))
    assert paper_row == "| paper | 100.0 | 99.7 | 100.0 | 100.0 | 99.9 (all 10: 99.2) | 0.13 (all 10: 0.75) |"
    by_gamma = next(line for line in table.splitlines() if line.startswith("| 0 (PARTIAL) |"))
    assert by_gamma.endswith("| 99.9 +- 0.13 (all 10: 99.2 +- 0.75) |")


def test_a_table_of_every_class_sets_the_papers_stated_figures():
    # The stated MNIST mean (99.1) is not the mean of its printed classes (98.9): the stated one stands.
    table = report.markdown_tables(_rows(range(10)), "mnist", "naive", 10, 1)
    assert "| 99.1 | 0.86 |" in table and "all 10" not in table


def test_where_the_paper_prints_no_class_a_table_of_some_classes_gives_only_its_mean_over_all():
    table = report.markdown_tables(_rows([2, 8], gamma=0.05), "mnist", "naive", 10, 1)
    assert "| paper | — | — | — (all 10: 99.9) | — (all 10: 0.29) |" in table
    assert table.rstrip().endswith("| — (all 10: 99.9 +- 0.29) |")


def test_the_papers_mean_over_classes_is_none_where_it_prints_no_class():
    assert report.paper_summary_of_classes("mnist", "naive", 0.05, [1, 2]) is None
    avg, sd = report.paper_summary_of_classes("fashion_mnist", "unetpp", 0.0, [3, 6])
    assert (avg, sd) == (np.mean([99.4, 100.0]), np.std([99.4, 100.0]))
