"""``input_format: auto`` and the folder of ListenBrainz dumps, without Spark: names, first lines, archives."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import releases

from pipeline import increments, loaders

PUBLISHED = ["listenbrainz_dump", "listenbrainz_spark", "lastfm1k", "lastfm360k", "msd_taste", "lfm1b", "lfm2b", "yambda"]


@pytest.mark.parametrize("fmt", PUBLISHED)
def test_auto_recognises_each_published_log_from_its_folder_and_its_archive(tmp_path, fmt):
    made = getattr(releases, fmt)(tmp_path)
    for source in (made.folder, made.archive):
        found = loaders.detect(source)
        assert found.format == fmt, (source, found)
        assert found.why  # it names what it saw


@pytest.mark.data
@pytest.mark.parametrize("folder,fmt", [("hetrec2011-lastfm-2k", "hetrec"), ("audioscrobbler-2005-small", "audioscrobbler"),
                                        ("lastfm-1k-fixture", "lastfm1k")])
def test_auto_recognises_the_real_releases(shared_data, folder, fmt):
    assert loaders.detect(shared_data / folder).format == fmt


@pytest.mark.parametrize("fmt", ["lastfm1k", "lastfm360k", "msd_taste", "lfm1b"])
def test_a_renamed_file_is_recognised_by_its_first_line(tmp_path, fmt):
    made = getattr(releases, fmt)(tmp_path)
    data = next(f for f in sorted(made.folder.iterdir()) if loaders.detect(f).format == fmt and "profile" not in f.name)
    renamed = tmp_path / "my-listens.tsv"
    shutil.copy(data, renamed)
    found = loaders.detect(renamed)
    assert found.format == fmt and "first line" in found.why


def test_an_unknown_layout_gets_one_line_naming_what_was_found_and_the_formats(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(loaders.UnknownLayout) as e:
        loaders.detect(tmp_path)
    line = str(e.value)
    assert "\n" not in line and "cover.jpg" in line and "notes.md" in line
    assert all(f in line for f in ("listenbrainz_dump", "lastfm360k", "msd_taste", "yambda", "generic"))


def test_a_folder_of_dumps_is_a_partition_per_day_the_full_first_then_the_incrementals(tmp_path):
    day = dt.datetime(2025, 6, 1, 0, 0, 3, tzinfo=dt.timezone.utc)
    made = [releases.listenbrainz_dump(tmp_path, dump_id=10, when=day, n=5),  # the full of the 1st ...
            releases.listenbrainz_dump(tmp_path, dump_id=11, when=day, n=5, incremental=True, seed=6),  # ... and its day
            releases.listenbrainz_dump(tmp_path, dump_id=12, when=day + dt.timedelta(days=1), n=5, incremental=True,
                                       seed=7),
            releases.listenbrainz_dump(tmp_path, dump_id=14, when=day + dt.timedelta(days=14), n=5, seed=8),  # the 15th
            releases.listenbrainz_dump(tmp_path, dump_id=13, when=day + dt.timedelta(days=14), n=5, incremental=True,
                                       seed=9)]
    for m in made:
        shutil.rmtree(m.folder)  # as downloaded: the archives only
        (tmp_path / f"{m.archive.name}.md5").write_text("0" * 32)  # checksums beside them are no data
    assert increments.is_partitioned(tmp_path) and not increments.is_partitioned(made[0].archive)
    parts, left_out = increments.dump_partitions(tmp_path)
    assert [(p.name, p.path.name) for p in parts] == [
        ("date=2025-06-01", made[0].archive.name), ("date=2025-06-02", made[2].archive.name),
        ("date=2025-06-15", made[4].archive.name)]  # the 15th's full adds nothing the incrementals miss
    assert left_out == [made[1].archive.name, made[3].archive.name]
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(ValueError, match=r"mixes ListenBrainz dumps with other entries \['notes.md'\]"):
        increments.raw_partitions(tmp_path)
