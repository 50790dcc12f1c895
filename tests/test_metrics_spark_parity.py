"""Parity with pyspark.mllib.evaluation.RankingMetrics on random lists, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.metrics import ranking_metrics

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_spark_ranking_metrics(spark, seed):
    from pyspark.mllib.evaluation import RankingMetrics

    rng = np.random.default_rng(seed)
    n_users, n_items, k = 120, 60, 10
    recs = np.array([rng.permutation(n_items)[: rng.integers(3, 20)].tolist() + [-1] * 20 for _ in range(n_users)],
                    dtype=object)
    recs = np.array([r[:20] for r in recs], dtype=np.int64)
    labels = [sorted(set(rng.integers(0, n_items, size=rng.integers(1, 15)).tolist())) for _ in range(n_users)]
    rows = [u for u, ls in enumerate(labels) for _ in ls]
    truth = sp.csr_matrix((np.ones(len(rows)), (rows, [x for ls in labels for x in ls])), shape=(n_users, n_items))
    pairs = [([float(x) for x in r if x >= 0], [float(x) for x in ls]) for r, ls in zip(recs, labels)]
    spark_metrics = RankingMetrics(spark.sparkContext.parallelize(pairs, 2))
    for kk in (1, 5, k):
        ours = ranking_metrics(recs, truth, kk)
        assert ours["precision_at_%d" % kk] == pytest.approx(spark_metrics.precisionAt(kk), abs=1e-9)
        assert ours["recall_at_%d" % kk] == pytest.approx(spark_metrics.recallAt(kk), abs=1e-9)
        assert ours["map_at_%d" % kk] == pytest.approx(spark_metrics.meanAveragePrecisionAt(kk), abs=1e-9)
        assert ours["ndcg_at_%d" % kk] == pytest.approx(spark_metrics.ndcgAt(kk), abs=1e-9)
