"""The ``github`` source on the real rows and photos, served from 127.0.0.1 with faults injected.

The real pinned tables cannot be reached from here, so they are rebuilt from the reference
output: the rows of the 10k set (``airbnb-madrid-10k/listings.csv``, which the join produced)
for the 814 listings whose real photo is in ``$AIRBNB_DATA_DIR/images`` (byte-identical to the
pinned photos: their git blob ids are those of the vendored manifest), split back into a
listings table and two more-columns tables, with rows the source must leave out. The fetch runs
through the command line with pins for these tables and the real photo manifest.

The fetched photos are compared with the 10k set's files (``airbnb-madrid-10k/images``): the
default fetch must rebuild the reports' dataset byte for byte, the photos scaled from the pinned
originals exactly as the 10k set's were.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from shared.data.acquisition import (DEFAULT_GITHUB_SOURCES, REPORTS_SET, DatasetSet, PhotoScaling,
                                fetch_dataset)
from shared.data.acquisition import REPORTS_LISTINGS_SHA256, FetchReport
from shared.data.acquisition.github import csv_rows, join_tables
from shared.data.acquisition.github_photos import git_blob_id, load_manifest
from shared.data.acquisition.layout import select_listings, write_listings_csv
from shared.data.acquisition.sets import load_set_manifest, set_manifest_rows
from shared.cli import main
from shared.io import sha256_file

try:
    import github_sources as gs
    from acq_server import LocalServer, Reply
except ImportError:  # tests/ imported as a package
    from tests import github_sources as gs
    from tests.acq_server import LocalServer, Reply

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("no_proxy")]

TEN_K = "airbnb-madrid-10k"


@pytest.fixture(scope="module")
def ten_k_dir(real_data_dir) -> Path:
    """The 10k set beside ``$AIRBNB_DATA_DIR`` (skips when absent)."""
    ten_k = real_data_dir.parent / TEN_K
    if not (ten_k / "listings.csv").is_file():
        pytest.skip(f"the 10k reference table is absent: no {ten_k / 'listings.csv'}")
    return ten_k


@pytest.fixture(scope="module")
def reference(real_data_dir, ten_k_dir):
    """(10k header, {ID: 10k row} of the listings with a real photo, {ID: photo bytes})."""
    ten_k = ten_k_dir / "listings.csv"
    header, *rows = gs.read_csv(ten_k)
    photos = {int(path.stem): path.read_bytes()
              for path in (real_data_dir / "images").glob("*.jpg")}
    chosen = {int(row[0]): row for row in rows if int(row[0]) in photos}
    if len(chosen) != len(photos):
        pytest.skip(f"{real_data_dir} holds photos of listings outside the 10k set")
    return header, chosen, photos


def test_real_photos_are_the_pinned_ones(reference):
    _, _, photos = reference
    manifest = load_manifest(DEFAULT_GITHUB_SOURCES.photos.manifest)
    assert all(git_blob_id(data) == manifest[key].blob for key, data in photos.items())


def test_the_814_originals_scale_to_exactly_the_10k_files(reference, ten_k_dir):
    _, chosen, photos = reference
    assert set(photos) <= REPORTS_SET.ids() and len(chosen) == len(photos)
    sample = sorted(photos)[::8][:100]
    identical = [key for key in sample if PhotoScaling().scale(photos[key]) ==
                 (ten_k_dir / "images" / f"{key}.jpg").read_bytes()]
    assert len(sample) == len(identical) == 100


def test_the_shipped_set_manifest_is_the_10k_sets_ids_and_photo_hashes(ten_k_dir):
    shipped = load_set_manifest(REPORTS_SET.manifest)
    assert {key: (photo.sha256, photo.size) for key, photo in shipped.items()} == \
        {key: (sha256, size) for key, sha256, size in set_manifest_rows(ten_k_dir)}
    assert hashlib.sha256((ten_k_dir / "listings.csv").read_bytes()).hexdigest() == \
        REPORTS_SET.listings_sha256


def _serve(server: LocalServer, tmp_path: Path, reference) -> tuple[str, Path, dict]:
    header, chosen, photos = reference
    rows = [dict(zip(header, row, strict=True)) for row in chosen.values()]
    tables = gs.source_tables(rows, gs.excluded_rows(rows[0]))
    pins = gs.pins_for(tables, DEFAULT_GITHUB_SOURCES.photos.manifest)
    base = gs.serve(server, pins, tables, {key: Reply(data) for key, data in photos.items()})
    return base, gs.write_pins_json(pins, tmp_path / "pins.json"), tables


def test_tables_rebuilt_from_all_10k_rows_give_the_pinned_listings_csv(ten_k_dir, tmp_path):
    """The join and the writer on the whole set (no photos): the pinned sha256, ff9f587b..."""
    header, *rows = gs.read_csv(ten_k_dir / "listings.csv")
    rows = [dict(zip(header, row, strict=True)) for row in rows]
    tables = gs.source_tables(rows, gs.excluded_rows(rows[0]))
    files = {}
    for path, data in tables.items():
        files[Path(path).name] = tmp_path / Path(path).name
        files[Path(path).name].write_bytes(data)
    report = FetchReport("github", tmp_path, {})
    columns, kept = join_tables(files, gs.pins_for(tables, REPORTS_SET.manifest), report)
    listings = sorted(select_listings(kept, report, count_rows=False))
    assert columns == header and len(listings) == 10351
    write_listings_csv(tmp_path / "listings.csv", csv_rows(columns, listings), columns)
    assert sha256_file(tmp_path / "listings.csv") == REPORTS_LISTINGS_SHA256


def _fetch(base: str, pins_file: Path, dest: Path, *extra: str) -> int:
    return main(["data", "fetch", "--source", "github", "--url", base, "--pins", str(pins_file),
                 "--dest", str(dest), "--timeout", "1", "--retries", "1", "--workers", "4",
                 "--no-progress", *extra])


def _ten_k_lines(ten_k_dir: Path) -> tuple[bytes, dict[int, bytes]]:
    """The 10k set's listings.csv as (header, {ID: its record}), bytes exactly as written."""
    header, records = _csv_records(ten_k_dir / "listings.csv")
    assert len(records) == 10351
    return header, records


