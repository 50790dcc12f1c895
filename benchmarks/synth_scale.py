"""The seed-shaped synthetic log at scale: wall time, peak RSS and the shape statistics.

    flock /tmp/bench.lock .venv/bin/python benchmarks/synth_scale.py [--listens 20000000 ...] [--demo]

For each size, ``pipeline synth --shape seed`` into a temporary folder (deleted after), measured
with ``_measure.measure`` (peak resident memory of this process, sampled every 50 ms). The
statistics are the generator's own exact counts (``summary.json``): users, heard tracks,
share of tracks heard once, duplicate listens, tracks without an MBID. ``--demo`` adds the
``demo`` shape at the same sizes (its track table is still built in one piece).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure, table  # noqa: E402

from pipeline import synth  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listens", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    ap.add_argument("--demo", action="store_true")
    a = ap.parse_args()
    rows = []
    for n in a.listens:
        for shape in ["seed"] + (["demo"] if a.demo else []):
            tmp = Path(tempfile.mkdtemp(prefix="synth_scale_"))
            try:
                with measure() as m:
                    s = synth.generate(tmp / "log", shape=shape, n_listens=n)
                size = sum(p.stat().st_size for p in (tmp / "log").rglob("*") if p.is_file())
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            single = s.get("single_listen_share", "")
            rows.append({
                "shape": shape, "listens": f"{s['listens']:,}", "users": f"{s['users']:,}", "tracks": f"{s['tracks']:,}",
                "tracks / listen": s["tracks"] / s["listens"], "heard once": single,
                "duplicates": f"{s['duplicates_planted']:,}", "no MBID": 1 - s["tracks_with_mbid"] / s["tracks"],
                "seconds": m.seconds, "peak MB": m.peak_mb, "MB on disk": size / 2**20,
            })
            print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
