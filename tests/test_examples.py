"""The example study files load, and each one's geometry sees its scoring region."""

import glob
import os

import pytest

from lamino.studies.point import build_geometry, scoring_region, study_grid
from lamino.studies.spec import load_spec

EXAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "examples", "*.toml")))


def test_the_examples_are_there():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"quickstart.toml", "ssb_pellet.toml", "siemens_star.toml", "lego.toml", "pouch_cell.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_loads_and_has_a_scoring_region(path):
    spec = load_spec(path)
    assert spec.points() and spec.description
    grid = study_grid(spec)
    geometry = build_geometry(spec, spec.points()[0])
    assert geometry.n_views == spec.points()[0]["n_views"]
    if os.path.basename(path) == "quickstart.toml":                    # cheap enough to check here
        region = scoring_region(spec, grid)
        assert 0.3 < region.mean() <= 1.0


def test_quickstart_is_small():
    spec = load_spec(EXAMPLES[[os.path.basename(p) for p in EXAMPLES].index("quickstart.toml")])
    assert len(spec.points()) == 9 and spec.phantom["name"] == "ssb_pellet"
    assert spec.scanner["preset"] == "nikon_xt225" and spec.scanner["kvp"] == 100
