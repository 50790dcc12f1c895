"""Nearest-neighbour indexes over item factors, tuned against exact search.

The score is the inner product <user, item>. Kinds:

- ``exact``: numpy dot + ``argpartition`` (the baseline every index must beat);
- ``annoy_dot``: annoy 1.17.3, metric ``dot``;
- ``annoy_angular_aug``: annoy ``angular`` on items augmented to ``[v, sqrt(M² - |v|²)]`` and
  queries ``[q, 0]`` (the standard reduction of inner product to cosine);
- ``hnsw_ip``: hnswlib, space ``ip``;
- ``hnsw_aug``: hnswlib, space ``l2``, on the augmented items and queries (norm-aware: with every
  item at the same norm, L2 order is inner-product order, so the long tail of short vectors no
  longer breaks the graph, hnswlib #74/#341);
- ``ivf_sq8_rerank``: faiss inverted file over the augmented items (``nlist`` k-means cells by L2,
  :func:`ivf_nlist`), 8-bit scalar-quantised codes (26 bytes per track at rank 25); a query scans its
  ``nprobe`` nearest cells and re-ranks the ``rerank`` x K best candidates by their exact inner
  product with the float32 factors (which the bundle keeps anyway, for fold-in);
- ``norm_ranges``: the items sorted by norm and cut into ranges that double in size; a query scores
  range after range, longest vectors first, and stops when the K-th best score so far is at least
  the next range's largest norm times the query's (Cauchy-Schwarz: nothing further can enter).
  Exact by construction (recall 1, ties aside); how much it skips depends on how concentrated the
  norms are, which the tuning measures like any other setting.

:func:`tune` measures, for every setting, recall@K against the exact top-K on query users,
p50/p99 single-query latency, build seconds and index bytes, and picks the fastest setting
whose recall meets the target. ``exact`` always meets it, so nothing slower than exact is
ever chosen. :func:`save_index` writes the choice with its sha256; :func:`load_index`
checks it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import INDEX_KINDS
from pipeline.paths import atomic_dir, sha256_file

__all__ = ["KINDS", "IndexChoice", "Index", "exact_query", "tune", "choose", "save_index", "load_index", "pareto_front", "plot_tradeoffs"]

KINDS = INDEX_KINDS
_FILES = {"annoy_dot": "index.ann", "annoy_angular_aug": "index.ann", "hnsw_ip": "index.hnsw", "hnsw_aug": "index.hnsw",
          "ivf_sq8_rerank": "index.faiss", "norm_ranges": "norm_ranges.npz", "exact": "item_factors.npy"}
_AUGMENTED = ("annoy_angular_aug", "hnsw_aug", "ivf_sq8_rerank")  # queries get a 0 in the extra dimension
REACH = 0.10  # a kind whose best recall is this far below the target after a build gets no bigger build


def ivf_nlist(n_items: int) -> int:
    """The inverted file's cell count: the power of two nearest 8 sqrt(n), at most n / 40 (faiss wants 39
    training points per cell), at least 1 and at most 16,384. 1.3M tracks: 8,192 cells; 6.3M and more: 16,384.

    Measured on seed-shaped factors of 1.3M tracks (recall@100 against exact, cells probed): 1,024
    cells 0.86 at 64 probes (12% of the catalogue scanned); 4,096 cells 0.96 at 128; 8,192 cells
    0.95 at 128 (24 s to build on 2 cores); 16,384 cells 0.97 at 64 (67 s to build). At 21.8M tracks
    32,768 cells took 573 s to build and reached 0.895 at 512 probes, so the cap: norm_ranges serves there."""
    if n_items < 39:
        return 1
    nlist = min(2 ** int(round(np.log2(8 * np.sqrt(n_items)))), 16384)
    while nlist > 1 and nlist * 40 > n_items:
        nlist //= 2
    return nlist


def exact_query(item_factors: np.ndarray, user_vec: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` items by inner product, best first, ties by index ascending."""
    scores = item_factors @ np.asarray(user_vec, dtype=np.float32)
    k = min(k, scores.size)
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return top[np.lexsort((top, -scores[top]))]


def _augment(items: np.ndarray) -> tuple[np.ndarray, float]:
    norms = np.linalg.norm(items, axis=1)
    big = float(norms.max()) if norms.size else 0.0
    extra = np.sqrt(np.maximum(big**2 - norms**2, 0.0))
    return np.hstack([items, extra[:, None]]).astype(np.float32), big


