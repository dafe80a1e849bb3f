"""lamino.studies.dataset: labelled validation datasets (files, manifest, reproducibility, resume, validation)."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest

from lamino.geometry import VolumeGrid
from lamino.io import Scan
from lamino.materials import get_material
from lamino.studies import dataset
from lamino.studies.dataset import generate_dataset, load_manifest

SEED = 5
TILT = (20.0, 40.0)
EXPOSURE = (0.5, 1.0)
KW = dict(vary={"tilt_deg": list(TILT), "exposure_s": list(EXPOSURE), "seed": "sequential",
                "noise_seed": "sequential"},
          params={"radius_mm": 1.0, "n_spokes": 8, "label_sectors": 4},
          geometry={"det_shape": (24, 32), "n_views": 12}, seed=SEED, simulate_kw={"n_bins": 8}, progress=False)


def _generate(folder, count=3, **changes):
    return generate_dataset("siemens_star", count, folder, **{**KW, **changes})


def _stable(rows):
    """Rows without the wall-clock field."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ds")
    return folder, _generate(folder)


def test_files_truth_and_manifest_agree(made):
    folder, m = made
    assert sorted(os.listdir(folder)) == ["manifest.csv", "manifest.json", "sample_0000.h5", "sample_0001.h5",
                                          "sample_0002.h5"]
    assert len(m) == 3 and m.path == os.path.join(folder, "manifest.json")
    for row, path in zip(m.rows, m.files, strict=True):
        scan = Scan.load(path)
        assert scan.counts.shape == (12, 24, 32)
        assert scan.geometry.tilt_deg == row["tilt_deg"] == row["values"]["tilt_deg"]
        assert scan.geometry.to_dict() == row["geometry"]
        assert scan.provenance["seed"] == row["noise_seed"]
        assert scan.scanner["exposure_s"] == row["exposure_s"] == row["values"]["exposure_s"]
        assert scan.phantom["name"] == "siemens_star" and scan.phantom["params"]["n_spokes"] == 8
        assert scan.truth is not None
        grid = VolumeGrid.fit(scan.geometry)
        assert scan.truth.grid == grid and scan.truth.mu.shape == grid.shape
        assert row["truth_grid"] == grid.to_dict()
        substrate = scan.truth.labels["substrate"]          # 0.2 mm of silicon; the 5 µm spokes are sub-voxel
        mu_si = get_material("silicon").mu(scan.truth.energy_kev)
        assert substrate.sum() > 100
        np.testing.assert_allclose(np.median(scan.truth.mu[substrate]), mu_si, rtol=1e-4)
        assert 30 < scan.truth.energy_kev < 80                 # effective energy of the 80 kV tube spectrum
        assert row["bytes"] == os.path.getsize(path) and row["seconds"] > 0
    assert m.column("phantom_seed") == [SEED, SEED + 1, SEED + 2]
    assert m.column("noise_seed") == [SEED, SEED + 1, SEED + 2]
    # noise on: different noise seeds give different counts even where the settings are alike
    a, b = (Scan.load(p).flats[0] for p in m.files[:2])
    assert not np.array_equal(a, b)


def test_vary_values_are_the_documented_draws(made):
    _, m = made
    rng = np.random.default_rng(SEED)                   # per sample, sorted keys: exposure_s, tilt_deg
    expected = [(rng.uniform(*EXPOSURE), rng.uniform(*TILT)) for _ in range(3)]
    assert m.column("exposure_s") == [e for e, _ in expected]
    assert m.column("tilt_deg") == [t for _, t in expected]
    assert all(TILT[0] <= t <= TILT[1] for t in m.column("tilt_deg"))
    assert all(EXPOSURE[0] <= e <= EXPOSURE[1] for e in m.column("exposure_s"))
    assert len(set(m.column("tilt_deg"))) == 3


