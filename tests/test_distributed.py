"""Hyperparameter search on a Dask cluster through joblib's dask backend."""

import re

import distributed
import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier

GRID = {"module__n_w_bits": [2, 3], "module__n_accum_bits": [6, 8]}


def _search(X, y, n_jobs):
    search = GridSearchCV(
        QNNClassifier(max_epochs=10, random_state=0),
        GRID,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        n_jobs=n_jobs,
    )
    return search.fit(X, y)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:make_pruning_permanent repaired:UserWarning")
def test_grid_search_on_a_local_dask_cluster_matches_one_process():
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
        worker_threads = set(client.run(torch.get_num_threads).values())
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            on_dask = _search(X, y, n_jobs=-1)
    # Float sums may be ordered differently with another thread count: compare like with like.
    (threads,) = worker_threads
    main_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sequential = _search(X, y, n_jobs=1)
    finally:
        torch.set_num_threads(main_threads)

    assert len(worker_pids) == 2
    # Every fit ran on a worker (joblib names its tasks "batch_of__fit_and_score_<n>_calls"),
    # and both workers took some.
    calls = [re.search(r"fit_and_score_(\d+)_calls", str(task["key"])) for task in tasks.data]
    assert sum(int(match[1]) for match in calls if match) == 4 * 3  # candidates x splits
    assert len({task["worker"] for task in tasks.data}) == 2
    assert on_dask.best_params_ == sequential.best_params_
    for key in ("mean_test_score", "split0_test_score", "split1_test_score", "split2_test_score"):
        np.testing.assert_array_equal(on_dask.cv_results_[key], sequential.cv_results_[key])
    assert on_dask.best_score_ > 0.85
    best = on_dask.best_estimator_
    assert best.certificate_.max_bits <= best.module_.n_accum_bits
