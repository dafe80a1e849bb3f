"""The tilt slope of d′ through the differentiable (linearised) chain: jax.grad against finite differences, its
d′ against the NPW d′ measured through the full simulate → reconstruct chain, and its use by the planner."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_detectability as chain  # noqa: E402  (the plate, pore and scanner of the chain validation)

from lamino.geometry import Geometry, VolumeGrid  # noqa: E402
from lamino.recon import reconstruct  # noqa: E402
from lamino.simulate.simulate import detected_spectrum  # noqa: E402
from lamino.studies.gradient import dprime_model, effective_counts  # noqa: E402

ENERGY = 30.0
BACKGROUND = VolumeGrid((12, 40, 40), 0.1)         # holds the whole 2.4 × 2.4 × 0.5 mm plate


def _geometry(tilt):
    return Geometry.parallel(tilt_deg=tilt, n_views=48, det_shape=(20, 36), det_spacing=0.1)


@pytest.fixture(scope="module")
def model():
    counts = effective_counts(detected_spectrum(chain._scanner(1e-6), _geometry(30.0)))
    assert counts == pytest.approx(1000.0, rel=1e-6)     # 1e9 photons/s per pixel × 1 µs, monochromatic

    def mu_of(material):
        return 0.0 if material == "void" else float(chain.PLATE.materials[material].mu(ENERGY))

    value_and_slope = dprime_model(_geometry, chain.GRID, [chain.PORE], mu_of, counts,
                                   chain.PLATE.attenuation(BACKGROUND, ENERGY), BACKGROUND)
    return lambda tilt: value_and_slope(0, tilt)


@pytest.mark.parametrize("tilt", [22.0, 40.0])
def test_dprime_slope_matches_finite_differences(model, tilt):
    """jax.grad through the projector against central differences of ±0.25°. (Measured: 0.141 against 0.143
    at 22°, −0.058 against −0.056 at 40°. Steps of 1° or more cross the kinks that linear interpolation puts in
    d′(α) and can differ in sign: −0.016 at 40°; the planner therefore averages slopes over ±3°.)"""
    value, slope = model(tilt)
    h = 0.25
    fd = (model(tilt + h)[0] - model(tilt - h)[0]) / (2 * h)
    assert abs(fd) > 0.03                                       # d′ does depend on the tilt here
    assert slope == pytest.approx(fd, rel=0.15)
    assert 10 < value < 20


def test_linearised_dprime_follows_the_chain(model, monkeypatch):
    """The closed-form d′ against the NPW d′ measured through the full chain (exact rays, Poisson noise, plain
    CL-FBP) at 15° and 45°: within 20 % (measured 14.3 against 16.9 and 16.5 against 17.9: the voxel model's
    signal is a little blurrier than exact rays'), and both rise with tilt."""
    def plain_fbp(scan):
        return np.asarray(reconstruct(scan.line_integrals(), chain.GEOMETRY, chain.GRID, "fbp", extend=False).volume)

    measured = {}
    for tilt in (15.0, 45.0):
        monkeypatch.setattr(chain, "GEOMETRY", _geometry(tilt))
        monkeypatch.setattr(chain, "_recon", plain_fbp)
        absent, present = chain._chain(1e-6)
        measured[tilt], _ = chain._npw(absent, present, seeds=range(3))
        assert model(tilt)[0] == pytest.approx(measured[tilt], rel=0.2)
    assert measured[45.0] > measured[15.0] and model(45.0)[0] > model(15.0)[0]


def test_refine_gradient_needs_a_dprime_objective(tmp_path):
    from test_study_tasks import STUDY, _spec

    text = STUDY.replace('refine = "none"', 'refine = "gradient"')
    with pytest.raises(ValueError, match=r"\[planner\] refine.*d′ metrics only"):
        _spec(tmp_path, text)
    spec = _spec(tmp_path, text + '\n[objective]\nweights = { dprime_hole = 1.0 }\n')
    assert spec.refine == "gradient"


@pytest.mark.slow
def test_gradient_refinement_searches_the_side_the_slope_points_to(tmp_path):
    from test_study_tasks import STUDY, _spec

    from lamino.studies.run import run_study

    text = STUDY.replace('refine = "none"', 'refine = "gradient"\nrefine_evaluations = 2').replace(
        "tilt_deg = [30]", "tilt_deg = [20, 40]") + '\n[objective]\nweights = { dprime_hole = 1.0 }\n'
    spec = _spec(tmp_path, text)
    result = run_study(spec, str(tmp_path / "out"), progress=False)
    slope = result.gradient["objective_slope_per_deg"]
    assert math.isfinite(slope) and slope != 0
    tilts = sorted({c.point["tilt_deg"] for c in result.configurations})
    refined = [t for t in tilts if t not in (20, 40)]
    best_grid = max((c for c in result.configurations if c.stage == "grid"), key=lambda c: c.objective_mean)
    t = best_grid.point["tilt_deg"]
    if (t == 40 and slope > 0) or (t == 20 and slope < 0):
        assert refined == [] and "may find a better tilt" in result.reason
    else:
        side = (lambda x: x > t) if slope > 0 else (lambda x: x < t)
        assert refined and all(side(x) for x in refined)