def _csv_records(path: Path) -> tuple[bytes, dict[int, bytes]]:
    """A listings.csv as (header, {ID: its record}), bytes exactly as written (a record is one
    line, or more when a quoted field holds a line break)."""
    text = path.read_bytes().decode("utf-8")
    consumed: list[str] = []

    def lines():
        for line in io.StringIO(text, newline="\n"):  # lines end at LF only
            consumed.append(line)
            yield line

    records = []
    for record in csv.reader(lines(), delimiter=";"):  # reads no further than the record
        records.append((record[0], "".join(consumed).encode("utf-8")))
        consumed.clear()
    (_, header), *rest = records
    assert b"".join(raw for _, raw in records) == text.encode("utf-8")
    return header, {int(listing_id): raw for listing_id, raw in rest}


def _subset_set(ten_k_dir: Path, ids, path: Path) -> DatasetSet:
    """The reports' set cut down to ``ids``: their shipped photo hashes and the sha256 of the
    10k set's listings.csv restricted to their lines."""
    shipped = load_set_manifest(REPORTS_SET.manifest)
    path.write_text("ID,sha256,bytes\n" + "".join(
        f"{key},{shipped[key].sha256},{shipped[key].size}\n" for key in sorted(ids)))
    header, lines = _ten_k_lines(ten_k_dir)
    expected = header + b"".join(lines[key] for key in sorted(ids))
    return DatasetSet(REPORTS_SET.name, path, hashlib.sha256(expected).hexdigest())


