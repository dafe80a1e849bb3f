"""Detector: absorption against xraydb, energy weights, PSF kernels, FFT blur and the readout chain."""

from __future__ import annotations

import functools
import json
import math

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.signal
import xraydb

from lamino.materials import get_material
from lamino.simulate.detector import Detector, blur, gaussian_kernel, lorentzian_kernel, readout

E = np.array([15.0, 33.2, 40.0, 60.0, 100.0, 150.0])


def _second_moment(kernel: np.ndarray) -> float:
    """Variance (px²) of a centred kernel along its rows."""
    n = np.arange(kernel.shape[0]) - kernel.shape[0] // 2
    return float(np.sum(kernel.sum(1) * n * n) / kernel.sum())


# ------------------------------------------------------------------ energy response


def test_csi_efficiency_matches_xraydb():
    eta = Detector(scintillator="CsI", scintillator_um=500.0).efficiency(E)
    mu = np.array([xraydb.material_mu("CsI", e * 1000.0, density=4.51) for e in E]) / 10.0  # 1/mm
    np.testing.assert_allclose(eta, 1.0 - np.exp(-mu * 0.5), rtol=1e-6)
    assert eta[0] > 0.99 and eta[-1] < 0.5  # thick at 15 keV, thin at 150 keV


def test_scintillator_materials_registered():
    for name, density in (("csi", 4.51), ("gos", 7.32), ("luag", 6.73), ("cdte", 5.85)):
        assert get_material(name).density == density
    gos = Detector(scintillator="GOS", scintillator_um=200.0).efficiency(E)
    mu = np.array([xraydb.material_mu("Gd2O2S", e * 1000.0, density=7.32) for e in E]) / 10.0
    np.testing.assert_allclose(gos, 1.0 - np.exp(-mu * 0.2), rtol=1e-6)


def test_ideal_sensor_and_cover_transmission():
    d = Detector(scintillator=None, cover=(("aluminium", 0.5), ("polyimide", 0.1)))
    np.testing.assert_array_equal(d.efficiency(E), np.ones_like(E))
    mu_al = np.array([xraydb.material_mu("Al", e * 1000.0, density=2.699) for e in E]) / 10.0
    mu_pi = get_material("polyimide").mu(E)
    np.testing.assert_allclose(d.cover_transmission(E), np.exp(-mu_al * 0.5 - mu_pi * 0.1), rtol=1e-6)
    np.testing.assert_array_equal(Detector().cover_transmission(E), np.ones_like(E))


def test_energy_weights():
    np.testing.assert_allclose(Detector(adu_per_kev=0.02).energy_weights(E), 0.02 * E, rtol=1e-15)
    counting = Detector(mode="counting", threshold_kev=(33.2, 100.0))
    np.testing.assert_array_equal(counting.energy_weights(E), [0, 1, 1, 1, 0, 0])  # window [low, high)
    open_window = Detector(mode="counting", threshold_kev=(20.0, None))
    np.testing.assert_array_equal(open_window.energy_weights(E), [0, 1, 1, 1, 1, 1])


# ------------------------------------------------------------------ PSF kernels


@pytest.mark.parametrize("psf", ["none", "gaussian", "glare", "lorentzian"])
@pytest.mark.parametrize("extra", [0.0, 1.5])
def test_psf_kernels_are_normalised_odd_and_symmetric(psf, extra):
    k = Detector(shape=(128, 128), psf=psf, psf_sigma_px=0.8, glare_sigma_px=6.0).psf_kernel(extra)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
    assert np.all(k >= 0)
    np.testing.assert_allclose(k, k.T, atol=1e-12)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-12)
    assert k.shape[0] <= 2 * 128 - 1


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_second_moment_is_sigma_squared(sigma):
    k = Detector(psf="gaussian", psf_sigma_px=sigma).psf_kernel()
    assert _second_moment(k) == pytest.approx(sigma**2, rel=0.05)
    assert _second_moment(k.T) == pytest.approx(sigma**2, rel=0.05)


def test_extra_gaussian_adds_variance_and_glare_mixes_variances():
    d = Detector(psf="gaussian", psf_sigma_px=0.7)
    assert _second_moment(d.psf_kernel(extra_sigma_px=1.2)) == pytest.approx(0.7**2 + 1.2**2, rel=0.05)
    g = Detector(psf="glare", psf_sigma_px=0.7, glare_fraction=0.1, glare_sigma_px=5.0).psf_kernel()
    assert _second_moment(g) == pytest.approx(0.9 * 0.7**2 + 0.1 * 5.0**2, rel=0.05)
    assert Detector(psf="none").psf_kernel().shape == (1, 1)
    assert gaussian_kernel(0.0).shape == (1, 1)


