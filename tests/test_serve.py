"""``airbnb-dl serve``: the form, the API, bad input, concurrency and equality with
``airbnb-dl predict``.

The form tests need no model (a preprocessor fitted on synthetic listings). The others run on
smoke-trained models made by the test itself (:mod:`serve_support`, on the first listings of
``$AIRBNB_DATA_DIR``; skipped without it). The browser test is tests/test_serve_browser.py.
"""

from __future__ import annotations

import concurrent.futures
import struct
import tempfile
import zlib
from pathlib import Path

import pandas as pd
import pytest

from serve_support import default_answers, estimator_for, live_server, photo_bytes, smoke_models
from shared.cli import main
from shared.features import tabular as feats

pytest.importorskip("starlette", reason="the web stack is not installed (pip install the project)")


# --------------------------------------------------------------------------- the form, no model

@pytest.fixture(scope="module")
def small_form(small_dataset):
    from shared.cli.serve.form import build_form

    preprocessor = feats.make_preprocessor().fit(small_dataset.frame)
    return build_form(feats.input_columns(preprocessor), small_dataset.frame)


def test_the_form_asks_what_the_models_read_in_a_persons_terms(small_form):
    keys = [f.key for f in small_form.fields]
    assert keys[:9] == ["Room Type", "Property Type", "Accommodates", "Bedrooms", "Bathrooms",
                        "Beds", "Neighbourhood Cleansed", "Latitude", "Longitude"]
    by_key = {f.key: f for f in small_form.fields}
    assert by_key["Accommodates"].label == "Guests" and by_key["Accommodates"].required
    assert set(by_key["Room Type"].choices) <= {"Entire home/apt", "Private room", "Shared room"}
    # derived, never asked: district from the neighbourhood, zipcode from the map, scrape date
    for column in ("Neighbourhood Group Cleansed", "Zipcode", "Last Scraped", "Price", "ID"):
        assert column not in keys
    assert by_key["Instant Bookable"].kind == "flag" and by_key["Instant Bookable"].column == "Features"
    # host-side fields default to the training median, stated
    assert by_key["Minimum Nights"].default_note == "median of the training listings"


def test_a_form_for_fewer_columns_asks_fewer_fields(small_dataset):
    from shared.cli.serve.form import build_form

    few = small_dataset.frame[["ID", "City", "Room Type", "Accommodates", "Latitude", "Longitude"]]
    preprocessor = feats.make_preprocessor().fit(few)
    form = build_form(feats.input_columns(preprocessor), small_dataset.frame)
    assert [f.key for f in form.fields] == ["Room Type", "Accommodates", "Latitude", "Longitude"]


@pytest.mark.parametrize("key, value, message", [
    ("Accommodates", "99", "Guests: must be a whole number from 1 to 16, got 99"),
    ("Accommodates", "2.5", "Guests: must be a whole number"),
    ("Bathrooms", "many", "Bathrooms: 'many' is not a number"),
    ("Latitude", "41.9", "Latitude: must be a number from"),
    ("Room Type", "Castle", "Room type: 'Castle' is not one of the choices"),
    ("Beds", "", "Beds: required"),
    ("Host Since", "2020-01-01", "Host since: must be a date from 2008-01-01 to 2017-04-08"),
    ("Minimum Nights", "nan", "Minimum nights: must be a whole number"),
])
def test_a_bad_answer_names_its_field(small_form, key, value, message):
    from shared.cli.serve.form import FormError, parse_form

    answers = {f.key: "" if f.default is None else str(f.default) for f in small_form.fields
               if f.kind != "flag"}
    answers[key] = value
    with pytest.raises(FormError, match=message.replace("(", r"\(")) as caught:
        parse_form(small_form, answers)
    assert caught.value.field == key and "\n" not in str(caught.value)