def test_header_regenerates_and_csv_matches(made):
    folder, m = made
    h = m.header
    assert h["format"] == "lamino.dataset" and h["count"] == 3 and h["complete"] is True
    args = h["arguments"]
    assert args["phantom"] == "siemens_star" and args["seed"] == SEED and args["scanner"] == "nikon_xt225"
    assert args["vary"]["tilt_deg"] == {"range": list(TILT)}
    assert args["vary"]["seed"] == {"sequential": True}
    # the header's arguments are accepted back: same dataset, nothing to do
    again = generate_dataset(out=folder, count=h["count"], progress=False, **args)
    assert _stable(again.rows) == _stable(m.rows)
    with open(os.path.join(folder, "manifest.csv"), newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [r["file"] for r in lines] == ["sample_0000.h5", "sample_0001.h5", "sample_0002.h5"]
    assert [float(r["tilt_deg"]) for r in lines] == m.column("tilt_deg")
    assert json.loads(lines[1]["geometry"]) == m.rows[1]["geometry"]


def test_reproducible_with_same_seed(made, tmp_path):
    _, m = made
    m2 = _generate(tmp_path)
    assert _stable(m2.rows) == _stable(m.rows)
    for p1, p2 in zip(m.files, m2.files, strict=True):
        s1, s2 = Scan.load(p1), Scan.load(p2)
        np.testing.assert_array_equal(s1.counts, s2.counts)
        np.testing.assert_array_equal(s1.truth.mu, s2.truth.mu)


def test_resume_regenerates_only_missing_sample(made, tmp_path, monkeypatch):
    src, m = made
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    original = Scan.load(m.files[1]).counts
    os.remove(folder / "sample_0001.h5")
    with open(folder / "manifest.json") as fh:
        data = json.load(fh)
    data["rows"] = [r for r in data["rows"] if r["index"] != 1]
    with open(folder / "manifest.json", "w") as fh:
        json.dump(data, fh)
    mtimes = {n: os.stat(folder / n).st_mtime_ns for n in ("sample_0000.h5", "sample_0002.h5")}
    calls = []
    real = dataset.simulate

    def counting(*args, **kw):
        calls.append(kw["seed"])
        return real(*args, **kw)

    monkeypatch.setattr(dataset, "simulate", counting)
    m2 = _generate(folder)
    assert calls == [SEED + 1]                         # only sample 1, with its own noise seed
    assert {n: os.stat(folder / n).st_mtime_ns for n in mtimes} == mtimes
    assert _stable(m2.rows) == _stable(m.rows)
    np.testing.assert_array_equal(Scan.load(folder / "sample_0001.h5").counts, original)
    # a larger count extends the dataset: one new sample, the old ones unchanged
    m3 = _generate(folder, count=4)
    assert calls == [SEED + 1, SEED + 3]
    assert _stable(m3.rows[:3]) == _stable(m.rows) and m3.rows[3]["phantom_seed"] == SEED + 3
    with pytest.raises(ValueError, match="count=2"):
        _generate(folder, count=2)


def test_different_arguments_refused_unless_overwrite(made, tmp_path):
    src, _ = made
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    with pytest.raises(ValueError, match=r"copy.*different arguments \(seed\)"):
        _generate(folder, seed=SEED + 1)
    m = _generate(folder, count=1, seed=SEED + 1, overwrite=True)
    assert len(m) == 1 and m.column("noise_seed") == [SEED + 1]
    assert sorted(os.listdir(folder)) == ["manifest.csv", "manifest.json", "sample_0000.h5"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"vary": {"tilt": [10, 20]}}, "vary key 'tilt' is not allowed"),
    ({"vary": {"param.seed": [1, 2]}}, "vary key 'param.seed' is not allowed"),
    ({"vary": {"param.colour": [1, 2]}}, "vary key 'param.colour' is not allowed"),
    ({"vary": {"tilt_deg": [50, 95]}}, r"vary\['tilt_deg'\] value=95 .*\[0, 90\)"),
    ({"vary": {"tilt_deg": [40, 20]}}, "min ≤ max"),
    ({"vary": {"n_views": [8.5, 12]}}, r"vary\['n_views'\] value=8.5 .*integer"),
    ({"vary": {"tilt_deg": "sequential"}}, "seed and noise_seed only"),
    ({"vary": {"tilt_deg": 30}}, r"vary\['tilt_deg'\]=30 is not allowed"),
    ({"vary": {"param.metal": [1.0, 2.0]}}, "list of choices"),
    ({"vary": {"n_views": [8, 12]}}, r"together with geometry\['n_views'\]"),
    ({"params": {"seed": 3}}, r"params\['seed'\]"),
    ({"params": {"spokes": 3}}, r"params\['spokes'\]"),
    ({"geometry": {"beam": "parallel"}}, "esrf_id19"),
    ({"geometry": {"pixels": 3}}, r"geometry\['pixels'\]"),
    ({"simulate_kw": {"seed": 3}}, r"simulate_kw\['seed'\]"),
    ({"scanner": "esrf_id19", "vary": {"kvp": [40, 60]}}, r"vary\['kvp'\] is not allowed with scanner 'esrf_id19'"),
    ({"vary": {"kvp": [100, 300]}}, r"kvp=.* within \[20, 225\]"),
    ({"params": {"radius_mm": -1.0}}, "radius_mm=-1.0 is not allowed"),
])
def test_bad_arguments_raise_before_any_work(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        _generate(tmp_path / "bad", **changes)
    assert not (tmp_path / "bad").exists()


def test_choices_cycle_or_draw_and_integer_ranges():
    vary = {"n_views": {"range": [8, 10]}, "param.metal": {"choices": ["gold", "tungsten"], "draw": False},
            "tilt_deg": {"choices": [10.0, 20.0, 30.0], "draw": True}}
    values = dataset._draws(6, vary, 1)
    assert [v["param.metal"] for v in values] == ["gold", "tungsten"] * 3
    rng = np.random.default_rng(1)                     # sorted keys: n_views, param.metal (no draw), tilt_deg
    expected = []
    for _ in range(6):
        n = int(rng.integers(8, 10, endpoint=True))
        expected.append((n, [10.0, 20.0, 30.0][int(rng.integers(3))]))
    assert [(v["n_views"], v["tilt_deg"]) for v in values] == expected
    assert all(isinstance(v["n_views"], int) and 8 <= v["n_views"] <= 10 for v in values)


def test_load_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"header": {"format": "other"}, "rows": []}')
    with pytest.raises(ValueError, match="not a lamino dataset"):
        load_manifest(tmp_path)
