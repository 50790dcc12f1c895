"""Every loader on the real files in ../shared/data and on tiny files, and one test per kind of bad input."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.loaders import COLUMNS, load

pytestmark = pytest.mark.spark


def rows(loaded):
    return loaded.df.orderBy("source_row").toPandas()


@pytest.mark.data
def test_lastfm1k_fixture(spark, shared_data):
    path = shared_data / "lastfm-1k-fixture" / "userid-timestamp-artid-artname-traid-traname.head5000.tsv"
    loaded = load(spark, "lastfm1k", path)
    df = rows(loaded)
    assert tuple(df.columns) == COLUMNS and loaded.has_timestamps
    assert len(df) == 5000 and df["user_id"].nunique() == 2
    assert df["track_mbid"].isna().sum() == 1396
    assert df["source_row"].tolist() == list(range(5000))
    assert df["parse_error"].isna().all() and df["timestamp"].notna().all()
    assert df.loc[0, "timestamp"] == dt.datetime(2009, 5, 4, 23, 8, 57)


@pytest.mark.data
def test_hetrec_user_artists(spark, shared_data):
    loaded = load(spark, "hetrec", shared_data / "hetrec2011-lastfm-2k")
    df = rows(loaded)
    assert len(df) == 92_834 and df["user_id"].nunique() == 1_892 and not loaded.has_timestamps
    assert df["play_count"].sum() > 69_000_000 and df["parse_error"].isna().all()
    assert df["artist_name"].notna().mean() > 0.99  # names joined from artists.dat


@pytest.mark.data
def test_audioscrobbler_applies_the_alias_table(spark, shared_data):
    loaded = load(spark, "audioscrobbler", shared_data / "audioscrobbler-2005-small")
    df = rows(loaded)
    assert len(df) == 49_481 and df["user_id"].nunique() == 50
    assert loaded.stats["aliases_applied"] > 0
    aliases = dict(line.split("\t") for line in (shared_data / "audioscrobbler-2005-small" / "artist_alias_small.txt")
                   .read_text().split("\n") if "\t" in line)
    assert not set(df["source_track_id"]) & {bad for bad, good in aliases.items() if good.strip() and bad != good.strip()}


def test_listenbrainz_folder(spark, tmp_path):
    (tmp_path / "interactions").mkdir()
    ts = pa.array([1_700_000_000_000_000, 1_700_000_060_000_000], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"user_id": ["a", "b"], "recording_msid": ["m1", "m2"], "timestamp": ts}),
                   tmp_path / "interactions" / "part-0.parquet")
    pq.write_table(pa.table({"recording_msid": ["m1"], "artist_name": ["X"], "track_name": ["Y"],
                             "recording_mbid": ["mb-1"]}), tmp_path / "tracks.parquet")
    df = rows(load(spark, "listenbrainz", tmp_path))
    assert df["track_mbid"].tolist()[0] == "mb-1" and df["track_mbid"].isna().tolist()[1]
    assert df["source_track_id"].tolist() == ["m1", "m2"] and df["play_count"].tolist() == [1, 1]


def test_generic_csv_with_a_column_mapping(spark, tmp_path):
    f = tmp_path / "plays.csv"
    f.write_text("who,song,band,when,n\nu1,Hey,Beatles,2024-01-02T03:04:05Z,3\nu2,Hey,Beatles,1704164645,x\n")
    loaded = load(spark, "generic", f, columns={"user_id": "who", "track_name": "song", "artist_name": "band",
                                                 "timestamp": "when", "play_count": "n"})
    df = rows(loaded)
    assert df["play_count"].tolist()[0] == 3 and df["timestamp"].notna().all()
    assert df["parse_error"].tolist()[1] == "play_count: not an integer 'x'"


def test_generic_parquet(spark, tmp_path):
    pq.write_table(pa.table({"user": ["a"], "mbid": ["m"], "ts": pa.array([0], pa.timestamp("s", tz="UTC"))}),
                   tmp_path / "x.parquet")
    loaded = load(spark, "generic", tmp_path / "x.parquet", columns={"user_id": "user", "track_mbid": "mbid", "timestamp": "ts"})
    assert rows(loaded)["track_mbid"].tolist() == ["m"] and loaded.has_timestamps


def test_source_row_is_file_order_then_line_order_across_files_and_splits(spark, tmp_path):
    """Spark packs file splits biggest first; source_row must still be path order, then line order."""
    (tmp_path / "plays").mkdir()
    sizes = {"a.csv": 5, "b.csv": 4000, "c.csv": 30}  # b is read first, in several splits
    for name, n in sizes.items():
        lines = "".join(f"{name}-{i},t{i}\n" for i in range(n))
        (tmp_path / "plays" / name).write_text("user,track\n" + lines)
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "8k")
    try:
        df = load(spark, "generic", tmp_path / "plays", columns={"user_id": "user", "source_track_id": "track"}).df
        got = df.select("source_row", "user_id").toPandas()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
    expected = [f"{name}-{i}" for name, n in sizes.items() for i in range(n)]
    assert sorted(got["source_row"]) == list(range(len(expected)))
    assert got.sort_values("source_row")["user_id"].tolist() == expected


def test_source_row_of_a_parquet_folder_follows_file_order(spark, tmp_path):
    (tmp_path / "interactions").mkdir()
    for part, users in (("part-0", ["a"]), ("part-1", ["b", "c"])):  # the bigger file is packed first
        n = len(users) * 501
        pq.write_table(pa.table({"user_id": users + ["x"] * (n - len(users)), "recording_msid": ["m"] * n,
                                 "timestamp": pa.array([1_700_000_000_000_000] * n, pa.timestamp("us", tz="UTC"))}),
                       tmp_path / "interactions" / f"{part}.parquet")
    pq.write_table(pa.table({"recording_msid": ["m"], "artist_name": ["X"], "track_name": ["Y"], "recording_mbid": ["mb"]}),
                   tmp_path / "tracks.parquet")
    df = rows(load(spark, "listenbrainz", tmp_path))
    assert df["source_row"].tolist() == list(range(501 + 1002))
    assert df["user_id"][0] == "a" and df["user_id"][501] == "b" and df["user_id"][502] == "c"


@pytest.mark.parametrize("name,text,sep", [
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,11,3.5,964982224\n", ","),
    ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", "\t"),
    ("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n", "::"),
])
def test_movielens_files(spark, tmp_path, name, text, sep):
    (tmp_path / name).write_text(text)
    df = rows(load(spark, "movielens", tmp_path))
    assert len(df) == 2 and df["timestamp"].notna().all() and (df["play_count"] == 1).all()


# ---- bad input: a clear error, or rows that carry their reason -------------------------------

def test_a_path_that_does_not_exist(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv does not exist"):
        load(spark, "lastfm1k", tmp_path / "nope.tsv")


def test_an_empty_file(spark, tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(ValueError, match="empty.tsv has no rows"):
        load(spark, "lastfm1k", tmp_path / "empty.tsv")


def test_a_missing_column(spark, tmp_path):
    (tmp_path / "x.csv").write_text("user,ts\nu1,2024-01-01\n")
    with pytest.raises(ValueError, match=r"x.csv has no track column.*found \['ts', 'user'\]"):
        load(spark, "generic", tmp_path / "x.csv", columns={"user_id": "user", "timestamp": "ts"})
    with pytest.raises(ValueError, match="lacks the user column 'user_id'.*columns="):
        load(spark, "generic", tmp_path / "x.csv")


def test_a_wrong_separator(spark, tmp_path):
    (tmp_path / "commas.tsv").write_text("user_000001,2009-05-04T23:08:57Z,,Deep Dish,,Song\n")
    with pytest.raises(ValueError, match=r"commas.tsv: no '\\t' separator found"):
        load(spark, "lastfm1k", tmp_path / "commas.tsv")


def test_bytes_that_are_not_utf8_are_flagged_per_row(spark, tmp_path):
    good = "user_1\t2009-05-04T23:08:57Z\t\tArtist\t\tSong\n".encode()
    bad = b"user_1\t2009-05-04T23:09:57Z\t\tCaf\xe9 Tacuba\t\tSong\n"  # Latin-1, not UTF-8
    (tmp_path / "mixed.tsv").write_bytes(good + bad)
    df = rows(load(spark, "lastfm1k", tmp_path / "mixed.tsv"))
    assert df["parse_error"].isna().tolist() == [True, False]
    assert "not UTF-8" in df["parse_error"].tolist()[1]


def test_unparseable_timestamps_and_counts_carry_a_reason(spark, tmp_path):
    (tmp_path / "t.tsv").write_text("u\tyesterday\t\tA\t\tS\nu\t2009-05-04T23:08:57Z\t\tA\t\tS\n")
    df = rows(load(spark, "lastfm1k", tmp_path / "t.tsv"))
    assert df["parse_error"].tolist()[0] == "timestamp: unparseable 'yesterday'" and df["parse_error"].isna().tolist()[1]
    (tmp_path / "plays.txt").write_text("1 10 5\n1 11 many\n1 12 -3\n")
    (tmp_path / "user_artist_data.txt").write_text("1 10 5\n1 11 many\n1 12 -3\n")
    df = rows(load(spark, "audioscrobbler", tmp_path / "user_artist_data.txt"))
    assert df["parse_error"].tolist()[1] == "playcount: not an integer 'many'"
    assert df["play_count"].tolist()[2] == -3  # parses; the validate stage quarantines counts < 1


def test_a_truncated_parquet_file(spark, tmp_path):
    pq.write_table(pa.table({"user_id": ["a"] * 1000, "recording_msid": ["m"] * 1000,
                             "timestamp": pa.array([0] * 1000, pa.timestamp("us", tz="UTC"))}), tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "interactions.parquet").write_bytes(data[: len(data) // 2])
    pq.write_table(pa.table({"recording_msid": ["m"], "artist_name": ["A"], "track_name": ["T"],
                             "recording_mbid": [None]}), tmp_path / "tracks.parquet")
    with pytest.raises(ValueError, match="interactions.parquet is not a readable Parquet file.*truncated"):
        load(spark, "listenbrainz", tmp_path)