def test_serve_without_models_says_which_command_to_run(tmp_path, capsys):
    assert main(["serve", "--models-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nox -s deliverable2" in err
    (tmp_path / "empty").mkdir()
    assert main(["serve", "--models-dir", str(tmp_path / "empty")]) == 2
    assert "picks.json not found: run `nox -s deliverable2` first" in capsys.readouterr().err


def test_the_page_loads_nothing_from_elsewhere():
    from importlib import resources

    folder = resources.files("shared.cli.serve") / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = folder.joinpath(name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


# --------------------------------------------------------------------------- on smoke models

@pytest.fixture(scope="module")
def estimator(real_data_dir):
    return estimator_for(str(real_data_dir))


@pytest.fixture(scope="module")
def client(estimator):
    from starlette.testclient import TestClient

    from shared.cli.serve.app import create_app

    with TestClient(create_app(estimator)) as test_client:
        yield test_client


def post(client, answers, photo=None, name="room.jpg", kind="image/jpeg"):
    files = {"photo": (name, photo, kind)} if photo is not None else None
    return client.post("/api/estimate", data=answers, files=files)


def predict_cli(tmp_path: Path, model_dir: Path, csv_text: str, photo: bytes) -> pd.Series:
    """``airbnb-dl predict`` on the listing the page wrote: its one output row."""
    data = tmp_path / "listing"
    (data / "images").mkdir(parents=True)
    (data / "listings.csv").write_text(csv_text, encoding="utf-8")
    (data / "images" / "1.jpg").write_bytes(photo)
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(model_dir), "--data-dir", str(data),
                 "--out", str(out)]) == 0
    return pd.read_csv(out).iloc[0]


@pytest.mark.parametrize("fusion", ["transfer_frozen", "cnn_scratch"])
def test_the_estimate_equals_airbnb_dl_predict_to_the_cent(real_data_dir, tmp_path, fusion):
    estimator = estimator_for(str(real_data_dir), fusion)
    models, _ = smoke_models(str(real_data_dir))
    answers = {**default_answers(estimator), "Accommodates": "3", "Latitude": "40.4101",
               "Longitude": "-3.6952"}
    photo = photo_bytes("PNG")
    answer = estimator.estimate(answers, photo)
    for slot, name in (("fusion", fusion), ("tabular", "hgb")):
        served = answer["models"][slot]
        row = predict_cli(tmp_path / slot, models / name, answer["csv"], photo)
        assert served["name"] == name and served["uses_photo"] == (slot == "fusion")
        assert (served["price"], served["low"], served["high"]) == (
            row["predicted_price"], row["price_low"], row["price_high"])
        assert served["low"] <= served["price"] <= served["high"]
    assert answer["photo_change_eur"] == round(
        answer["models"]["fusion"]["price"] - answer["models"]["tabular"]["price"], 2)


def test_an_estimate_answers_with_both_prices_and_similar_listings(client, estimator):
    response = post(client, default_answers(estimator), photo_bytes())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {"fusion", "tabular"} == set(answer["models"]) and answer["coverage"] == 0.8
    assert len(answer["similar"]) == 5
    room = default_answers(estimator)["Room Type"]
    assert all(s["room_type"] == room and s["price"] > 0 for s in answer["similar"])
    kms = [s["km"] for s in answer["similar"]]
    assert all(km is not None and 0 <= km < 50 for km in kms)
    assert set(answer["derived"]) <= {"district (from the neighbourhood)",
                                      "zipcode (the nearest training listing's)"}


def test_no_photo_gives_the_tabular_estimate_with_a_note(client, estimator):
    answer = post(client, default_answers(estimator)).json()
    assert "price" not in answer["models"]["fusion"] and "needs a photo" in answer["models"]["fusion"]["note"]
    assert answer["models"]["tabular"]["price"] > 0 and answer["photo_change_eur"] is None
    assert any("No photo" in note for note in answer["notes"])


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` pixels with one tiny compressed row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _bad_photos() -> dict[str, tuple[bytes, int, str]]:
    jpeg = photo_bytes()
    gif = __import__("io").BytesIO()
    __import__("PIL.Image").Image.new("RGB", (8, 8)).save(gif, format="GIF")
    return {
        "not an image": (b"%PDF-1.4 this is no photo" * 40, 400, "Photo: not an image"),
        "truncated JPEG": (jpeg[: len(jpeg) // 2], 400, "Photo: the file is truncated or corrupt"),
        "a GIF": (gif.getvalue(), 400, "Photo: a GIF image; upload a JPEG or PNG"),
        "too many pixels": (_png_declaring(9000, 9000), 400, "over the 50-megapixel limit"),
        "decompression bomb": (_png_declaring(40000, 40000), 400, "decompression bomb"),
        "over 10 MB": (b"\xff\xd8" + b"\x00" * (11 * 2**20), 413, "over the 10 MB limit"),
    }


@pytest.mark.parametrize("case", list(_bad_photos()))
def test_a_bad_photo_gets_a_clear_message_and_the_server_keeps_serving(client, estimator, case):
    data, status, message = _bad_photos()[case]
    before = _serve_folders()
    response = post(client, default_answers(estimator), data)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"] and body["field"] == "photo" and "\n" not in body["error"]
    assert _serve_folders() == before  # the request's folder is gone
    assert post(client, default_answers(estimator), photo_bytes()).status_code == 200


def test_a_number_out_of_range_names_the_field(client, estimator):
    response = post(client, {**default_answers(estimator), "Bedrooms": "250"}, photo_bytes())
    assert response.status_code == 400
    assert response.json() == {"error": "Bedrooms: must be a whole number from 0 to 20, got 250",
                               "field": "Bedrooms"}


def _serve_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("airbnb-dl-serve-*")
            if p.name[len("airbnb-dl-serve-"):][:5] != "test-"}


def test_uploaded_photos_leave_nothing_behind(client, estimator):
    import hashlib

    from shared.features.cache import feature_cache_dir

    photo = photo_bytes()
    before = _serve_folders()
    assert post(client, default_answers(estimator), photo).status_code == 200
    assert _serve_folders() == before
    key = hashlib.sha256(photo).hexdigest()  # the feature cache's key: the photo's bytes
    bundle = estimator.models.fusion
    for flip in (False, True):
        folder = feature_cache_dir(bundle.backbone, bundle.image_size, flip=flip)
        assert not (folder / key[:2] / f"{key}.npy").exists(), "features left in the user's cache"


def test_twenty_concurrent_requests_are_all_answered_correctly(estimator):
    import httpx2 as httpx

    from shared.cli.serve.app import create_app

    base = default_answers(estimator)
    photo = photo_bytes()
    cases = [{**base, "Accommodates": str(1 + i % 6), "Beds": str(1 + i % 3)} for i in range(20)]
    expected = {(c["Accommodates"], c["Beds"]): estimator.estimate(c, photo)["models"] for c in cases}
    with live_server(create_app(estimator)) as url:
        def ask(answers):
            return httpx.post(f"{url}/api/estimate", data=answers, timeout=120, trust_env=False,
                              files={"photo": ("room.jpg", photo, "image/jpeg")})

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(ask, cases))
    for case, response in zip(cases, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["models"] == expected[(case["Accommodates"], case["Beds"])]


def test_a_blend_pick_asks_the_columns_its_members_read():
    """A blend bundle has no preprocessor of its own: the form (and predict's column check) read
    its members' (a 10k models folder whose picks were blend and tabular_blend once built a form
    with no tabular field)."""
    from shared.models.bundle import ModelBundle
    from shared.models.families.blend import Blend

    first = ModelBundle("a", ("tabular",), object(), preprocessor="p1")
    second = ModelBundle("b", ("tabular",), object(), preprocessor="p2")
    blend = ModelBundle("blend", ("tabular",), Blend((first, second), 0.5))
    assert blend.preprocessors() == ["p1", "p2"]
    assert first.preprocessors() == ["p1"]
    assert ModelBundle("photo", ("image",), object()).preprocessors() == []
