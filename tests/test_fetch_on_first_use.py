"""An empty data directory makes a deliverable run say what it fetches and from where (issue 5).

This machine has no internet, so the fetch itself fails; what is checked is that the user is told
exactly what is being fetched and from where, and gets one clear error line instead of a traceback.
"""

import os
import subprocess
import sys

from shared.data.acquisition import DEFAULT_SOURCE, DEFAULT_SOURCE_URLS


def test_empty_data_dir_announces_fetch(tmp_path):
    data_dir = tmp_path / "empty-data"
    env = {**os.environ, "AIRBNB_DATA_DIR": str(data_dir), "AIRBNB_DL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "report", "deliverable1", "--smoke",
         "--models-dir", str(tmp_path / "models"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300)
    out = result.stdout
    assert f"No dataset in {data_dir}" in out
    for url in DEFAULT_SOURCE_URLS[DEFAULT_SOURCE].values():
        assert url in out, f"the fetch announcement does not name {url}"
    if not (data_dir / "listings.csv").is_file():  # offline: one clear error, no traceback
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "airbnb-dl: error: fetching the dataset" in result.stderr
        assert not (tmp_path / "out").exists(), "no report may be written without data"
