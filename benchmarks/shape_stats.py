"""How the seed-shaped generator's listening compares with real logs: the shape statistics of issue #20.

    flock /tmp/bench.lock .venv/bin/python benchmarks/shape_stats.py [--out benchmarks/results]

For each real log in ../shared/data (HetRec Last.fm 2k and Audioscrobbler 2005 small: total plays
per user and artist; the Last.fm 1K fixture: one row per listen) and for ``pipeline synth --shape
seed`` and ``--shape calibrated`` at the real logs' sizes (their users and total plays) and at the
benchmarks' 1M and 10M listens, from the (user, item, plays) table:

- ``top10``: the mean over users of the share of a user's plays on their own 10 most-played items;
- ``distinct/listens``: the mean over users of distinct items over plays;
- ``top 1% share``: the share of all plays on the 1% most-played items;
- ``gini``: the Gini coefficient of the items' play totals;
- ``repeat rate``: the share of plays that repeat an earlier (user, item) pair, 1 - pairs / plays;
- ``test seen``: with timestamps only, the share of the last 10% of time's listens (users with
  earlier listens) on an item the user had played before it.

Two of the real logs count plays per artist, not per track, so the generator is measured both
per track and per artist (its tracks' artist names). Writes ``shape-stats.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STATS = ("top10", "distinct/listens", "top 1% share", "gini", "repeat rate", "test seen")


def shape(pairs: pd.DataFrame, listens: pd.DataFrame | None = None) -> dict[str, float]:
    """The statistics of a (user, item, plays) table; ``listens`` (user, item, ts) for ``test seen``."""
    plays = pairs.groupby(["user", "item"], sort=False)["plays"].sum().reset_index()
    per_user = plays.groupby("user")["plays"]
    top10 = (plays.sort_values(["user", "plays"], ascending=[True, False]).groupby("user").head(10)
             .groupby("user")["plays"].sum() / per_user.sum())
    items = np.sort(plays.groupby("item")["plays"].sum().to_numpy(np.float64))[::-1]
    n_top = max(1, int(np.ceil(0.01 * items.size)))
    ascending = items[::-1]
    cum = np.cumsum(ascending)
    gini = float((items.size + 1 - 2 * (cum / cum[-1]).sum()) / items.size)
    out = {"users": int(plays["user"].nunique()), "items": int(items.size), "plays": int(items.sum()),
           "top10": float(top10.mean()), "distinct/listens": float((per_user.size() / per_user.sum()).mean()),
           "top 1% share": float(items[:n_top].sum() / items.sum()), "gini": gini,
           "repeat rate": float(1 - len(plays) / items.sum()), "test seen": None}
    if listens is not None:
        cut = listens["ts"].quantile(0.9)
        train, test = listens[listens["ts"] < cut], listens[listens["ts"] >= cut]
        test = test[test["user"].isin(train["user"].unique())]
        seen = test.merge(train[["user", "item"]].drop_duplicates(), on=["user", "item"], how="left", indicator=True)
        out["test seen"] = float((seen["_merge"] == "both").mean()) if len(seen) else None
    return out


def hetrec() -> tuple[pd.DataFrame, None]:
    df = pd.read_csv(DATA / "hetrec2011-lastfm-2k" / "user_artists.dat", sep="\t")
    return df.rename(columns={"userID": "user", "artistID": "item", "weight": "plays"}), None


def audioscrobbler() -> tuple[pd.DataFrame, None]:
    folder = DATA / "audioscrobbler-2005-small"
    df = pd.read_csv(folder / "user_artist_data_small.txt", sep=" ", names=["user", "item", "plays"])
    alias = pd.read_csv(folder / "artist_alias_small.txt", sep="\t", names=["bad", "good"]).dropna()
    df["item"] = df["item"].map(dict(zip(alias["bad"].astype(int), alias["good"].astype(int)))).fillna(df["item"])
    return df, None


def lastfm1k() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_csv(DATA / "lastfm-1k-fixture" / "userid-timestamp-artid-artname-traid-traname.head5000.tsv",
                     sep="\t", names=["user", "ts", "artid", "artist", "traid", "track"], quoting=3)
    df["item"] = df["traid"].fillna(df["artist"].fillna("") + "\x1f" + df["track"].fillna(""))
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.assign(plays=1)[["user", "item", "plays"]], df[["user", "item", "ts"]]


def generated(n_listens: int, n_users: int | None, tmp: Path, *, per: str,
              shape_name: str = "seed") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``pipeline synth --shape <shape_name>`` at this size, as (user, item) listens; ``per`` track or artist."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline import synth

    out = tmp / f"{shape_name}-{n_listens}-{n_users}"
    if not out.exists():
        for old in tmp.glob("*-*-*"):  # one generated log on disk at a time
            shutil.rmtree(old)
        synth.generate(out, shape=shape_name, n_listens=n_listens, n_users=n_users, seed=0)
    table = pq.read_table(out / "interactions")
    users = pc.cast(pc.utf8_slice_codeunits(table["user_id"], 1), "int32").to_numpy()
    tracks = pc.cast(pc.utf8_slice_codeunits(table["recording_msid"], 5), "int64").to_numpy()
    ts = table["timestamp"].to_numpy()
    if per == "artist":
        names = pq.read_table(out / "tracks.parquet", columns=["recording_msid", "artist_name"])
        ids = pc.cast(pc.utf8_slice_codeunits(names["recording_msid"], 5), "int64").to_numpy()
        codes = pd.factorize(names["artist_name"].to_numpy(zero_copy_only=False))[0]
        lookup = pd.Series(codes, index=ids)
        tracks = lookup.reindex(tracks).to_numpy()
    listens = pd.DataFrame({"user": users, "item": tracks, "ts": ts})
    return listens.assign(plays=1)[["user", "item", "plays"]], listens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--shapes", nargs="+", default=["seed", "calibrated"],
                    help="generator shapes to measure: seed (before calibration), calibrated (after)")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: the real logs live in ../shared/data beside the repository")
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
        for name, load in (("HetRec Last.fm 2k (per artist)", hetrec), ("Audioscrobbler 2005 small (per artist)",
                                                                         audioscrobbler),
                           ("Last.fm 1K fixture (per track)", lastfm1k)):
            pairs, listens = load()
            rows.append({"log": name, "kind": "real", **shape(pairs, listens)})
            print(rows[-1], flush=True)
        real = {r["log"]: r for r in rows}
        sizes = [(f"at HetRec's size ({real['HetRec Last.fm 2k (per artist)']['users']:,} users)",
                  real["HetRec Last.fm 2k (per artist)"]["plays"], real["HetRec Last.fm 2k (per artist)"]["users"]),
                 (f"at Audioscrobbler's size ({real['Audioscrobbler 2005 small (per artist)']['users']} users)",
                  real["Audioscrobbler 2005 small (per artist)"]["plays"],
                  real["Audioscrobbler 2005 small (per artist)"]["users"]),
                 ("1M listens", 1_000_000, None), ("10M listens", 10_000_000, None)]
        for shape_name in a.shapes:
            for label, n, users in sizes:
                for per in ("artist", "track"):
                    t0 = time.perf_counter()
                    pairs, listens = generated(n, users, Path(tmp), per=per, shape_name=shape_name)
                    rows.append({"log": f"`{shape_name}` {label} (per {per})", "kind": shape_name,
                                 **shape(pairs, listens)})
                    del pairs, listens
                    print(rows[-1], f"{time.perf_counter() - t0:.0f} s", flush=True)
    real_rows = [r for r in rows if r["kind"] == "real"]
    span = {s: (min(r[s] for r in real_rows if r[s] is not None), max(r[s] for r in real_rows if r[s] is not None))
            for s in STATS}
    for r in rows:
        r["outside"] = [s for s in STATS if r["kind"] != "real" and r[s] is not None
                        and not span[s][0] <= round(r[s], 3) <= span[s][1]]
    lines = ["| log | users | items | plays | " + " | ".join(STATS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(STATS)]
    for r in rows:
        cells = ["-" if r[s] is None else f"{r[s]:.3f}" + (" ✗" if s in r["outside"] else "") for s in STATS]
        lines.append(f"| {r['log']} | {r['users']:,} | {r['items']:,} | {r['plays']:,} | " + " | ".join(cells) + " |")
    lines.append("| **range of the real logs** | | | | " + " | ".join(f"{lo:.3f}-{hi:.3f}" for lo, hi in span.values())
                 + " |")
    text = ("Measured by `benchmarks/shape_stats.py` (definitions in its docstring). Generator: `pipeline synth "
            "--shape seed` (before calibration) and `--shape calibrated` (after), seed 0. ✗: outside the range "
            "the real logs span.\n\n" + "\n".join(lines) + "\n")
    print(text)
    out = Path(a.out)
    (out / "shape-stats.md").write_text(text)
    (out / "shape-stats.json").write_text(json.dumps({"rows": rows, "real_range": span}, indent=1))


if __name__ == "__main__":
    main()
