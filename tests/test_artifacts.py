"""The spatial map logged with each cell: predicted domains drawn in their true domains' colours."""

import numpy as np

from stbench.benchmark.artifacts import match_to_truth


def test_predicted_clusters_take_the_code_of_the_domain_they_match():
    truth = np.array(["L1", "L1", "L1", "L2", "L2", "WM", "WM", "WM"])
    pred = np.array([7, 7, 3, 3, 3, 9, 9, 5])  # cluster 7 ~ L1, 3 ~ L2, 9 ~ WM, 5 left over
    codes, labels = match_to_truth(truth, pred)
    assert labels[:3] == ["L1", "L2", "WM"] and labels[3] == "cluster 5"
    assert list(codes) == [0, 0, 1, 1, 1, 2, 2, 3]