@dataclass(frozen=True)
class NormRanges:
    """Items sorted by norm, longest first (``order[i]`` is the item at sorted row ``i``), cut at ``starts``."""

    items: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    max_norm: np.ndarray  # the largest norm in each range

    FIRST = 1024  # the first range's size; each next one is twice the size

    @classmethod
    def build(cls, items: np.ndarray) -> "NormRanges":
        norms = np.linalg.norm(items, axis=1)
        order = np.argsort(-norms, kind="stable")
        starts, size = [0], cls.FIRST
        while starts[-1] + size < len(items):
            starts.append(starts[-1] + size)
            size *= 2
        starts = np.asarray(starts, dtype=np.int64)
        return cls(np.ascontiguousarray(items[order]), order.astype(np.int64), starts, norms[order][starts])

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, items=self.items, order=self.order, starts=self.starts, max_norm=self.max_norm)

    @classmethod
    def load(cls, path: Path) -> "NormRanges":
        with np.load(path) as z:
            return cls(z["items"], z["order"], z["starts"], z["max_norm"])

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        """The exact top ``k`` by inner product, best first, ties by item index ascending."""
        q_norm = float(np.linalg.norm(q))
        ends = [*self.starts[1:], len(self.items)]
        rows = np.zeros(0, dtype=np.int64)
        scores = np.zeros(0, dtype=np.float32)
        for r, (lo, hi) in enumerate(zip(self.starts, ends)):
            if len(rows) >= k and scores.min() >= self.max_norm[r] * q_norm:
                break  # no item of this range or a later one can score above the K-th so far
            block = self.items[lo:hi] @ q
            rows = np.concatenate([rows, np.arange(lo, hi)])
            scores = np.concatenate([scores, block])
            if len(rows) > k:
                keep = np.argpartition(-scores, k - 1)[:k]
                kth = scores[keep].min()
                keep = np.flatnonzero(scores >= kth)  # every item tied with the K-th stays a candidate
                rows, scores = rows[keep], scores[keep]
        ids = self.order[rows]
        return ids[np.lexsort((ids, -scores))][:k]


@dataclass
class Index:
    """A loaded index of one kind; ``query(user_vec, k)`` returns item indices, best first."""

    kind: str
    params: dict[str, Any]
    impl: Any
    items: np.ndarray | None = None

    def query(self, user_vec: np.ndarray, k: int) -> np.ndarray:
        q = np.asarray(user_vec, dtype=np.float32)
        if self.kind == "exact":
            return exact_query(self.items, q, k)
        if self.kind == "norm_ranges":
            return self.impl.query(q, k)
        qa = np.append(q, np.float32(0.0)) if self.kind in _AUGMENTED else q
        if self.kind in ("hnsw_ip", "hnsw_aug"):
            self.impl.set_ef(max(int(self.params["ef"]), k))
            labels, _ = self.impl.knn_query(qa[None, :], k=min(k, self.impl.get_current_count()))
            return labels[0].astype(np.int64)
        if self.kind == "ivf_sq8_rerank":
            import faiss

            faiss.omp_set_num_threads(1)  # one query: a second thread only adds hand-over (0.66 vs 0.32 ms)
            self.impl.nprobe = int(self.params["nprobe"])
            _, found = self.impl.search(qa[None, :], int(self.params["rerank"]) * k)
            candidates = np.sort(found[0][found[0] >= 0])  # in row order: a memory map reads them forwards
            scores = np.asarray(self.items[candidates] @ q)
            top = np.lexsort((candidates, -scores))[:k]
            return candidates[top]
        return np.asarray(self.impl.get_nns_by_vector(qa.tolist(), k, search_k=int(self.params["search_k"])), dtype=np.int64)


