"""The ``github`` source end to end against a real HTTP server on 127.0.0.1, on small tables.

The tables are written the way the pinned repositories hold them (tests/github_sources.py) from
the rows ``listings.csv`` must hold, so the expected output is known cell for cell. Photos are a
few generated JPEGs; every fault the source must survive is scripted on the server.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from shared.acquisition import (DEFAULT_GITHUB_SOURCES, DEFAULT_SOURCE, DEFAULT_SOURCE_URLS,
                                REPORT_FILE, SOURCES, GithubSources, fetch_dataset)
from shared.acquisition.github import git_blob_id, load_manifest
from shared.cli import build_parser, main
from shared.dataset import load_dataset
from shared.schema import OPENDATASOFT_COLUMNS

try:
    import github_sources as gs
    from acq_server import LocalServer, Reply
except ImportError:  # tests/ imported as a package
    from tests import github_sources as gs
    from tests.acq_server import LocalServer, Reply

pytestmark = pytest.mark.usefixtures("no_proxy")  # every test talks to 127.0.0.1

COLUMNS = [name for name in OPENDATASOFT_COLUMNS
           if name in {*gs.LISTINGS_TABLE_COLUMNS, *gs.MORE_COLUMNS}]
TRICKY_STREET = 'Calle "Mayor", 5; piso\n2, Madrid'


def output_row(listing_id: int, index: int) -> dict[str, str]:
    """One row as listings.csv must hold it (48 columns, text)."""
    row = {name: f"{name} {listing_id}" for name in COLUMNS}
    latitude, longitude = f"40.4{index:04d}1234567", f"-3.7{index:04d}7654321"
    row.update(ID=str(listing_id), City="Madrid", State="Comunidad de Madrid", Country="Spain",
               Price=f"{40 + index}.0", Latitude=latitude, Longitude=longitude,
               Geolocation=f"{latitude}, {longitude}", Street=TRICKY_STREET,
               **{"Host Name": "José", "Square Feet": "", "Weekly Price": ""})
    return row


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (seed * 37 % 256, 90, 200)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Setup:
    """Rows, tables, photos and pins of one synthetic source, served by ``server``."""

    def __init__(self, tmp_path: Path, server: LocalServer, ids: list[int],
                 unphotographed: tuple[int, ...] = ()) -> None:
        self.rows = {listing_id: output_row(listing_id, index)
                     for index, listing_id in enumerate([*ids, *unphotographed])}
        self.photos = {listing_id: jpeg(listing_id) for listing_id in ids}
        self.tables = gs.source_tables(list(self.rows.values()),
                                       gs.excluded_rows(self.rows[ids[0]]))
        manifest = gs.write_manifest(tmp_path / "manifest.csv", self.photos)
        self.pins = gs.pins_for(self.tables, manifest)
        self.server = server
        self.base = gs.serve(server, self.pins, self.tables,
                             {key: Reply(data) for key, data in self.photos.items()})

    def fetch(self, dest: Path, **options) -> dict:
        settings = {"url": self.base, "timeout": 1.0, "retries": 1, "backoff": 0.01,
                    "progress": False, "log": None, "github_sources": self.pins}
        return fetch_dataset(dest, "github", **{**settings, **options})

    def expected(self, ids) -> list[list[str]]:
        return [COLUMNS] + [[self.rows[key][name] for name in COLUMNS] for key in sorted(ids)]

    def photo_hits(self, listing_id: int) -> int:
        return self.server.hits[gs.photo_route(self.pins, listing_id)]


def no_partial_files(dest: Path) -> bool:
    return not [path for path in dest.rglob("*") if path.name.startswith(".")]


# --------------------------------------------------------------------------- the happy path


def test_builds_the_joined_table_and_photos_and_a_rerun_fetches_nothing(tmp_path, server):
    setup = Setup(tmp_path, server, [31, 12, 205], unphotographed=(77,))
    dest = tmp_path / "data"

    summary = setup.fetch(dest)

    assert (summary["status"], summary["exit_code"]) == ("complete", 0)
    assert gs.read_csv(dest / "listings.csv") == setup.expected([12, 31, 205])
    assert len(COLUMNS) == 48
    # the listings table wins on shared columns (State differs in the more-columns tables)
    assert {row[COLUMNS.index("State")] for row in gs.read_csv(dest / "listings.csv")[1:]} == \
        {"Comunidad de Madrid"}
    for listing_id, data in setup.photos.items():
        assert (dest / "images" / f"{listing_id}.jpg").read_bytes() == data
    assert summary["listings"] == {"source_rows": 7, "written": 3, "dropped": {
        "not_in_madrid": 1, "no_positive_price": 2, "no_photo_in_repository": 1}}
    assert summary["photos"]["fetched"] == 3 and summary["failures"] == []
    assert json.loads((dest / REPORT_FILE).read_text()) == summary
    assert no_partial_files(dest)

    hits = dict(server.hits)
    again = setup.fetch(dest)
    assert server.hits == hits, "a rerun must fetch nothing that is already verified"
    assert set(again["files"].values()) == {"already_present"}
    assert (again["photos"]["already_present"], again["exit_code"]) == (3, 0)
    assert gs.read_csv(dest / "listings.csv") == setup.expected([12, 31, 205])


def test_the_project_data_check_agrees_with_the_report(tmp_path, server, capsys):
    setup = Setup(tmp_path, server, [5, 6, 7, 8])
    dest = tmp_path / "data"
    route = gs.photo_route(setup.pins, 6)
    server.route(route, Reply(status=404))
    summary = setup.fetch(dest)

    assert main(["data", "check", "--data-dir", str(dest), "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert check["rows_read"] == check["rows_usable"] == summary["listings"]["written"] == 3
    assert check["drops"] == {}
    assert sorted(load_dataset(dest).ids.tolist()) == [5, 7, 8]
    assert [entry["listing_id"] for entry in summary["failures"]] == ["6"]


# --------------------------------------------------------------------------- faults


def test_each_photo_fault_is_dropped_or_retried_and_counted_by_reason(tmp_path, server):
    ids = [101, 102, 103, 104, 105, 106, 107, 108]
    setup = Setup(tmp_path, server, ids)
    html = b"<!DOCTYPE html><html><body>Rate limited</body></html>"
    other_jpeg = jpeg(999)  # a valid JPEG, not the pinned one
    faults = {
        102: Reply(status=404),
        103: Reply(html, headers={"Content-Type": "image/jpeg"}),
        104: Reply(setup.photos[104], truncate_at=len(setup.photos[104]) // 2),
        105: [Reply(status=503), Reply(setup.photos[105])],  # recovers on the retry
        106: Reply(setup.photos[106], delay=3.0),  # longer than the 1 s timeout
        107: Reply(setup.photos[101]),  # another listing's photo
        108: Reply(other_jpeg),
    }
    for listing_id, replies in faults.items():
        gs.route_photo(server, setup.pins, listing_id, replies)
    dest = tmp_path / "data"

    started = time.monotonic()
    summary = setup.fetch(dest)

    assert time.monotonic() - started < 12
    assert (summary["status"], summary["exit_code"]) == ("incomplete", 1)
    assert summary["photos"]["failed_by_reason"] == {
        "blob_mismatch": 1, "http_404": 1, "incomplete": 1, "not_an_image": 1, "timeout": 1,
        "wrong_photo": 1}
    reasons = {entry["listing_id"]: entry["reason"] for entry in summary["failures"]}
    assert reasons == {"102": "http_404", "103": "not_an_image", "104": "incomplete",
                       "106": "timeout", "107": "wrong_photo", "108": "blob_mismatch"}
    assert "listing 101" in next(e["detail"] for e in summary["failures"] if e["reason"] ==
                                 "wrong_photo")
    assert gs.read_csv(dest / "listings.csv") == setup.expected([101, 105])
    assert sorted(path.name for path in (dest / "images").iterdir()) == ["101.jpg", "105.jpg"]
    assert no_partial_files(dest)
    # retried: 5xx, timeout, truncated body (once each, retries=1); never a 404 or a wrong photo
    assert {key: setup.photo_hits(key) for key in ids} == {
        101: 1, 102: 1, 103: 1, 104: 2, 105: 2, 106: 2, 107: 1, 108: 1}

    for listing_id in faults:  # the server is fixed: a rerun fetches only what is missing
        gs.route_photo(server, setup.pins, listing_id, Reply(setup.photos[listing_id]))
    server.hits.clear()
    again = setup.fetch(dest)
    assert (again["exit_code"], again["photos"]["fetched"], again["photos"]["already_present"]) \
        == (0, 6, 2)
    assert setup.photo_hits(101) == setup.photo_hits(105) == 0
    assert gs.read_csv(dest / "listings.csv") == setup.expected(ids)


def test_a_photo_over_the_size_cap_is_dropped(tmp_path, server):
    setup = Setup(tmp_path, server, [1, 2])
    summary = setup.fetch(tmp_path / "data", max_photo_bytes=len(setup.photos[2]) - 1)
    assert summary["photos"]["failed_by_reason"].get("too_large", 0) >= 1
    assert summary["exit_code"] == 1


def test_many_404s_fail_fast_without_retries(tmp_path, server):
    ids = list(range(1, 401))
    setup = Setup(tmp_path, server, ids)
    for listing_id in ids[2:]:
        gs.route_photo(server, setup.pins, listing_id, Reply(status=404))

    started = time.monotonic()
    summary = setup.fetch(tmp_path / "data", retries=4, backoff=1.0, workers=4)

    assert time.monotonic() - started < 20, "404s must not be retried"
    assert summary["photos"]["failed_by_reason"] == {"http_404": 398}
    assert all(setup.photo_hits(key) == 1 for key in ids)
    assert summary["listings"]["written"] == 2


def test_downloads_are_concurrent_but_bounded(tmp_path, server):
    ids = list(range(1, 9))
    setup = Setup(tmp_path, server, ids)
    for listing_id in ids:
        gs.route_photo(server, setup.pins, listing_id, Reply(setup.photos[listing_id], delay=0.2))
    summary = setup.fetch(tmp_path / "data", workers=3)
    assert summary["photos"]["fetched"] == 8
    assert 2 <= server.max_in_flight <= 3


# --------------------------------------------------------------------------- unusable sources


def test_a_table_that_is_not_the_pinned_one_writes_nothing(tmp_path, server, capsys):
    setup = Setup(tmp_path, server, [1, 2])
    tampered = setup.tables["data/airbnb_test.csv"].replace(b"Madrid", b"Madrld", 1)
    server.route(f"/{gs.MORE_REPO}/{gs.COMMIT}/data/airbnb_test.csv", Reply(tampered))
    dest = tmp_path / "data"

    summary = setup.fetch(dest)

    assert (summary["status"], summary["exit_code"], summary["written"]) == \
        ("unusable", 2, False)
    expected = setup.pins.more_columns[1].sha256
    assert "data/airbnb_test.csv" in summary["error"] and expected in summary["error"]
    assert __import__("hashlib").sha256(tampered).hexdigest() in summary["error"]
    assert not dest.exists(), "nothing may be written for an unusable source"
    assert not any(key.endswith(".jpg") for key in server.hits)

    # a folder from an earlier run is left exactly as it was
    server.route(f"/{gs.MORE_REPO}/{gs.COMMIT}/data/airbnb_test.csv",
                 Reply(setup.tables["data/airbnb_test.csv"]))
    assert setup.fetch(dest)["exit_code"] == 0
    before = {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()}
    (dest / "raw" / "airbnb_test.csv").write_bytes(tampered)  # fails its hash: fetched again
    server.route(f"/{gs.MORE_REPO}/{gs.COMMIT}/data/airbnb_test.csv", Reply(tampered))
    assert setup.fetch(dest)["exit_code"] == 2
    before[dest / "raw" / "airbnb_test.csv"] = tampered
    assert {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()} == before


def test_a_missing_table_is_unusable_and_a_5xx_one_may_pass_later(tmp_path, server):
    setup = Setup(tmp_path, server, [1])
    route = f"/{gs.LISTINGS_REPO}/{gs.COMMIT}/airbnb_data_warehouse.csv"
    server.route(route, Reply(status=404))
    summary = setup.fetch(tmp_path / "a")
    assert (summary["exit_code"], summary["written"]) == (2, False)
    assert not (tmp_path / "a").exists()

    server.route(route, Reply(status=502))
    summary = setup.fetch(tmp_path / "b")
    assert (summary["status"], summary["exit_code"], summary["written"]) == ("failed", 1, False)


def test_tables_without_the_join_columns_are_unusable(tmp_path, server):
    setup = Setup(tmp_path, server, [1])
    broken = setup.tables["data/airbnb_train.csv"].replace(b"Longitude", b"Lon", 1)
    setup.tables["data/airbnb_train.csv"] = broken
    pins = gs.pins_for(setup.tables, setup.pins.photos.manifest)
    gs.serve(server, pins, setup.tables, {})
    summary = setup.fetch(tmp_path / "data", github_sources=pins)
    assert not (tmp_path / "data").exists()
    assert summary["exit_code"] == 2 and "airbnb_train.csv: missing column(s) Longitude" in \
        summary["error"]


# --------------------------------------------------------------------------- join rules


def test_listings_without_exactly_one_match_are_left_out(tmp_path, server):
    setup = Setup(tmp_path, server, [1, 2, 3])
    rows = [setup.rows[1], setup.rows[2], setup.rows[3]]
    clash = {**setup.rows[3], "Accommodates": "9"}  # same location, other values: ambiguous
    tables = gs.source_tables(rows)
    more = gs.source_tables([clash])["data/airbnb_train.csv"].split(b"\n", 1)[1]
    tables["data/airbnb_test.csv"] += more
    lonely = {**setup.rows[2], "Latitude": "40.0"}  # no more-columns row has this location
    tables["airbnb_data_warehouse.csv"] = gs.source_tables([setup.rows[1], lonely, setup.rows[3]])[
        "airbnb_data_warehouse.csv"]
    pins = gs.pins_for(tables, setup.pins.photos.manifest)
    gs.serve(server, pins, tables, {})

    summary = setup.fetch(tmp_path / "data", github_sources=pins)

    assert summary["listings"]["dropped"] == {"no_match_in_more_columns": 1,
                                              "ambiguous_match_in_more_columns": 1}
    assert gs.read_csv(tmp_path / "data" / "listings.csv") == setup.expected([1])


# --------------------------------------------------------------------------- command line, pins


def test_cli_fetch_with_pins_file_and_exit_codes(tmp_path, server, capsys):
    setup = Setup(tmp_path, server, [3, 4])
    pins_file = gs.write_pins_json(setup.pins, tmp_path / "pins.json")
    base = ["data", "fetch", "--source", "github", "--url", setup.base, "--pins", str(pins_file),
            "--timeout", "1", "--retries", "0", "--workers", "2", "--no-progress"]

    assert main([*base, "--dest", str(tmp_path / "ok")]) == 0
    output = capsys.readouterr().out
    assert f"{setup.base}/{gs.LISTINGS_REPO}/{gs.COMMIT}/airbnb_data_warehouse.csv" in output

    gs.route_photo(server, setup.pins, 4, Reply(status=404))
    assert main([*base, "--dest", str(tmp_path / "some")]) == 1

    (tmp_path / "bad.json").write_text("{}")
    assert main([*base[:7], str(tmp_path / "bad.json"), "--dest", str(tmp_path / "x")]) == 2
    assert "bad.json: not a usable pins file" in capsys.readouterr().err


def test_github_is_the_default_source_everywhere():
    assert DEFAULT_SOURCE == "github" and SOURCES[0] == "github"
    assert set(SOURCES) == {"github", "drive", "opendatasoft"}
    args = build_parser().parse_args(["data", "fetch"])
    assert args.source == "github"
    assert DEFAULT_SOURCE_URLS["github"]["photos"] == (
        "https://raw.githubusercontent.com/mcpade/practica_DeepLearning/"
        "e41318fbfc47ec756281cfdf2fb5cbda09cb8806/imagenes/<ID>.jpg")
    noxfile = (Path(__file__).resolve().parents[1] / "noxfile.py").read_text()
    assert '"data", "fetch", *session.posargs' in noxfile  # nox -s data: the CLI's default


def test_pins_json_round_trip(tmp_path):
    path = gs.write_pins_json(DEFAULT_GITHUB_SOURCES, tmp_path / "pins.json")
    assert GithubSources.from_json(path) == DEFAULT_GITHUB_SOURCES


def test_vendored_manifest_lists_every_pinned_photo():
    manifest = load_manifest(DEFAULT_GITHUB_SOURCES.photos.manifest)
    assert len(manifest) == 12271
    assert all(len(photo.blob) == 40 and photo.size > 0 for photo in manifest.values())


def test_git_blob_id_is_gits():
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