def _jpeg(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write_manifest(path: Path, photos: dict[int, bytes]) -> Path:
    """The real photo manifest with ``photos`` added (or replacing the pinned ones)."""
    pinned = {key: (photo.blob, photo.size)
              for key, photo in load_manifest(DEFAULT_GITHUB_SOURCES.photos.manifest).items()}
    pinned.update({key: (git_blob_id(data), len(data)) for key, data in photos.items()})
    path.write_text("ID,git_blob_sha1,bytes\n" + "".join(
        f"{key},{blob},{size}\n" for key, (blob, size) in sorted(pinned.items())))
    return path


EXTRA_IDS = (900_000_101, 900_000_102, 900_000_103)


def test_default_fetch_rebuilds_the_10k_files_and_all_gives_the_larger_set(
        reference, ten_k_dir, tmp_path, capsys):
    header, chosen, photos = reference
    template = dict(zip(header, chosen[min(chosen)], strict=True))
    extra_rows = [{**template, "ID": str(key), "Latitude": f"40.9{index}123456789",
                   "Longitude": f"-3.9{index}123456789"} for index, key in enumerate(EXTRA_IDS)]
    extra_photos = {key: _jpeg((639, 426), (40 * index, 120, 30))
                    for index, key in enumerate(EXTRA_IDS)}
    rows = [dict(zip(header, row, strict=True)) for row in chosen.values()] + extra_rows
    tables = gs.source_tables(rows, gs.excluded_rows(rows[0]))
    pins = gs.pins_for(tables, _write_manifest(tmp_path / "manifest.csv", extra_photos))
    csv_header, ten_k_lines = _ten_k_lines(ten_k_dir)
    expected_csv = csv_header + b"".join(ten_k_lines[key] for key in sorted(chosen))
    ten_k_images = ten_k_dir / "images"
    with LocalServer() as server:
        served = {key: Reply(data) for key, data in {**photos, **extra_photos}.items()}
        base = gs.serve(server, pins, tables, served)
        pins_file = gs.write_pins_json(pins, tmp_path / "pins.json")
        dest = tmp_path / "data"

        assert _fetch(base, pins_file, dest) == 0

        output = capsys.readouterr().out
        assert (dest / "listings.csv").read_bytes() == expected_csv
        assert sorted(int(path.stem) for path in (dest / "images").iterdir()) == sorted(chosen)
        assert all((dest / "images" / f"{key}.jpg").read_bytes() ==
                   (ten_k_images / f"{key}.jpg").read_bytes() for key in chosen)
        report = json.loads((dest / "fetch_report.json").read_text())
        assert report["dataset"] == "airbnb-madrid-10k"
        assert report["listings"]["dropped"]["not_in_airbnb-madrid-10k"] == len(EXTRA_IDS)
        identity = report["identity"]
        assert identity["photos"] == {"identical": len(chosen), "differing": 0, "unchecked": 0}
        assert (identity["byte_identical"], identity["missing_listings"]) == \
            (False, 10351 - len(chosen))  # only these listings are served
        assert "the set is not byte-identical to the reports' dataset (airbnb-madrid-10k): " \
            f"{10351 - len(chosen)} listing(s) missing" in output

        # judged against a set of exactly these listings, the same folder is byte-identical,
        # and nothing is fetched again
        server.hits.clear()
        subset = _subset_set(ten_k_dir, chosen, tmp_path / "subset.csv")
        summary = fetch_dataset(dest, "github", url=base, github_sources=pins, dataset=subset,
                                progress=False)
        assert (summary["exit_code"], summary["identity"]["byte_identical"]) == (0, True)
        assert summary["photos"]["already_present"] == len(chosen)
        assert not any(path.endswith(".jpg") for path in server.hits)

        assert _fetch(base, pins_file, tmp_path / "all", "--all") == 0

        every = tmp_path / "all"
        written = gs.read_csv(every / "listings.csv")
        assert written[0] == header
        assert [int(row[0]) for row in written[1:]] == sorted([*chosen, *EXTRA_IDS])
        _, every_lines = _csv_records(every / "listings.csv")
        assert all(every_lines[key] == ten_k_lines[key] for key in chosen)
        for key in chosen:
            assert (every / "images" / f"{key}.jpg").read_bytes() == \
                (ten_k_images / f"{key}.jpg").read_bytes()
        for key in EXTRA_IDS:
            with Image.open(every / "images" / f"{key}.jpg") as image:
                assert image.size == (336, 224)
        identity = json.loads((every / "fetch_report.json").read_text())["identity"]
        assert identity["photos"] == {"identical": len(chosen), "differing": 0,
                                      "unchecked": len(EXTRA_IDS)}
        assert identity["byte_identical"] is None


def test_a_tampered_photo_or_another_scaling_is_not_byte_identical(
        reference, ten_k_dir, tmp_path):
    header, chosen, photos = reference
    ids = sorted(chosen)[:30]
    rows = [dict(zip(header, chosen[key], strict=True)) for key in ids]
    tables = gs.source_tables(rows)
    subset = _subset_set(ten_k_dir, ids, tmp_path / "subset.csv")
    victim = ids[3]
    with Image.open(io.BytesIO(photos[victim])) as image:
        altered = image.convert("RGB")
    altered.paste((255, 0, 0), (0, 0, 40, 40))
    buffer = io.BytesIO()
    altered.save(buffer, "JPEG", quality=90)
    tampered = buffer.getvalue()

    def fetch(dest: Path, pins, dataset=subset, lines=None) -> dict:
        with gs.logged(lines):
            return fetch_dataset(dest, "github", url=base, github_sources=pins, dataset=dataset,
                                 timeout=1.0, retries=0, progress=False)

    with LocalServer() as server:
        real_pins = gs.pins_for(tables, DEFAULT_GITHUB_SOURCES.photos.manifest)
        base = gs.serve(server, real_pins, tables, {key: Reply(photos[key]) for key in ids})
        assert fetch(tmp_path / "clean", real_pins)["identity"]["byte_identical"] is True

        # another scaling: every photo differs, each named with both hashes, all kept
        lines: list[str] = []
        other = DatasetSet(subset.name, subset.manifest, subset.listings_sha256,
                           scaling=PhotoScaling(shorter_side=200))
        summary = fetch(tmp_path / "scaled", real_pins, other, lines)
        assert summary["exit_code"] == 0 and summary["identity"]["byte_identical"] is False
        assert summary["identity"]["photos"]["differing"] == len(ids)
        assert len([line for line in lines if ": sha256 " in line and "images/" in line]) == 20
        assert f"and {len(ids) - 20} more photos differ" in "\n".join(lines)
        assert "not byte-identical to the reports' dataset" in lines[-1]

        # a tampered photo served for the pinned one: refused (git blob id), listing missing
        gs.route_photo(server, real_pins, victim, Reply(tampered))
        summary = fetch(tmp_path / "tampered", real_pins)
        assert summary["exit_code"] == 1 and summary["failures"][0]["reason"] == "blob_mismatch"
        assert summary["identity"]["byte_identical"] is False
        assert summary["identity"]["missing_ids"] == [str(victim)]

        # the same photo pinned as the source (a mirror of another commit): its scaled file is
        # not the reports' one, named with both hashes, and kept
        pins = gs.pins_for(tables, _write_manifest(tmp_path / "manifest.csv", {victim: tampered}))
        lines = []
        summary = fetch(tmp_path / "mirror", pins, lines=lines)
        expected = load_set_manifest(REPORTS_SET.manifest)[victim].sha256
        got = hashlib.sha256((tmp_path / "mirror" / "images" / f"{victim}.jpg").read_bytes())
        assert [line for line in lines if line.startswith(f"images/{victim}.jpg")] == [
            f"images/{victim}.jpg: sha256 {got.hexdigest()} is not the reports' dataset's "
            f"{expected} (scaled: {PhotoScaling().recipe}); kept, it decodes"]
        assert summary["exit_code"] == 0 and summary["identity"]["byte_identical"] is False
        assert summary["identity"]["photos"] == {"identical": len(ids) - 1, "differing": 1,
                                                 "unchecked": 0}


def test_real_rows_and_photos_with_faults_resume_and_agree_with_data_check(
        reference, real_data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AIRBNB_DL_CACHE", str(tmp_path / "cache"))
    header, chosen, photos = reference
    ids = sorted(chosen)
    with LocalServer() as server:
        base, pins_file, _ = _serve(server, tmp_path, reference)
        pins = gs.GithubSources.from_json(pins_file)
        faults = {ids[0]: (Reply(status=404), "http_404"),
                  ids[1]: (Reply(b"<html><body>Not here</body></html>"), "not_an_image"),
                  ids[2]: (Reply(photos[ids[2]], truncate_at=1000), "incomplete"),
                  ids[3]: (Reply(photos[ids[3]], delay=3.0), "timeout"),
                  ids[4]: (Reply(photos[ids[5]]), "wrong_photo")}
        recovering = ids[6]
        for key, (reply, _) in faults.items():
            gs.route_photo(server, pins, key, reply)
        gs.route_photo(server, pins, recovering, [Reply(status=500), Reply(photos[recovering])])
        dest = tmp_path / "data"

        assert _fetch(base, pins_file, dest) == 1
        capsys.readouterr()
        report = json.loads((dest / "fetch_report.json").read_text())
        intact = [key for key in ids if key not in faults]
        assert {int(e["listing_id"]): e["reason"] for e in report["failures"]} == \
            {key: reason for key, (_, reason) in faults.items()}
        assert gs.read_csv(dest / "listings.csv") == [header] + [chosen[key] for key in intact]
        assert sorted(int(path.stem) for path in (dest / "images").iterdir()) == intact
        ten_k_images = real_data_dir.parent / TEN_K / "images"
        assert all((dest / "images" / f"{key}.jpg").read_bytes() ==
                   (ten_k_images / f"{key}.jpg").read_bytes() for key in intact)
        assert not [path for path in dest.rglob("*") if path.name.startswith(".")]

        assert main(["data", "check", "--data-dir", str(dest), "--json"]) == 0
        check = json.loads(capsys.readouterr().out)
        assert check["rows_read"] == check["rows_usable"] == report["listings"]["written"] \
            == len(intact) == len(ids) - len(faults)
        assert check["drops"] == {}

        # a rerun fetches only what is missing (the faults are still there)
        server.hits.clear()
        assert _fetch(base, pins_file, dest) == 1
        photo_hits = {int(Path(path).stem) for path in server.hits if path.endswith(".jpg")}
        assert photo_hits == set(faults)
        assert not any(path.endswith(".csv") for path in server.hits)

        # once the server is fixed, a rerun completes the set
        for key in faults:
            gs.route_photo(server, pins, key, Reply(photos[key]))
        assert _fetch(base, pins_file, dest) == 0
        assert gs.read_csv(dest / "listings.csv") == [header] + [chosen[key] for key in ids]


def test_real_tables_that_are_not_the_pinned_ones_write_nothing(reference, tmp_path, capsys):
    with LocalServer() as server:
        base, pins_file, tables = _serve(server, tmp_path, reference)
        path = "airbnb_data_warehouse.csv"
        server.route(f"/{gs.LISTINGS_REPO}/{gs.COMMIT}/{path}",
                     Reply(tables[path].replace(b"Madrid", b"Madrld", 1)))
        dest = tmp_path / "data"

        assert _fetch(base, pins_file, dest) == 2
        assert not dest.exists()
        output = capsys.readouterr().out
        assert "sha256 mismatch" in output and f"nothing was written into {dest}" in output
        assert not any(key.endswith(".jpg") for key in server.hits)
