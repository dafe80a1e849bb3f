"""Photon statistics: the fast Poisson sampler and the compound-Poisson energy-integrating signal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lamino.simulate.noise import EXACT_BELOW, binned_poisson, compound_poisson, poisson

N = 400_000


@pytest.mark.parametrize("lam", [0.3, 4.0, 19.5, 20.0, 150.0, 1e4])
def test_poisson_mean_and_variance(lam):
    k = np.asarray(poisson(jax.random.key(1), jnp.full((N,), lam)))
    se = np.sqrt(lam / N)
    assert abs(k.mean() - lam) < 5 * se
    # variance of a sample variance ≈ 2λ²/N (+ λ/N): a 5-σ band, exact to within the rounding 1/12 above 20
    assert abs(k.var() - lam) < 5 * np.sqrt((2 * lam**2 + lam) / N) + (1 / 12 if lam >= EXACT_BELOW else 0)
    assert np.all(k == np.round(k)) and k.min() >= 0


def test_poisson_small_means_follow_the_pmf():
    lam = 2.5
    k = np.asarray(poisson(jax.random.key(2), jnp.full((N,), lam))).astype(int)
    observed = np.bincount(k, minlength=12)[:12] / N
    expected = stats.poisson.pmf(np.arange(12), lam)
    assert np.all(np.abs(observed - expected) <= 5 * np.sqrt(expected / N) + 1e-5)


def test_poisson_zero_mean_gives_zero():
    assert float(jnp.max(poisson(jax.random.key(0), jnp.zeros(1000)))) == 0.0


def test_compound_poisson_has_exact_moments():
    # two energy bins, 40 and 80 keV photons, energy weighting w = E
    lam = np.array([30.0, 10.0])
    w = np.array([40.0, 80.0])
    total, m1, m2 = lam.sum(), lam @ w, lam @ w**2
    s = np.asarray(compound_poisson(jax.random.key(3), jnp.full((N,), total), jnp.full((N,), m1),
                                    jnp.full((N,), m2)), np.float64)
    assert abs(s.mean() - m1) < 5 * np.sqrt(m2 / N)
    assert s.var() == pytest.approx(m2, rel=0.02)
    # the Swank-like factor: var/mean differs from a monoenergetic detector's w̄ by m2/m1 vs m1/total
    assert s.var() / s.mean() == pytest.approx(m2 / m1, rel=0.02)


def test_compound_poisson_starved_pixels_read_zero_often():
    s = np.asarray(compound_poisson(jax.random.key(4), jnp.full((N,), 0.5), jnp.full((N,), 25.0),
                                    jnp.full((N,), 1250.0)))
    assert np.mean(s == 0) == pytest.approx(np.exp(-0.5), abs=0.005)


def test_binned_poisson_matches_the_compound_moments():
    lam = jnp.broadcast_to(jnp.array([5.0, 12.0, 40.0]), (N, 3))
    w = jnp.array([20.0, 50.0, 90.0])
    s = np.asarray(binned_poisson(jax.random.key(5), lam, w), np.float64)
    m1 = float(jnp.sum(lam[0] * w))
    m2 = float(jnp.sum(lam[0] * w * w))
    assert abs(s.mean() - m1) < 5 * np.sqrt(m2 / N)
    assert s.var() == pytest.approx(m2, rel=0.02)


def test_same_key_same_samples_other_key_differs():
    lam = jnp.linspace(0, 200, 5000)
    a, b, c = (np.asarray(poisson(jax.random.key(k), lam)) for k in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5


def test_fused_moments_equal_the_per_bin_sums():
    from lamino.simulate.chain import as_constants, expected_moments, expected_photons

    rng = np.random.default_rng(0)
    mu, photons, weights = rng.random((3, 5)), rng.random(5) * 1e3, np.linspace(10, 80, 5)
    falloff = rng.random((4, 6))
    one = np.ones((1, 1))
    c = as_constants(mu, photons, weights, falloff, one, one, one, 0.0, {})
    lengths = jnp.asarray(rng.random((3, 2, 4, 6)), jnp.float32)
    lam = np.asarray(expected_photons(lengths, c), np.float64)
    expected = np.stack([lam.sum(-1), lam @ weights, lam @ weights**2])
    np.testing.assert_allclose(np.asarray(expected_moments(lengths, c)), expected, rtol=2e-5)
