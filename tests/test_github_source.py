"""The ``github`` source end to end against a real HTTP server on 127.0.0.1, on small tables.

The tables are written the way the pinned repositories hold them (tests/github_sources.py) from
the rows ``listings.csv`` must hold, so the expected output is known cell for cell. Photos are a
few generated JPEGs; every fault the source must survive is scripted on the server. Each test
builds a *set* of its own (:class:`DatasetSet`, like the reports' ``airbnb-madrid-10k``): its
listings, the sha256 of their scaled photos and of ``listings.csv``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from shared.data.acquisition import (ALL_LISTINGS, DEFAULT_GITHUB_SOURCES, DEFAULT_SOURCE,
                                DEFAULT_SOURCE_URLS, REPORT_FILE, REPORTS_SET, SOURCES,
                                DatasetSet, DestinationError, GithubSources, PhotoScaling,
                                fetch_dataset)
from shared.data.acquisition.github_photos import LEDGER_FILE, PhotoLedger, git_blob_id, load_manifest
from shared.cli import build_parser, main
from shared.data.dataset import load_dataset
from shared.data.schema import OPENDATASOFT_COLUMNS

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


SCALING = PhotoScaling()


def jpeg(seed: int, size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (seed * 37 % 256, 90, 200))
    image.paste((20, seed % 256, 40), (0, 0, size[0] // 3, size[1] // 2))  # an edge to resample
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Setup:
    """Rows, tables, photos and pins of one synthetic source, served by ``server``, and the set
    of all its photographed listings (``self.dataset``) pinning their scaled photos and
    ``listings.csv``."""

    def __init__(self, tmp_path: Path, server: LocalServer, ids: list[int],
                 unphotographed: tuple[int, ...] = (), size: tuple[int, int] = (24, 16)) -> None:
        self.rows = {listing_id: output_row(listing_id, index)
                     for index, listing_id in enumerate([*ids, *unphotographed])}
        self.photos = {listing_id: jpeg(listing_id, size) for listing_id in ids}
        self.scaled = {listing_id: SCALING.scale(data) for listing_id, data in self.photos.items()}
        self.tables = gs.source_tables(list(self.rows.values()),
                                       gs.excluded_rows(self.rows[ids[0]]))
        manifest = gs.write_manifest(tmp_path / "manifest.csv", self.photos)
        self.pins = gs.pins_for(self.tables, manifest)
        self.dataset = self.set_of(tmp_path, ids)
        self.server = server
        self.base = gs.serve(server, self.pins, self.tables,
                             {key: Reply(data) for key, data in self.photos.items()})

    def set_of(self, tmp_path: Path, ids, name: str = "madrid-test") -> DatasetSet:
        """The set of these listings, pinning their scaled photos and listings.csv."""
        manifest = gs.write_set_manifest(tmp_path / f"{name}-{len(ids)}.csv",
                                         {key: self.scaled[key] for key in ids})
        csv_sha256 = hashlib.sha256(gs.listings_bytes(self.expected(ids))).hexdigest()
        return DatasetSet(name, manifest, csv_sha256)

    def fetch(self, dest: Path, lines: list[str] | None = None, **options) -> dict:
        """Fetch into ``dest``; the progress lines are appended to ``lines`` when given."""
        settings = {"url": self.base, "timeout": 1.0, "retries": 1, "backoff": 0.01,
                    "progress": False, "github_sources": self.pins, "dataset": self.dataset}
        with gs.logged(lines):
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
    for listing_id, data in setup.scaled.items():
        assert (dest / "images" / f"{listing_id}.jpg").read_bytes() == data
    assert summary["listings"] == {"source_rows": 7, "written": 3, "dropped": {
        "not_in_madrid": 1, "no_positive_price": 2, "no_photo_in_repository": 1}}
    assert summary["photos"]["fetched"] == 3 and summary["failures"] == []
    assert summary["dataset"] == "madrid-test" and summary["identity"]["byte_identical"] is True
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
    assert again["identity"]["byte_identical"] is True


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
            "--timeout", "1", "--retries", "0", "--workers", "2", "--no-progress", "--all"]

    assert main([*base, "--dest", str(tmp_path / "ok")]) == 0
    output = capsys.readouterr().out
    assert f"{setup.base}/{gs.LISTINGS_REPO}/{gs.COMMIT}/airbnb_data_warehouse.csv" in output

    gs.route_photo(server, setup.pins, 4, Reply(status=404))
    assert main([*base, "--dest", str(tmp_path / "some")]) == 1

    (tmp_path / "bad.json").write_text("{}")
    assert main([*base[:7], str(tmp_path / "bad.json"), "--dest", str(tmp_path / "x")]) == 2
    assert "bad.json: not a usable pins file" in capsys.readouterr().err

    assert main(["data", "fetch", "--source", "drive", "--all", "--dest", str(tmp_path / "d")]) \
        == 2
    assert "--all only applies to --source github" in capsys.readouterr().err


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


# --------------------------------------------------------------------------- sets, scaling


def test_photos_are_scaled_to_a_224_px_shorter_side(tmp_path, server):
    setup = Setup(tmp_path, server, [1, 2], size=(639, 426))
    dest = tmp_path / "data"
    assert setup.fetch(dest)["identity"]["byte_identical"] is True
    for listing_id in (1, 2):
        with Image.open(dest / "images" / f"{listing_id}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (336, 224))
    # the rule itself: the shorter side becomes 224 (rounded), smaller photos keep their size
    for size, scaled in [((426, 639), (224, 336)), ((300, 225), (299, 224)),
                         ((200, 150), (200, 150)), ((224, 500), (224, 500))]:
        with Image.open(io.BytesIO(SCALING.scale(jpeg(3, size)))) as image:
            assert (image.size, image.mode) == (scaled, "RGB"), size


def test_the_set_keeps_its_listings_and_every_listing_gives_the_larger_set(tmp_path, server):
    setup = Setup(tmp_path, server, [1, 2, 3, 4])
    chosen = setup.set_of(tmp_path, [1, 3])
    lines: list[str] = []

    summary = setup.fetch(tmp_path / "set", dataset=chosen, lines=lines)

    assert gs.read_csv(tmp_path / "set" / "listings.csv") == setup.expected([1, 3])
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir()) == ["1.jpg", "3.jpg"]
    assert summary["listings"]["dropped"]["not_in_madrid-test"] == 2
    assert (summary["exit_code"], summary["identity"]["byte_identical"]) == (0, True)
    assert "byte-identical to the reports' dataset madrid-test" in lines[-1]
    assert setup.photo_hits(2) == setup.photo_hits(4) == 0

    every = DatasetSet("madrid-all", chosen.manifest, every_listing=True)
    summary = setup.fetch(tmp_path / "all", dataset=every, lines=lines)

    assert gs.read_csv(tmp_path / "all" / "listings.csv") == setup.expected([1, 2, 3, 4])
    for listing_id in (1, 2, 3, 4):
        assert (tmp_path / "all" / "images" / f"{listing_id}.jpg").read_bytes() == \
            setup.scaled[listing_id]
    identity = summary["identity"]
    assert (summary["exit_code"], identity["byte_identical"]) == (0, None)
    assert identity["photos"] == {"identical": 2, "differing": 0, "unchecked": 2}
    assert "madrid-all: not the reports' dataset" in lines[-1]


def test_a_photo_unlike_its_pinned_hash_is_kept_named_with_both_hashes_and_resumes(
        tmp_path, server):
    setup = Setup(tmp_path, server, [5, 6, 7])
    manifest = setup.dataset.manifest
    good = hashlib.sha256(setup.scaled[6]).hexdigest()
    wrong = "0" * 64
    manifest.write_text(manifest.read_text().replace(good, wrong))
    dest = tmp_path / "data"
    lines: list[str] = []

    summary = setup.fetch(dest, lines=lines)

    named = [line for line in lines if line.startswith("images/6.jpg")]
    assert named == [f"images/6.jpg: sha256 {good} is not the reports' dataset's {wrong} "
                     f"(scaled: {SCALING.recipe}); kept, it decodes"]
    assert (dest / "images" / "6.jpg").read_bytes() == setup.scaled[6]  # kept
    assert gs.read_csv(dest / "listings.csv") == setup.expected([5, 6, 7])
    assert (summary["status"], summary["exit_code"]) == ("complete", 0)
    identity = summary["identity"]
    assert identity["byte_identical"] is False
    assert identity["differing"] == [{"listing_id": "6", "file": "images/6.jpg",
                                      "expected_sha256": wrong, "sha256": good}]
    assert "the set is not byte-identical to the reports' dataset (madrid-test): 1 photo(s) " \
        "differ. Models trained on it may give slightly different numbers" in lines[-1]

    hits = dict(server.hits)  # the ledger (raw/scaled-photos.csv) lets a rerun skip photo 6
    again = setup.fetch(dest)
    assert server.hits == hits and again["photos"]["already_present"] == 3
    assert again["identity"]["photos"]["differing"] == 1


def test_another_scaling_is_reported_as_not_byte_identical(tmp_path, server):
    setup = Setup(tmp_path, server, [5, 6], size=(300, 260))
    other = DatasetSet("madrid-test", setup.dataset.manifest, setup.dataset.listings_sha256,
                       scaling=PhotoScaling(quality=90))
    lines: list[str] = []
    summary = setup.fetch(tmp_path / "data", dataset=other, lines=lines)
    assert summary["exit_code"] == 0 and summary["identity"]["byte_identical"] is False
    assert summary["identity"]["photos"]["differing"] == 2
    assert sum(line.startswith(("images/5.jpg: sha256", "images/6.jpg: sha256"))
               for line in lines) == 2
    assert "not byte-identical to the reports' dataset" in lines[-1]


def test_a_damaged_photo_in_the_destination_is_fetched_again(tmp_path, server):
    setup = Setup(tmp_path, server, [1, 2, 3])
    dest = tmp_path / "data"
    setup.fetch(dest)
    (dest / "images" / "2.jpg").write_bytes(setup.photos[2])  # the original, not the set's photo
    server.hits.clear()
    summary = setup.fetch(dest)
    assert {key: setup.photo_hits(key) for key in (1, 2, 3)} == {1: 0, 2: 1, 3: 0}
    assert (dest / "images" / "2.jpg").read_bytes() == setup.scaled[2]
    assert summary["identity"]["byte_identical"] is True


def test_a_folder_holding_another_set_is_not_mixed_into(tmp_path, server):
    setup = Setup(tmp_path, server, [1, 2])
    dest = tmp_path / "data"
    assert setup.fetch(dest)["exit_code"] == 0
    other = DatasetSet("madrid-other", setup.dataset.manifest, every_listing=True)
    with pytest.raises(DestinationError, match="holds the set 'madrid-test'; building "
                                               "'madrid-other' there would mix"):
        setup.fetch(dest, dataset=other)
    assert setup.fetch(dest, dataset=other, force=True)["exit_code"] == 0

    report = json.loads((dest / REPORT_FILE).read_text())
    del report["dataset"]  # a fetch made before sets: the original photos
    (dest / REPORT_FILE).write_text(json.dumps(report))
    with pytest.raises(DestinationError, match="original photos"):
        setup.fetch(dest)


def test_the_ledger_ignores_a_torn_line(tmp_path):
    path = tmp_path / LEDGER_FILE
    path.write_text("ID,git_blob_sha1,recipe,sha256\n1,aa,r,11\n2,bb,r")  # killed mid-line
    with PhotoLedger(path) as ledger:
        assert ledger.entries == {1: ("aa", "r", "11")}
        ledger.record(3, "cc", "r, with a comma", "33")
    assert PhotoLedger(path).entries == {1: ("aa", "r", "11"), 3: ("cc", "r, with a comma", "33")}


def test_the_reports_set_and_the_default_folders_carry_the_set_name(monkeypatch):
    from shared import environment
    from shared.data.acquisition.cli import default_dest

    ids = REPORTS_SET.ids()
    assert len(ids) == 10351 and not REPORTS_SET.every_listing
    assert ids <= set(load_manifest(DEFAULT_GITHUB_SOURCES.photos.manifest))
    assert REPORTS_SET.listings_sha256 == \
        "ff9f587b8b0aafff38c2933b65173065fcd382aafd899984c9e3dbcb59ce8045"
    assert ALL_LISTINGS.every_listing and ALL_LISTINGS.listings_sha256 is None
    assert REPORTS_SET.scaling == ALL_LISTINGS.scaling == PhotoScaling(224, 85, True)

    monkeypatch.delenv("AIRBNB_DATA_DIR", raising=False)
    assert environment.DEFAULT_DATA_DIR.name == REPORTS_SET.name == "airbnb-madrid-10k"
    assert environment.resolve_data_dir(None, must_exist=False) == environment.DEFAULT_DATA_DIR
    assert default_dest("github", REPORTS_SET) == environment.DEFAULT_DATA_DIR
    data = environment.DEFAULT_DATA_DIR.parent
    assert default_dest("github", ALL_LISTINGS) == data / "airbnb-madrid-12k"
    assert default_dest("drive") == data / "airbnb-madrid-drive"
    monkeypatch.setenv("AIRBNB_DATA_DIR", "/somewhere/else")
    assert default_dest("github", ALL_LISTINGS) == Path("/somewhere/else")
    assert build_parser().parse_args(["data", "fetch", "--all"]).all_listings