def _build(kind: str, items: np.ndarray, params: dict[str, Any], path: Path) -> tuple[Index, float]:
    """Build one index, save it to ``path``, return it and the build seconds."""
    t0 = time.perf_counter()
    if kind in ("hnsw_ip", "hnsw_aug"):
        import hnswlib

        vecs = _augment(items)[0] if kind == "hnsw_aug" else items
        impl = hnswlib.Index(space="ip" if kind == "hnsw_ip" else "l2", dim=vecs.shape[1])
        impl.init_index(max_elements=len(vecs), M=int(params["M"]), ef_construction=int(params["ef_construction"]),
                        random_seed=0)
        impl.add_items(vecs, np.arange(len(vecs)), num_threads=-1)
        built = time.perf_counter() - t0
        impl.save_index(str(path))
        return Index(kind, dict(params), impl), built
    if kind == "norm_ranges":
        impl = NormRanges.build(items)
        built = time.perf_counter() - t0
        impl.save(path)
        return Index(kind, dict(params), impl), built
    if kind == "ivf_sq8_rerank":
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
        vecs = _augment(items)[0]
        nlist = int(params["nlist"])
        impl = faiss.index_factory(vecs.shape[1], f"IVF{nlist},SQ8", faiss.METRIC_L2)
        # 64 points per cell: at 40, 1.3M tracks needed 256 probes for recall 0.95 instead of 128
        sample = np.random.default_rng(0).choice(len(vecs), size=min(len(vecs), 64 * nlist), replace=False)
        impl.cp.seed = 0
        impl.train(vecs[np.sort(sample)])
        for start in range(0, len(vecs), 1 << 20):  # in blocks: faiss copies what it is given
            impl.add(vecs[start : start + (1 << 20)])
        del vecs
        built = time.perf_counter() - t0
        faiss.write_index(impl, str(path))
        return Index(kind, dict(params), impl, items), built
    from annoy import AnnoyIndex

    vecs = _augment(items)[0] if kind == "annoy_angular_aug" else items
    impl = AnnoyIndex(vecs.shape[1], "angular" if kind == "annoy_angular_aug" else "dot")
    impl.set_seed(0)
    for i, v in enumerate(vecs):
        impl.add_item(i, v)
    impl.build(int(params["n_trees"]), n_jobs=-1)
    built = time.perf_counter() - t0
    impl.save(str(path))
    return Index(kind, dict(params), impl), built


def _measure(index: Index, items: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int,
             relevant: Any = None) -> dict[str, float]:
    """Latency percentiles and recall@k against exact search; P/MAP/NDCG@k when ``relevant`` is given.

    A returned item counts as found when its score is at least the exact K-th best score: items
    tied at the cut are equally right (factors of tracks with one listener often coincide).
    ``relevant`` (CSR, one row per query) holds the query users' held-out tracks.
    """
    times, recalls = [], []
    recs = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (q, t) in enumerate(zip(queries, truth)):
        t0 = time.perf_counter()
        got = index.query(q, k)
        times.append((time.perf_counter() - t0) * 1000)
        recs[row, : min(k, len(got))] = got[:k]
        want = t[t >= 0]
        if want.size == 0:
            recalls.append(1.0)
            continue
        kth = float(np.min(items[want] @ q))
        got = np.unique(got[(got >= 0) & (got < len(items))])
        found = int(np.sum(items[got] @ q >= kth - 1e-6 * max(1.0, abs(kth))))
        recalls.append(min(found, want.size) / want.size)
    out = {"recall": float(np.mean(recalls)), "p50_ms": float(np.percentile(times, 50)),
           "p99_ms": float(np.percentile(times, 99))}
    if relevant is not None:
        from pipeline.metrics import ranking_metrics

        m = ranking_metrics(recs, relevant, k)
        out.update({name: m[f"{name}_at_{k}"] for name in ("precision", "map", "ndcg")})
    return out


@dataclass(frozen=True)
class IndexChoice:
    """The tuning table (one row per setting) and the chosen row."""

    table: list[dict[str, Any]]
    chosen: dict[str, Any]
    recall_target: float
    files: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.chosen["kind"]

    @property
    def explored(self) -> list[dict[str, Any]]:
        """The rows that compare every kind: the sample's when the catalogue was sampled, else all."""
        return [r for r in self.table if r.get("stage") == "sample"] or self.table


def choose(table: list[dict[str, Any]], recall_target: float) -> dict[str, Any]:
    """The fastest (lowest p50) setting whose recall meets the target; ``exact`` when none does."""
    ok = [r for r in table if r["recall"] >= recall_target]
    exact = [r for r in table if r["kind"] == "exact"]
    if not ok:
        if not exact:
            raise ValueError("no setting meets the recall target and the table has no exact row")
        return exact[0]
    return min(ok, key=lambda r: (r["p50_ms"], r["p99_ms"], KINDS.index(r["kind"])))


