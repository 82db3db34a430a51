"""shared.data.split: 60/10/10/20, grouped by host and identical photo, disjoint and complete,
deterministic, stratified on price, persisted with its rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.data.dataset import Dataset, dataset_fingerprint
from shared.data.split import (FRACTIONS, RANDOM_RULE, RULE, SPLIT_FILE, SplitError, listing_groups,
                          load_or_make_split, make_random_split, make_split)

ROOT = Path(__file__).resolve().parents[1]


def priced_dataset(n: int, seed: int = 0) -> Dataset:
    """A Dataset of ``n`` listings with unique random IDs and log-normal prices (EUR)."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 50 * n), size=n, replace=False)
    prices = np.round(np.exp(rng.normal(4.0, 0.6, size=n)), 0)
    return Dataset(pd.DataFrame({"ID": ids.astype(np.int64), "price": prices}))


FRACTION_TOLERANCE = 0.02   # each part's share within 2 points of its fraction (60/10/10/20)
DECILE_TOLERANCE = 0.03     # each price decile's share of the test part within 10% +- 3 points


def grouped_dataset(tmp_path: Path, n: int = 600, seed: int = 0) -> Dataset:
    """``n`` listings with planted groups: hosts with 1 to 25 listings (about half the listings
    share a host, as in Madrid), and identical photos, some shared by listings of two different
    hosts (so host groups merge through the photo). Photos are tiny files in ``tmp_path``."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 50 * n), size=n, replace=False).astype(np.int64)
    sizes, hosts = [], []
    while sum(sizes) < n:
        sizes.append(int(min(rng.choice([1, 1, 1, 2, 3, 5, 8, 25]), n - sum(sizes))))
    for host, size in enumerate(sizes):
        hosts += [f"h{host}"] * size
    prices = np.round(np.exp(rng.normal(4.0, 0.6, size=n) + 0.3 * (np.arange(n) % 7 == 0)), 0)
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    paths = []
    for i, listing in enumerate(ids):
        shared = i % 37 == 0  # every 37th listing reuses the photo of the listing 5 rows on
        content = f"photo of {ids[(i + 5) % n] if shared else listing}".encode()
        path = photos / f"{listing}.jpg"
        path.write_bytes(content)
        paths.append(str(path))
    for i in range(n):  # the listing 5 rows on has that same photo too
        if i % 37 == 0:
            Path(paths[(i + 5) % n]).write_bytes(f"photo of {ids[(i + 5) % n]}".encode())
    frame = pd.DataFrame({"ID": ids, "price": prices, "Host ID": hosts, "image_path": paths})
    return Dataset(frame)


def assert_grouped(dataset: Dataset, split) -> None:
    """No host and no identical photo in two parts; fractions and test deciles within bounds."""
    part = pd.Series("", index=dataset.ids)
    for name, ids in split.parts().items():
        part[ids] = name
    frame = dataset.frame.set_index("ID")
    photo = frame["image_path"].map(lambda p: Path(p).read_bytes())
    for key in (frame["Host ID"], photo):
        assert (part.groupby(key.reindex(part.index)).nunique() == 1).all()
    n = len(dataset.ids)
    for name, fraction in FRACTIONS.items():
        assert abs(len(split.parts()[name]) / n - fraction) <= FRACTION_TOLERANCE, name
    deciles = pd.qcut(pd.Series(dataset.prices, index=dataset.ids).rank(method="first"), 10,
                      labels=False)
    shares = deciles[split.test].value_counts(normalize=True).reindex(range(10), fill_value=0)
    assert (shares - 0.1).abs().max() <= DECILE_TOLERANCE, shares.round(3).tolist()


@pytest.mark.parametrize("n", [10, 15, 25, 57, 200, 814])
def test_sizes_disjoint_and_complete(n):
    dataset = priced_dataset(n, seed=n)
    split = make_split(dataset, 42)

    parts = split.parts()
    for name, ids in parts.items():
        assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0), f"{name} not sorted/unique"
        assert len(ids) > 0, name
    union = np.concatenate(list(parts.values()))
    assert len(np.unique(union)) == len(union) == n  # disjoint
    assert set(union.tolist()) == set(dataset.ids.tolist())  # covers all IDs
    assert split.fingerprint == dataset_fingerprint(dataset) and split.rule == RULE
    if n >= 200:
        for name, fraction in FRACTIONS.items():
            assert abs(len(parts[name]) / n - fraction) <= FRACTION_TOLERANCE, name


def test_planted_host_and_photo_groups_never_straddle_two_parts(tmp_path):
    dataset = grouped_dataset(tmp_path)
    groups = listing_groups(dataset)
    hosts = dataset.frame["Host ID"].nunique()
    assert len(np.unique(groups)) < hosts  # identical photos merged some host groups
    split = make_split(dataset, 42)
    assert_grouped(dataset, split)
    # the random split of the same data (kept only to measure what it overstates) does not
    random = make_random_split(dataset, 42)
    part = pd.Series("", index=dataset.ids)
    for name, ids in random.parts().items():
        part[ids] = name
    host = dataset.frame.set_index("ID")["Host ID"]
    assert (part.groupby(host.reindex(part.index)).nunique() > 1).any()
    assert random.rule == RANDOM_RULE


def test_too_few_groups_raise_split_error(tmp_path):
    dataset = priced_dataset(40)
    dataset.frame["Host ID"] = ["one host"] * 35 + ["a", "b", "c", "d", "e"]
    with pytest.raises(SplitError, match="at least 10 groups"):
        make_split(dataset, 42)


@pytest.mark.realdata
def test_the_real_data_is_split_by_host(real_data_dir):
    from shared.data.dataset import load_dataset

    dataset = load_dataset(real_data_dir)
    assert_grouped(dataset, make_split(dataset, 42))


def test_same_split_twice_and_independent_of_row_order():
    dataset = priced_dataset(300, seed=3)
    first, second = make_split(dataset, 42), make_split(dataset, 42)
    shuffled = Dataset(dataset.frame.sample(frac=1.0, random_state=7).reset_index(drop=True))
    third = make_split(shuffled, 42)

    for a, b, c in zip(first.parts().values(), second.parts().values(), third.parts().values(), strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_another_seed_gives_another_split():
    dataset = priced_dataset(300, seed=3)
    assert not np.array_equal(make_split(dataset, seed=1).test, make_split(dataset, seed=2).test)


def test_same_split_in_fresh_interpreters_with_other_hash_seeds(small_dir, small_dataset):
    code = textwrap.dedent(f"""
        import json
        from shared.data.dataset import load_dataset
        from shared.data.split import make_split
        split = make_split(load_dataset({str(small_dir)!r}, check_photos=False), 42)
        print(json.dumps({{k: v.tolist() for k, v in split.parts().items()}}))
    """)
    here = {k: v.tolist() for k, v in make_split(small_dataset, 42).parts().items()}
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here


def test_split_is_stratified_on_price():
    dataset = priced_dataset(1000, seed=11)  # one listing per group: stratification alone
    split = make_split(dataset, 42)
    prices = pd.Series(dataset.prices, index=dataset.ids)
    deciles = pd.qcut(prices.rank(method="first"), 10, labels=False)

    for name, ids in split.parts().items():
        counts = deciles.loc[ids].value_counts().reindex(range(10), fill_value=0).to_numpy()
        expected = len(ids) / 10
        # each decile's share of the part within one point of 10% (two listings on small parts)
        assert np.abs(counts - expected).max() <= max(2, 0.01 * len(ids)), \
            f"{name}: per-decile counts {counts}"
        part_prices = prices.loc[ids]
        assert abs(part_prices.median() - prices.median()) / prices.median() < 0.08, name


def test_too_few_or_unpriced_listings_raise_split_error():
    with pytest.raises(SplitError, match="at least 10"):
        make_split(priced_dataset(9), 42)
    unpriced = priced_dataset(30)
    unpriced.frame.loc[3, "price"] = np.nan
    with pytest.raises(SplitError):
        make_split(unpriced, 42)


# --------------------------------------------------------------------------- persistence

def test_load_or_make_split_persists_and_reuses(tmp_path):
    dataset = priced_dataset(120, seed=5)
    split = load_or_make_split(dataset, tmp_path, 42)

    path = tmp_path / SPLIT_FILE
    stored = json.loads(path.read_text())
    assert stored["dataset_fingerprint"] == dataset_fingerprint(dataset) and stored["seed"] == 42
    assert {k: stored[k] for k in ("train", "val", "cal", "test")} == \
        {k: v.tolist() for k, v in split.parts().items()}

    # the stored file is what is reused (proved by editing it), and it is not rewritten
    stored["train"], stored["val"] = stored["train"][1:], stored["val"] + stored["train"][:1]
    path.write_text(json.dumps(stored))
    mtime = path.stat().st_mtime_ns
    reused = load_or_make_split(dataset, tmp_path, 42)
    assert reused.val.tolist() == stored["val"] and reused.train.tolist() == stored["train"]
    assert path.stat().st_mtime_ns == mtime

    # a split persisted with other fractions (the earlier 70/10/20, no calibration part) or by
    # another rule (the earlier ungrouped split) is replaced
    old = {**stored, "fractions": {"train": 0.7, "val": 0.1, "test": 0.2}}
    del old["cal"]
    path.write_text(json.dumps(old))
    remade = load_or_make_split(dataset, tmp_path, 42)
    assert remade.parts_sha256() == split.parts_sha256() and len(remade.cal) > 0
    assert json.loads(path.read_text())["fractions"]["cal"] == 0.1
    path.write_text(json.dumps({**json.loads(path.read_text()), "rule": RANDOM_RULE,
                                "test": stored["train"][:5]}))
    assert load_or_make_split(dataset, tmp_path, 42).parts_sha256() == split.parts_sha256()
    assert json.loads(path.read_text())["rule"] == RULE


def test_load_or_make_split_replaces_the_file_of_another_dataset_or_seed(tmp_path):
    first = priced_dataset(120, seed=5)
    load_or_make_split(first, tmp_path, 42)

    other = first.subset(first.ids[:100])
    split = load_or_make_split(other, tmp_path, 42)
    stored = json.loads((tmp_path / SPLIT_FILE).read_text())
    assert stored["dataset_fingerprint"] == dataset_fingerprint(other)
    assert set(np.concatenate(list(split.parts().values())).tolist()) == set(other.ids.tolist())
    assert split.parts().keys() == make_split(other, 42).parts().keys()
    for a, b in zip(split.parts().values(), make_split(other, 42).parts().values(), strict=True):
        assert np.array_equal(a, b)

    reseeded = load_or_make_split(other, tmp_path, seed=7)
    assert json.loads((tmp_path / SPLIT_FILE).read_text())["seed"] == 7
    assert np.array_equal(reseeded.test, make_split(other, seed=7).test)
    assert not [p.name for p in tmp_path.iterdir() if p.name != SPLIT_FILE]  # no temp files left
