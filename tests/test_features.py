"""shared.features.tabular: row-wise engineering, the fitted preprocessor, the log-price target."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fixtures import listing_row, synthetic_rows
from shared.features import tabular as feats
from shared.features.tabular import (CATEGORICAL, ENGINEERED_COLUMNS, NUMERIC, clean_zipcode,
                             engineer_features, log_target, make_preprocessor, price_from_log)


def frame_of(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_engineered_table_has_the_declared_columns_and_index():
    frame = pd.DataFrame(synthetic_rows(12, seed=4), index=np.arange(100, 112))
    table = engineer_features(frame)

    assert list(table.columns) == ENGINEERED_COLUMNS
    assert table.index.tolist() == list(range(100, 112))
    assert all(table[c].dtype == np.float64 for c in NUMERIC)
    assert [*NUMERIC, *CATEGORICAL] == ENGINEERED_COLUMNS


def test_money_percent_and_missing_fee_parsing():
    table = engineer_features(frame_of(
        listing_row(1, Security_Deposit="$1,000.00", Cleaning_Fee="€30", Host_Response_Rate="95%"),
        listing_row(2, Security_Deposit=None, Cleaning_Fee=None, Host_Response_Rate=None),
    ))

    assert table.loc[0, "log1p_Security Deposit"] == pytest.approx(math.log1p(1000))
    assert table.loc[0, "log1p_Cleaning Fee"] == pytest.approx(math.log1p(30))
    assert table.loc[0, "Host Response Rate"] == 95.0
    assert table.loc[0, ["has_security_deposit", "has_cleaning_fee"]].tolist() == [1.0, 1.0]
    # an empty deposit / fee means "none", not "unknown"; an empty response rate stays unknown
    assert table.loc[1, "log1p_Security Deposit"] == 0.0 and table.loc[1, "log1p_Cleaning Fee"] == 0.0
    assert table.loc[1, ["has_security_deposit", "has_cleaning_fee"]].tolist() == [0.0, 0.0]
    assert math.isnan(table.loc[1, "Host Response Rate"])


def test_dates_are_days_before_each_listing_own_scrape_date():
    table = engineer_features(frame_of(
        listing_row(1, Last_Scraped="2017-04-08", Host_Since="2017-04-01",
                    First_Review="2016-04-08", Last_Review="2017-03-30"),
        listing_row(2, Last_Scraped="2017-04-10", Host_Since="not a date", First_Review=None,
                    Last_Review=None),
    ))

    assert table.loc[0, ["host_tenure_days", "review_span_days", "days_since_last_review"]] \
        .tolist() == [7.0, 356.0, 9.0]
    assert table.loc[1, ["host_tenure_days", "review_span_days", "days_since_last_review"]] \
        .isna().all()


def test_distance_to_centre_in_km():
    lat, lon = feats.CITY_CENTRE_LAT_LON
    table = engineer_features(frame_of(
        listing_row(1, Latitude=lat, Longitude=lon),
        listing_row(2, Latitude=lat + 1.0, Longitude=lon),
        listing_row(3, Latitude=None, Longitude=lon),
    ))
    assert table.loc[0, "distance_to_centre_km"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc[1, "distance_to_centre_km"] == pytest.approx(111.19, abs=0.05)
    assert math.isnan(table.loc[2, "distance_to_centre_km"])


def test_counts_flags_and_categoricals():
    table = engineer_features(frame_of(
        listing_row(1, Amenities="TV,Internet,,Kitchen", Host_Verifications="email,phone",
                    Features="Host Is Superhost,Instant Bookable", License="VT-123",
                    Property_Type="  Loft ", Bed_Type="", Zipcode="Madrid 28012"),
        listing_row(2, Amenities=None, Host_Verifications=None, Features=None, License=None),
    ))

    assert table.loc[0, ["amenities_count", "host_verifications_count"]].tolist() == [3.0, 2.0]
    assert table.loc[1, ["amenities_count", "host_verifications_count"]].tolist() == [0.0, 0.0]
    assert table.loc[0, ["is_superhost", "instant_bookable", "host_identity_verified",
                         "has_license"]].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert table.loc[1, ["is_superhost", "instant_bookable", "has_license"]].tolist() == [0, 0, 0]
    assert table.loc[0, "Property Type"] == "Loft"
    assert pd.isna(table.loc[0, "Bed Type"])
    assert table.loc[0, "zipcode"] == "28012"


def test_clean_zipcode():
    values = pd.Series(["28012", "28012.0", "Madrid 28012", "28 012", "08001", None, "abc", "2804"])
    cleaned = clean_zipcode(values)
    assert cleaned.iloc[:4].tolist() == ["28012"] * 4
    assert cleaned.iloc[4:].isna().all()


def test_engineering_is_row_wise():
    frame = pd.DataFrame(synthetic_rows(20, seed=2))
    rows = [3, 0, 17, 9]
    whole = engineer_features(frame).loc[rows]
    alone = engineer_features(frame.loc[rows])
    pd.testing.assert_frame_equal(whole, alone)


def test_log_target_round_trip():
    prices = np.array([10.0, 55.5, 1200.0])
    y = log_target(prices)
    assert y.dtype == np.float32 and y.shape == (3,)
    assert np.allclose(y, np.log(prices))
    back = price_from_log(y.reshape(-1, 1))
    assert back.dtype == np.float64 and back.shape == (3,)
    assert np.allclose(back, prices, rtol=1e-6)


def test_preprocessor_output_is_a_finite_float32_matrix_with_names():
    frame = pd.DataFrame(synthetic_rows(40, seed=6))
    pipeline = make_preprocessor().fit(frame)
    matrix = pipeline.transform(frame)
    names = pipeline.get_feature_names_out()

    assert matrix.dtype == np.float32 and matrix.shape == (40, len(names))
    assert np.isfinite(matrix).all()
    assert any(n.startswith("numeric__missingindicator_") for n in names)  # NaNs were flagged
    assert any(n.startswith("categorical__Room Type_") for n in names)


def test_preprocessor_handles_unseen_levels_and_missing_values_at_predict_time():
    train = pd.DataFrame(synthetic_rows(40, seed=6))
    pipeline = make_preprocessor().fit(train)
    new = pd.DataFrame([listing_row(9, Room_Type="Hotel room", Property_Type="Castle",
                                    Neighbourhood_Cleansed="Atlantis", Zipcode=None,
                                    Accommodates=None, Latitude=None, Longitude=None,
                                    Review_Scores_Rating=None)])
    matrix = pipeline.transform(new)
    assert matrix.shape == (1, len(pipeline.get_feature_names_out()))
    assert np.isfinite(matrix).all()