def test_lorentzian_pixels_equal_integrals_of_the_cauchy_psf():
    gamma = 0.7
    k = lorentzian_kernel(gamma)
    c = k.shape[0] // 2
    radius = c + 0.5
    kept = 1.0 - gamma / math.sqrt(radius**2 + gamma**2)  # disk of radius R inside the square
    assert kept > 0.99

    def pixel(i, j):  # mass of the 2-D Cauchy PSF over pixel (i, j) by numerical quadrature
        p = lambda y, x: gamma / (2 * np.pi * (x * x + y * y + gamma * gamma) ** 1.5)  # noqa: E731
        return scipy.integrate.dblquad(p, i - 0.5, i + 0.5, j - 0.5, j + 0.5, epsabs=1e-13, epsrel=1e-11)[0]

    scale = k[c, c] / pixel(0, 0)  # 1 / (mass inside the kernel)
    assert 1.0 < scale < 1.0 / 0.99
    for i, j in ((1, 0), (2, 3), (-4, 1)):
        assert k[c + i, c + j] == pytest.approx(scale * pixel(i, j), rel=1e-6)


# ------------------------------------------------------------------ blur


def test_blur_matches_direct_convolution_and_conserves_signal():
    rng = np.random.default_rng(1)
    img = np.zeros((2, 64, 80), np.float32)
    img[:, 20:44, 25:55] = rng.random((2, 24, 30))
    k = Detector(psf="glare", psf_sigma_px=1.0, glare_sigma_px=2.5, glare_fraction=0.1).psf_kernel()
    out = np.asarray(jax.jit(blur)(img, k))
    assert out.shape == img.shape and out.dtype == np.float32
    for b in range(2):
        np.testing.assert_allclose(out[b], scipy.signal.convolve2d(img[b], k, mode="same"), atol=1e-5)
        assert out[b].sum() == pytest.approx(img[b].sum(), rel=1e-5)


def test_blur_of_a_point_is_the_kernel_and_edges_lose_signal():
    k = gaussian_kernel(1.0)
    img = np.zeros((31, 31), np.float32)
    img[15, 15] = 1.0
    out = np.asarray(blur(img, k))
    r = k.shape[0] // 2
    np.testing.assert_allclose(out[15 - r:16 + r, 15 - r:16 + r], k, atol=1e-6)
    edge = np.zeros((31, 31), np.float32)
    edge[0, 0] = 1.0
    kept = k.sum(1)[r:].sum() ** 2  # zero padding, no wrap-around: only the kernel's quadrant on the detector
    assert float(blur(edge, k).sum()) == pytest.approx(kept, rel=1e-5)
    np.testing.assert_array_equal(np.asarray(blur(img, np.ones((1, 1)))), img)
    with pytest.raises(ValueError, match="kernel"):
        blur(img, np.ones((2, 2)))


# ------------------------------------------------------------------ pixel maps and readout


def test_pixel_maps_statistics_and_determinism():
    d = Detector(shape=(300, 400), gain_sigma=0.03, gain_drift_sigma=0.01, dead_fraction=0.002, hot_fraction=0.001)
    m = d.pixel_maps()
    n = 300 * 400
    assert m["gain"].dtype == np.float32 and m["gain"].shape == (300, 400)
    assert abs(m["gain"].mean() - 1.0) < 5 * 0.03 / math.sqrt(n)
    assert m["gain"].std() == pytest.approx(0.03, rel=0.02)
    assert m["drift"].std() == pytest.approx(0.01, rel=0.02)
    assert (m["dead"].sum(), m["hot"].sum()) == (round(0.002 * n), round(0.001 * n))
    assert not np.any(m["dead"] & m["hot"])
    m2 = Detector(shape=(300, 400), gain_sigma=0.03, gain_drift_sigma=0.01, dead_fraction=0.002,
                  hot_fraction=0.001).pixel_maps()
    np.testing.assert_array_equal(m2["gain"], m["gain"])
    assert not np.array_equal(d.replace(seed=1).pixel_maps()["gain"], m["gain"])
    assert np.all(Detector().pixel_maps()["gain"] == 1.0)


@functools.partial(jax.jit, static_argnames=("detector", "noise", "flat"))
def _readout(signal, detector, maps, key, noise, flat=False):
    return readout(signal, detector, maps, key, noise, flat)


def test_read_noise_adds_variance():
    d = Detector(shape=(400, 500), read_noise_adu=3.0, offset_adu=100.0, quantize=False, bit_depth=None)
    signal = np.full(d.shape, 50.0, np.float32)
    out = np.asarray(_readout(signal, d, d.pixel_maps(), jax.random.key(0), True))
    assert out.var() == pytest.approx(9.0, rel=0.05)
    assert out.mean() == pytest.approx(150.0, abs=0.05)
    quiet = np.asarray(_readout(signal, d, d.pixel_maps(), jax.random.key(0), False))
    np.testing.assert_array_equal(quiet, 150.0)


