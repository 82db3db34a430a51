"""The ``github`` source on the real rows and photos, served from 127.0.0.1 with faults injected.

The real pinned tables cannot be reached from here, so they are rebuilt from the reference
output: the rows of the 10k set (``airbnb-madrid-10k/listings.csv``, which the join produced)
for the 814 listings whose real photo is in ``$AIRBNB_DATA_DIR/images`` (byte-identical to the
pinned photos: their git blob ids are those of the vendored manifest), split back into a
listings table and two more-columns tables, with rows the source must leave out. The fetch runs
through the command line with pins for these tables and the real photo manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.acquisition import DEFAULT_GITHUB_SOURCES
from shared.acquisition.github import git_blob_id, load_manifest
from shared.cli import main

try:
    import github_sources as gs
    from acq_server import LocalServer, Reply
except ImportError:  # tests/ imported as a package
    from tests import github_sources as gs
    from tests.acq_server import LocalServer, Reply

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("no_proxy")]

TEN_K = "airbnb-madrid-10k"


@pytest.fixture(scope="module")
def reference(real_data_dir):
    """(10k header, {ID: 10k row} of the listings with a real photo, {ID: photo bytes})."""
    ten_k = real_data_dir.parent / TEN_K / "listings.csv"
    if not ten_k.is_file():
        pytest.skip(f"the 10k reference table is absent: no {ten_k}")
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


def _serve(server: LocalServer, tmp_path: Path, reference) -> tuple[str, Path, dict]:
    header, chosen, photos = reference
    rows = [dict(zip(header, row, strict=True)) for row in chosen.values()]
    tables = gs.source_tables(rows, gs.excluded_rows(rows[0]))
    pins = gs.pins_for(tables, DEFAULT_GITHUB_SOURCES.photos.manifest)
    base = gs.serve(server, pins, tables, {key: Reply(data) for key, data in photos.items()})
    return base, gs.write_pins_json(pins, tmp_path / "pins.json"), tables


def _fetch(base: str, pins_file: Path, dest: Path) -> int:
    return main(["data", "fetch", "--source", "github", "--url", base, "--pins", str(pins_file),
                 "--dest", str(dest), "--timeout", "1", "--retries", "1", "--workers", "4",
                 "--no-progress"])


def test_real_rows_and_photos_with_faults_resume_and_agree_with_data_check(
        reference, tmp_path, capsys, monkeypatch):
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
        assert all((dest / "images" / f"{key}.jpg").read_bytes() == photos[key]
                   for key in intact)
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