def _grid(
    items: np.ndarray, queries: np.ndarray, truth: np.ndarray, *, k: int, recall_target: float, out_dir: Path,
    kinds: tuple[str, ...], annoy_trees: tuple[int, ...], annoy_search_k: tuple[int, ...] | None,
    hnsw_M: tuple[int, ...], hnsw_ef: tuple[int, ...], hnsw_ef_construction: int, ivf_nprobe: tuple[int, ...],
    ivf_rerank: int, relevant: Any,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Build each kind's settings over ``items`` and measure them against ``truth``: the table and the files.

    Builds go cheapest first; a kind stops once a build's best recall is more than :data:`REACH`
    below the target (a bigger build rarely closes such a gap), and a query-time setting (search_k
    aside, ef, nprobe) stops growing once the target holds (more effort only costs time).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    table: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    if "exact" in kinds:
        row = {"kind": "exact", "params": {}, "build_s": 0.0, "bytes": int(items.nbytes),
               **_measure(Index("exact", {}, None, items), items, queries, truth, k, relevant)}
        table.append(row)
    for kind in ("annoy_dot", "annoy_angular_aug"):
        if kind not in kinds:
            continue
        for trees in annoy_trees:
            path = out_dir / f"{kind}-t{trees}.ann"
            index, built = _build(kind, items, {"n_trees": trees, "search_k": -1}, path)
            for sk in annoy_search_k or (trees * k, trees * k * 10, trees * k * 50):
                index.params["search_k"] = sk
                params = {"n_trees": trees, "search_k": sk}
                table.append({"kind": kind, "params": params, "build_s": built, "bytes": path.stat().st_size,
                              **_measure(index, items, queries, truth, k, relevant)})
                files[_key(kind, params)] = str(path)
            index.impl.unload()
            if max(r["recall"] for r in table if r["kind"] == kind) < recall_target - REACH:
                break
    for kind in ("hnsw_ip", "hnsw_aug"):
        if kind not in kinds:
            continue
        for m in hnsw_M:
            path = out_dir / f"{kind}-M{m}.hnsw"
            index, built = _build(kind, items, {"M": m, "ef_construction": hnsw_ef_construction, "ef": 50}, path)
            for ef in hnsw_ef:
                index.params["ef"] = ef
                params = {"M": m, "ef_construction": hnsw_ef_construction, "ef": ef}
                table.append({"kind": kind, "params": params, "build_s": built, "bytes": path.stat().st_size,
                              **_measure(index, items, queries, truth, k, relevant)})
                files[_key(kind, params)] = str(path)
                if table[-1]["recall"] >= recall_target:
                    break  # a larger ef only costs more time at this M
            if max(r["recall"] for r in table if r["kind"] == kind) < recall_target - REACH:
                break
    if "ivf_sq8_rerank" in kinds:
        nlist = ivf_nlist(len(items))
        path = out_dir / f"ivf_sq8_rerank-n{nlist}.faiss"
        index, built = _build("ivf_sq8_rerank", items, {"nlist": nlist, "nprobe": 1, "rerank": ivf_rerank}, path)
        for nprobe in sorted(p for p in ivf_nprobe if p <= nlist) or [nlist]:
            index.params["nprobe"] = nprobe
            params = {"nlist": nlist, "nprobe": nprobe, "rerank": ivf_rerank}
            table.append({"kind": "ivf_sq8_rerank", "params": params, "build_s": built, "bytes": path.stat().st_size,
                          **_measure(index, items, queries, truth, k, relevant)})
            files[_key("ivf_sq8_rerank", params)] = str(path)
            if table[-1]["recall"] >= recall_target:
                break  # more cells probed only cost more time
    if "norm_ranges" in kinds:
        path = out_dir / "norm_ranges.npz"
        index, built = _build("norm_ranges", items, {"first": NormRanges.FIRST}, path)
        table.append({"kind": "norm_ranges", "params": {"first": NormRanges.FIRST}, "build_s": built,
                      "bytes": path.stat().st_size, **_measure(index, items, queries, truth, k, relevant)})
        files[_key("norm_ranges", table[-1]["params"])] = str(path)
    return table, files


# A graph or inverted file is built at full size only when it promises to answer at least this many
# times faster than norm_ranges, measured there: at 1.3M tracks HNSW M32 took 198 s to build for 0.12
# against 0.14 ms (and then missed the recall target its sample had met: 0.89 against 0.95).
WORTH_BUILDING = 2.0


def _worth_building(won: dict[str, Any], norm_ranges_ms: float | None, n_items: int, sample: int) -> bool:
    """Whether the sample's winner could beat ``norm_ranges`` (``norm_ranges_ms`` at full size, ``None``
    when it was not measured or missed the target) by ``WORTH_BUILDING`` once built on ``n_items``.

    The winner's time on the sample is grown by ``sqrt(n_items / sample)`` first: a graph or an inverted
    file holding the target at a larger catalogue needs a larger ``ef`` or ``nprobe``, and its time grows
    about as the square root of the size (at 10M listens, 1.3M tracks, HNSW M32 answered the 200,000-track
    sample at ef 50 in 0.092 ms and needed ef 400, 0.373 ms, at full size: 4.1x for a square root of 2.6;
    norm_ranges answered there in 0.27 ms, and the 207 s build bought nothing). Against the sample's time
    alone, a host with a slow matrix-vector product built that graph on every run."""
    if norm_ranges_ms is None:
        return True
    grown = won["p50_ms"] * (max(n_items, sample) / sample) ** 0.5
    return norm_ranges_ms > WORTH_BUILDING * grown


def tune(
    item_factors: np.ndarray, queries: np.ndarray, *, k: int = 100, recall_target: float = 0.95,
    out_dir: Path, annoy_trees: tuple[int, ...] = (10, 50), annoy_search_k: tuple[int, ...] | None = None,
    hnsw_M: tuple[int, ...] = (16, 32), hnsw_ef: tuple[int, ...] = (50, 100, 200, 400), hnsw_ef_construction: int = 200,
    ivf_nprobe: tuple[int, ...] = (16, 32, 64, 128, 256, 512), ivf_rerank: int = 4,
    kinds: tuple[str, ...] = KINDS, relevant: Any = None, sample: int = 200_000,
) -> IndexChoice:
    """Choose the served index: the fastest setting whose recall@``k`` against exact meets the target.

    Up to ``sample`` tracks, every kind and setting is built and measured on the whole catalogue.
    Above it, they are measured on a random sample of ``sample`` tracks (against the exact top-``k``
    of that sample), and only the kind and build that won there is built at full size, where its
    query-time settings are measured in order until the target holds; ``exact`` (chosen when nothing
    else meets the target) and ``norm_ranges`` (a sort to build) are measured at full size first, and
    the winner is not built when ``norm_ranges`` already meets the target within ``WORTH_BUILDING``
    times the winner's query time on the sample grown to the whole catalogue (``_worth_building``). Rows
    carry ``stage`` (``sample`` or ``full``) and ``catalogue`` (the tracks they were measured on).

    With ``relevant`` (CSR, one row of held-out tracks per query user) each full-size row also
    reports P/MAP/NDCG@k through the index, to read beside the exact row's.
    """
    from pipeline.topk import topk

    items = np.ascontiguousarray(item_factors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out_dir = Path(out_dir)
    grid = dict(k=k, recall_target=recall_target, annoy_trees=annoy_trees, annoy_search_k=annoy_search_k,
                hnsw_M=hnsw_M, hnsw_ef=hnsw_ef, hnsw_ef_construction=hnsw_ef_construction, ivf_nprobe=ivf_nprobe,
                ivf_rerank=ivf_rerank)
    explored: list[dict[str, Any]] = []
    if len(items) > sample:
        rows = np.sort(np.random.default_rng(0).choice(len(items), size=sample, replace=False))
        part = items[rows]
        explored, sample_files = _grid(part, queries, topk(queries, part, k), out_dir=out_dir / "sample", kinds=kinds,
                                       relevant=None, **grid)
        for f in set(sample_files.values()):
            Path(f).unlink(missing_ok=True)
        for r in explored:
            r.update(stage="sample", catalogue=sample)
        _speedups(explored)
        won = choose(explored, recall_target)
        p = won["params"]
        grid.update(annoy_trees=(p.get("n_trees", 0),), hnsw_M=(p.get("M", 0),))  # the winning build only
    truth = topk(queries, items, k)
    table: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    if explored:
        # exact and norm_ranges cost no real build (a sort), and their speed depends on the catalogue's size
        # and shape more than a graph's or an inverted file's: they are measured at full size first, and
        # the winner is built at full size only when it promises to beat norm_ranges there.
        cheap = tuple(k for k in ("exact", "norm_ranges") if k in (*kinds, "exact"))
        table, files = _grid(items, queries, truth, out_dir=out_dir, kinds=cheap, relevant=relevant, **grid)
        ranged = [r["p50_ms"] for r in table if r["kind"] == "norm_ranges" and r["recall"] >= recall_target]
        if won["kind"] not in cheap and _worth_building(won, ranged[0] if ranged else None, len(items), sample):
            more, more_files = _grid(items, queries, truth, out_dir=out_dir, kinds=(won["kind"],), relevant=relevant,
                                     **grid)
            table, files = table + more, {**files, **more_files}
    else:
        table, files = _grid(items, queries, truth, out_dir=out_dir, kinds=kinds, relevant=relevant, **grid)
    for r in table:
        r.update(stage="full", catalogue=len(items))
    _speedups(table)
    return IndexChoice(explored + table, choose(table, recall_target), recall_target, files)


def _speedups(table: list[dict[str, Any]]) -> None:
    exact_p50 = next((r["p50_ms"] for r in table if r["kind"] == "exact"), None)
    for r in table:
        r["speedup_vs_exact"] = (exact_p50 / r["p50_ms"]) if exact_p50 and r["p50_ms"] else None


def _key(kind: str, params: dict[str, Any]) -> str:
    """One built file per key: the params a query may change (search_k, ef, nprobe) left out."""
    return kind + json.dumps({k: v for k, v in params.items() if k not in ("search_k", "ef", "nprobe")}, sort_keys=True)


def save_index(choice: IndexChoice, item_factors: np.ndarray, out_dir: Path) -> Path:
    """Write the chosen index (or the factors, for exact) and ``index.json`` with its sha256."""
    c = choice.chosen
    with atomic_dir(out_dir) as tmp:
        tmp.mkdir(parents=True)
        np.save(tmp / "item_factors.npy", np.ascontiguousarray(item_factors, dtype=np.float32))
        if c["kind"] != "exact":
            shutil.copyfile(choice.files[_key(c["kind"], c["params"])], tmp / _FILES[c["kind"]])
        meta = {"kind": c["kind"], "params": c["params"], "rank": int(item_factors.shape[1]),
                "n_items": int(item_factors.shape[0]), "file": _FILES[c["kind"]],
                "sha256": sha256_file(tmp / _FILES[c["kind"]]), "recall": c["recall"], "p50_ms": c["p50_ms"],
                "p99_ms": c["p99_ms"], "recall_target": choice.recall_target,
                "met_target": c["recall"] >= choice.recall_target, "speedup_vs_exact": c.get("speedup_vs_exact")}
        (tmp / "index.json").write_text(json.dumps(meta, indent=1))
    return Path(out_dir)


def load_index(path: Path) -> Index:
    """Load an index folder; refuse it when the file's sha256 differs from ``index.json``."""
    path = Path(path)
    meta = json.loads((path / "index.json").read_text())
    file = path / meta["file"]
    digest = sha256_file(file)
    if digest != meta["sha256"]:
        raise ValueError(f"{file} is corrupt: sha256 {digest} != {meta['sha256']} recorded in index.json; "
                         "rebuild the index (re-run build_index)")
    kind, rank = meta["kind"], meta["rank"]
    items = np.load(path / "item_factors.npy", mmap_mode="r")
    if kind == "exact":
        return Index(kind, meta["params"], None, np.asarray(items))
    if kind in ("hnsw_ip", "hnsw_aug"):
        import hnswlib

        impl = hnswlib.Index(space="ip" if kind == "hnsw_ip" else "l2", dim=rank + (kind == "hnsw_aug"))
        impl.load_index(str(file), max_elements=meta["n_items"])
        return Index(kind, meta["params"], impl)
    if kind == "ivf_sq8_rerank":
        import faiss

        return Index(kind, meta["params"], faiss.read_index(str(file)), items)
    if kind == "norm_ranges":
        return Index(kind, meta["params"], NormRanges.load(file))
    from annoy import AnnoyIndex

    impl = AnnoyIndex(rank + 1 if kind == "annoy_angular_aug" else rank, "angular" if kind == "annoy_angular_aug" else "dot")
    impl.load(str(file))
    return Index(kind, meta["params"], impl)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost (x) and higher recall (y), by cost ascending.

    A point is on the front when every cheaper-or-equal point has a lower recall; of equal
    points the first is kept. ``[(1, .5), (2, .4), (3, .9), (3, .9)]`` gives ``[0, 2]``.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    for i in order:
        if not front or points[i][1] > points[front[-1]][1]:
            front.append(i)
    return front


_SHORT = {"n_trees": "T", "search_k": "sk", "M": "M", "ef": "ef", "ef_construction": "efc", "nlist": "cells",
          "nprobe": "np", "rerank": "rr"}


def _setting(row: dict[str, Any], varying: set[str]) -> str:
    """``T50 sk250k``: the params that vary within the kind, short."""
    def num(v: Any) -> str:
        return f"{v // 1000}k" if isinstance(v, int) and v >= 10_000 and v % 1000 == 0 else str(v)
    return " ".join(f"{_SHORT.get(k, k)}{num(v)}" for k, v in row["params"].items() if k in varying)


def _panel(ax: Any, table: list[dict[str, Any]], x: str, *, annotate: bool) -> None:
    """Every setting as a faint point, each kind's Pareto front as a staircase of solid points."""
    for n, kind in enumerate(k for k in KINDS if k != "exact"):
        rows = [r for r in table if r["kind"] == kind and r[x] > 0]
        if not rows:
            continue
        colour = f"C{n + 1}"
        ax.scatter([r[x] for r in rows], [r["recall"] for r in rows], s=18, color=colour, alpha=0.35)
        front = [rows[i] for i in pareto_front([(r[x], r["recall"]) for r in rows])]
        ax.step([r[x] for r in front], [r["recall"] for r in front], where="post", color=colour, marker="o",
                label=f"{kind} ({len(front)} of {len(rows)} settings on the front)")
        if annotate:
            varying = {k for k in rows[0]["params"] if len({str(r["params"].get(k)) for r in rows}) > 1}
            for r in front:
                ax.annotate(_setting(r, varying), (r[x], r["recall"]), textcoords="offset points", xytext=(4, -9),
                            fontsize=6, color=colour)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 0.1 0.2 0.5 1 2 5 ...: labels within one decade too
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("recall@K against exact search")
    ax.grid(True, which="major", alpha=0.3)


_MEANING = {"n_trees": "T = annoy trees", "search_k": "sk = annoy search_k", "M": "M = HNSW graph degree",
            "ef_construction": "efc = HNSW build breadth", "ef": "ef = HNSW search breadth",
            "nlist": "cells = IVF cells", "nprobe": "np = IVF cells probed", "rerank": "rr = candidates re-ranked"}


def _labelled(table: list[dict[str, Any]]) -> set[str]:
    """The params whose values label points (those that vary within a plotted kind)."""
    names: set[str] = set()
    for kind in {r["kind"] for r in table} - {"exact"}:
        rows = [r for r in table if r["kind"] == kind]
        names |= {k for k in rows[0]["params"] if len({str(r["params"].get(k)) for r in rows}) > 1}
    return names


def plot_tradeoffs(table: list[dict[str, Any]], path: Path) -> Path:
    """The seed's figures, per kind: recall@K against p50 query time and against build time, with Pareto fronts.

    Faint points are every measured setting; the staircase joins the settings no other setting
    of the same kind beats (faster or as fast, and at least as accurate). Exact search is the
    reference: its query time on the left, its recall (1, nothing to build) on the right.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.4))
    _panel(a, table, "p50_ms", annotate=True)
    _panel(b, table, "build_s", annotate=False)
    for r in (r for r in table if r["kind"] == "exact"):
        a.scatter([r["p50_ms"]], [r["recall"]], color="C0", marker="*", s=120, zorder=3,
                  label=f"exact (p50 {r['p50_ms']:.3g} ms)")
        a.axvline(r["p50_ms"], color="C0", linestyle=":", linewidth=1)
        b.axhline(r["recall"], color="C0", linestyle=":", linewidth=1,
                  label=f"exact (nothing to build, {r['bytes'] / 2**20:.3g} MB)")
    a.set_xlabel("p50 single-query time (ms, log scale)")
    a.set_title("recall vs query time (left of the dotted line: faster than exact)", fontsize=9)
    b.set_xlabel("build time (s, log scale)")
    b.set_title("recall vs build time", fontsize=9)
    for ax in (a, b):
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    notes = [_MEANING[k] for k in _MEANING if k in _labelled(table)]  # only the abbreviations the plot shows
    if notes:
        fig.text(0.01, 0.01, "settings: " + ", ".join(notes), fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