def test_quantisation_and_saturation():
    d = Detector(shape=(64, 64), bit_depth=12, read_noise_adu=2.0, offset_adu=10.0)
    signal = np.linspace(-50.0, 5000.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    out = np.asarray(_readout(signal, d, d.pixel_maps(), jax.random.key(1), True))
    np.testing.assert_array_equal(out, np.round(out))
    assert out.min() == 0.0 and out.max() == 4095.0
    assert np.all(out[signal > 4200] == 4095.0) and np.all(out[signal < -30] == 0.0)
    free = Detector(shape=(64, 64), bit_depth=None, quantize=False)
    np.testing.assert_array_equal(np.asarray(readout(signal, free, free.pixel_maps(), None, False)), signal)


def test_dead_hot_gain_and_drift():
    d = Detector(shape=(100, 120), gain_sigma=0.05, gain_drift_sigma=0.02, dead_fraction=0.01, hot_fraction=0.01,
                 quantize=False, bit_depth=14)
    m = d.pixel_maps()
    signal = np.full(d.shape, 1000.0, np.float32)
    key = jax.random.key(2)
    proj = np.asarray(_readout(signal, d, m, key, False))
    flat = np.asarray(_readout(signal, d, m, key, False, flat=True))
    ok = ~(m["dead"] | m["hot"])
    assert np.all(proj[m["dead"]] == 0.0) and np.all(proj[m["hot"]] == 2**14 - 1)
    np.testing.assert_allclose(flat[ok], 1000.0 * m["gain"][ok], rtol=1e-6)
    np.testing.assert_allclose(proj[ok], 1000.0 * m["gain"][ok] * m["drift"][ok], rtol=1e-6)
    np.testing.assert_allclose(proj[ok] / flat[ok], m["drift"][ok], rtol=1e-6)  # what flat-fielding leaves: rings


# ------------------------------------------------------------------ serialisation and validation


def test_dict_round_trip_hash_and_replace():
    d = Detector(mode="counting", threshold_kev=(20.0, math.inf), cover=(("aluminium", 0.5),), spacing=0.1,
                 bit_depth=None)
    assert d.spacing == (0.1, 0.1)
    back = Detector.from_dict(json.loads(json.dumps(d.to_dict(), allow_nan=False)))
    assert back == d and hash(back) == hash(d)
    assert d.replace(shape=(10, 20)).shape == (10, 20)
    with pytest.raises(ValueError, match="nonsense"):
        d.replace(nonsense=1)
    with pytest.raises(ValueError, match="nonsense"):
        Detector.from_dict({"nonsense": 1})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"shape": (0, 10)}, "shape"),
        ({"shape": (10.5, 10)}, "shape"),
        ({"shape": 10}, "shape"),
        ({"spacing": (0.1, -0.1)}, "spacing"),
        ({"mode": "imaging"}, "mode"),
        ({"scintillator": "kryptonite"}, "scintillator"),
        ({"scintillator_um": 0.0}, "scintillator_um"),
        ({"cover": (("aluminium", -1.0),)}, "cover"),
        ({"cover": (("vibranium", 1.0),)}, "cover"),
        ({"threshold_kev": (30.0, 20.0)}, "threshold_kev"),
        ({"threshold_kev": (-1.0, 20.0)}, "threshold_kev"),
        ({"psf": "airy"}, "psf"),
        ({"psf_sigma_px": -0.1}, "psf_sigma_px"),
        ({"psf_sigma_px": float("nan")}, "psf_sigma_px"),
        ({"glare_fraction": 1.5}, "glare_fraction"),
        ({"glare_sigma_px": 0.0}, "glare_sigma_px"),
        ({"lorentz_gamma_px": -1.0}, "lorentz_gamma_px"),
        ({"gain_sigma": -0.1}, "gain_sigma"),
        ({"gain_drift_sigma": float("inf")}, "gain_drift_sigma"),
        ({"dead_fraction": -0.1}, "dead_fraction"),
        ({"hot_fraction": 2.0}, "hot_fraction"),
        ({"dead_fraction": 0.6, "hot_fraction": 0.6}, "hot_fraction"),
        ({"hot_fraction": 0.1, "bit_depth": None}, "hot_fraction"),
        ({"adu_per_kev": 0.0}, "adu_per_kev"),
        ({"read_noise_adu": -1.0}, "read_noise_adu"),
        ({"offset_adu": "dark"}, "offset_adu"),
        ({"bit_depth": 0}, "bit_depth"),
        ({"bit_depth": 16.0}, "bit_depth"),
        ({"quantize": "yes"}, "quantize"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_fields_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Detector(**kwargs)


def test_bad_extra_sigma():
    with pytest.raises(ValueError, match="extra_sigma_px"):
        Detector().psf_kernel(-1.0)
