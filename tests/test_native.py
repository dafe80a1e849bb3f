"""The native cone-beam kernels for XLA:CPU (``_cone_cpu.cc``) against the XLA kernels they replace, their argument
checks, and the ABI handshake that refuses a stale or foreign library."""

import re
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector, _native
from lamino.projector import _shearwarp as sw
from lamino.projector import projector as projector_module


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="no C++ compiler to build the kernels")
def test_native_kernels_are_built_and_used():
    # with a compiler the install builds the extension; a failed build would silently fall back to the slower
    # XLA kernels
    assert _native.available()
    g = Geometry.cone(30.0, 4, sod=90.0, sdd=170.0, det_shape=(12, 12), det_spacing=2.0)
    assert Projector(g, VolumeGrid((8, 8, 8), 1.0))._native
    assert not Projector(Geometry.parallel(30.0, 4, (12, 12), 1.0), VolumeGrid((8, 8, 8), 1.0))._native


def _xla_projector(monkeypatch, g, grid):
    with monkeypatch.context() as m:
        m.setattr(projector_module._native, "available", lambda: False)
        P = Projector(g, grid)
    assert not P._native
    return P


def _mixed_stack_cone():
    """Cone views with rays mostly along z, y and x in scrambled order, with offsets and roll."""
    kw = dict(sod=80.0, sdd=150.0, det_shape=(18, 22), det_spacing=(1.6, 1.9), cor_offset=0.6,
              det_offset=(0.9, -0.4), det_roll_deg=3.0)
    steep, flat = Geometry.cone(60.0, 4, **kw).vectors(), Geometry.cone(10.0, 7, **kw).vectors()
    vec = np.concatenate([flat[:3], steep[:2], flat[3:], steep[2:]])
    return Geometry.from_vectors(vec, (18, 22), beam="cone")


@pytest.mark.parametrize("case", ["tilt0", "tilt35", "mixed"])
@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_native_matches_the_xla_kernels(monkeypatch, case):
    g = {"tilt0": Geometry.cone(0.0, 9, sod=90.0, sdd=170.0, det_shape=(16, 20), det_spacing=2.0),
         "tilt35": Geometry.cone(35.0, 9, sod=70.0, sdd=140.0, det_shape=(16, 20), det_spacing=(2.2, 1.8),
                                 cor_offset=-0.8, det_roll_deg=-2.0),
         "mixed": _mixed_stack_cone()}[case]
    grid = VolumeGrid((12, 14, 13), (1.1, 0.9, 1.0), center=(0.4, -0.3, 0.2))
    native, xla = Projector(g, grid), _xla_projector(monkeypatch, g, grid)
    assert native._native
    rng = np.random.default_rng(4)
    x = rng.random(grid.shape, dtype=np.float32)
    y = rng.random(native.proj_shape, dtype=np.float32)
    # the two evaluate the same sums in a different order; XLA:CPU can also round a sample position that
    # lies exactly on a pixel edge differently between its own compiled variants, which moves single taps
    assert _rel(native.forward(x), np.asarray(xla.forward(x))) < 1e-4
    assert _rel(native.adjoint(y), np.asarray(xla.adjoint(y))) < 1e-3
    assert _rel(native.backproject(y), np.asarray(xla.backproject(y))) < 1e-4
    fx = np.asarray(native.forward(x), np.float64)
    assert np.vdot(fx, y) == pytest.approx(np.vdot(x, np.asarray(native.adjoint(y), np.float64)), rel=1e-6)


def test_batches_with_a_short_tail_cover_every_view():
    # 7 views in batches of 3: the last batch holds one real view and two that must add nothing
    g = Geometry.cone(25.0, 7, sod=90.0, sdd=170.0, det_shape=(16, 16), det_spacing=2.0)
    grid = VolumeGrid((10, 12, 12), 1.0)
    rng = np.random.default_rng(8)
    x = rng.random(grid.shape, dtype=np.float32)
    y = rng.random((7, 16, 16), dtype=np.float32)
    three = Projector(g, grid, views_per_batch=3)
    proj = np.asarray(three.forward(x))
    for i in (0, 6):
        one = Projector(Geometry.from_vectors(g.vectors()[i:i + 1], (16, 16), beam="cone"), grid)
        np.testing.assert_allclose(proj[i], np.asarray(one.forward(x))[0], rtol=1e-5, atol=1e-6)
        yi = np.zeros_like(y)
        yi[i] = y[i]
        np.testing.assert_allclose(np.asarray(three.adjoint(yi)), np.asarray(one.adjoint(y[i:i + 1])), rtol=1e-5,
                                   atol=1e-6)
        # (the two backprojectors' planes differ in size, so their prefiltered samples differ in rounding)
        np.testing.assert_allclose(np.asarray(three.backproject(yi)), np.asarray(one.backproject(y[i:i + 1])),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_bilinear_sample_matches_sample_plane_and_scatter_is_its_transpose():
    rng = np.random.default_rng(0)
    planes = rng.random((2, 9, 13), dtype=np.float32)
    # points inside, on the one-pixel taper beyond each edge, and far outside
    rows = rng.uniform(-2.0, 11.0, (2, 40)).astype(np.float32)
    cols = rng.uniform(-2.0, 15.0, (2, 40)).astype(np.float32)
    rows[:, :4] = [-0.5, 8.5, 3.0, 4.0]
    cols[:, :4] = [2.0, 5.0, -0.25, 12.75]
    native = np.asarray(_native.bilinear_sample(jnp.asarray(planes), jnp.asarray(rows), jnp.asarray(cols)))
    xla = np.asarray(jax.vmap(sw.sample_plane)(jnp.asarray(planes), jnp.asarray(rows), jnp.asarray(cols)))
    np.testing.assert_allclose(native, xla, rtol=1e-6, atol=1e-6)
    assert np.abs(native[:, :4]).min() > 0          # the taper points read a fraction of the edge pixels
    values = rng.random((2, 40), dtype=np.float32)
    back = np.asarray(_native.bilinear_scatter(jnp.asarray(values), jnp.asarray(rows), jnp.asarray(cols), (9, 13)))
    assert np.vdot(native.astype(np.float64), values) == pytest.approx(np.vdot(planes, back.astype(np.float64)),
                                                                       rel=1e-6)


@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_bad_kernel_arguments_raise_a_clear_error():
    vol = jnp.zeros((4, 5, 6), jnp.float32)
    with pytest.raises(Exception, match="params must have shape"):
        jax.block_until_ready(_native.zoom_sum(vol, jnp.zeros((1, 3, 3), jnp.float32), 0, (8, 8)))


_BASELINE_SCRIPT = """
import numpy as np
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
g = Geometry.cone(30.0, 5, sod=80.0, sdd=150.0, det_shape=(14, 18), det_spacing=2.0, det_roll_deg=2.0)
P = Projector(g, VolumeGrid((10, 12, 11), 1.0))
assert P._native
rng = np.random.default_rng(0)
x, y = rng.random(P.vol_shape, dtype=np.float32), rng.random(P.proj_shape, dtype=np.float32)
np.savez(OUT, f=P.forward(x), a=P.adjoint(y), b=P.backproject(y))
"""


@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_baseline_and_avx2_builds_agree(tmp_path):
    # the extension holds a baseline and an AVX2 + FMA build of each kernel; CPUs without AVX2 run the former
    import os
    import subprocess
    import sys

    results = []
    for baseline in ("0", "1"):
        out = tmp_path / f"run{baseline}.npz"
        env = dict(os.environ, LAMINO_NATIVE_BASELINE=baseline, LAMINO_CPU_DEVICES="1")
        subprocess.run([sys.executable, "-c", f"OUT = {str(out)!r}" + _BASELINE_SCRIPT], env=env, check=True)
        results.append(np.load(out))
    for key in "fab":
        assert _rel(results[1][key], results[0][key].astype(np.float64)) < 1e-6


# ------------------------------------------------------------------------------------- argument checks, handshake
def _z(*shape):
    return jnp.zeros(shape, jnp.float32)


_BAD_CALLS = {
    "zoom_sum slice count": (lambda: _native.zoom_sum(_z(4, 5, 6), _z(1, 3, 3), 0, (8, 8)),
                             r"LaminoConeZoomSum: params must have shape \(n_views, 4, 3\) .* got \(1, 3, 3\)"),
    "zoom_sum slice axis": (lambda: _native.zoom_sum(_z(4, 5, 6), _z(1, 5, 3), 2, (8, 8)),
                            "slice_axis must be 0 or 1, got 2"),
    "zoom_sum src rank": (lambda: _native.zoom_sum(_z(4, 5), _z(1, 5, 3), 1, (8, 8)),
                          r"src must be 3-D .* got \(4, 5\)"),
    "zoom_sum params rank": (lambda: _native.zoom_sum(_z(4, 5, 6), _z(5, 3), 1, (8, 8)),
                             r"params must have shape \(n_views, 5, 3\) .* got \(5, 3\)"),
    "zoom_sum planes rank": (lambda: _native.zoom_sum(_z(4, 5, 6), _z(1, 5, 3), 1, (8,)),
                             r"planes must have shape \(1, H, W\) .* got \(1, 8\)"),
    "zoom_sum_transpose views": (lambda: _native.zoom_sum_transpose(_z(4, 5, 6), _z(2, 8, 8), _z(1, 4, 3), 0),
                                 r"LaminoConeZoomSumT: planes_ct must have shape \(1, H, W\) .* got \(2, 8, 8\)"),
    "zoom_sum_transpose slices": (lambda: _native.zoom_sum_transpose(_z(4, 5, 6), _z(1, 8, 8), _z(1, 4, 3), 1),
                                  r"LaminoConeZoomSumT: params must have shape \(n_views, 5, 3\)"),
    "zoom_gather views": (lambda: _native.zoom_gather(_z(4, 5, 6), _z(2, 8, 8), _z(1, 5, 3), 1),
                          r"LaminoConeZoomGather: planes must have shape \(1, H, W\)"),
    "zoom_gather acc rank": (lambda: _native.zoom_gather(_z(4, 5, 6, 1), _z(1, 8, 8), _z(1, 5, 3), 1),
                             "LaminoConeZoomGather: acc must be 3-D"),
    "bilinear_sample cols": (lambda: _native.bilinear_sample(_z(2, 8, 8), _z(2, 10), _z(2, 11)),
                             r"LaminoBilinearSample: cols must have the shape of rows \(2, 10\), got \(2, 11\)"),
    "bilinear_sample images": (lambda: _native.bilinear_sample(_z(8, 8), _z(2, 10), _z(2, 10)),
                               r"images must have shape \(n, h, w\), got \(8, 8\)"),
    "bilinear_sample count": (lambda: _native.bilinear_sample(_z(3, 8, 8), _z(2, 10), _z(2, 10)),
                              r"rows must have shape \(3, \.\.\.\) for images of shape \(3, 8, 8\), got \(2, 10\)"),
    "bilinear_scatter rows": (lambda: _native.bilinear_scatter(_z(2, 10), _z(2, 9), _z(2, 10), (8, 8)),
                              r"LaminoBilinearScatter: rows must have the shape of values \(2, 10\), got \(2, 9\)"),
    "bilinear_scatter images": (lambda: _native.bilinear_scatter(_z(2, 10), _z(2, 10), _z(2, 10), (8,)),
                                r"images must have shape \(n, h, w\), got \(2, 8\)"),
}


@pytest.mark.parametrize("case", list(_BAD_CALLS))
@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_each_kernel_checks_its_argument_shapes(case):
    call, message = _BAD_CALLS[case]
    with pytest.raises(RuntimeError, match=message):
        jax.block_until_ready(call())


@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_empty_batches_are_fine():
    assert _native.bilinear_sample(_z(0, 8, 8), _z(0, 10), _z(0, 10)).shape == (0, 10)
    assert _native.bilinear_scatter(_z(0, 10), _z(0, 10), _z(0, 10), (8, 8)).shape == (0, 8, 8)


@pytest.fixture
def fresh_native():
    """The native library loaded and checked anew, in the test and after it (``available`` and ``_registered``
    are cached)."""
    _native.available.cache_clear()
    _native._registered.cache_clear()
    yield
    _native.available.cache_clear()
    _native._registered.cache_clear()


@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_the_built_library_passes_the_handshake(fresh_native):
    import ctypes

    lib = ctypes.CDLL(str(_native._library_path()))
    lib.lamino_native_abi.restype, lib.lamino_native_source_hash.restype = ctypes.c_int64, ctypes.c_char_p
    assert lib.lamino_native_abi() == _native.ABI_VERSION
    assert lib.lamino_native_source_hash().decode() == _native.source_hash() is not None
    assert _native.available()


def _refused_once(match: str) -> None:
    """available() is False, twice, with exactly one RuntimeWarning, which matches ``match``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not _native.available()
        assert not _native.available()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert re.search(match, messages[0]), messages[0]
    assert "the XLA kernels run instead" in messages[0] and "pip install ." in messages[0]


_FAKE_LIBRARIES = {     # C source of a library named like the extension; the warning it gets
    "no handshake": ("int lamino_unrelated(void) { return 0; }", "has no ABI handshake"),
    "other ABI": ('#include <stdint.h>\nint64_t lamino_native_abi(void) { return -7; }\n'
                  'const char* lamino_native_source_hash(void) { return "SOURCE"; }', "reports ABI version -7"),
    "other sources": ('#include <stdint.h>\nint64_t lamino_native_abi(void) { return ABI; }\n'
                      'const char* lamino_native_source_hash(void) { return "0123456789abcdef"; }',
                      r"kernel sources 0123456789abcdef, expected ABI version \d+ and sources [0-9a-f]{16}"),
}


@pytest.mark.parametrize("kind", list(_FAKE_LIBRARIES))
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler to build a fake library")
def test_a_stale_or_foreign_library_is_refused(monkeypatch, tmp_path, fresh_native, kind):
    import importlib.machinery
    import importlib.util
    import subprocess

    # the reference comes from the real kernels when they are built
    g = Geometry.cone(30.0, 5, sod=80.0, sdd=150.0, det_shape=(14, 18), det_spacing=2.0)
    grid = VolumeGrid((10, 12, 11), 1.0)
    x = np.random.default_rng(1).random(grid.shape, dtype=np.float32)
    expected = np.asarray(Projector(g, grid).forward(x), np.float64)

    # a library of the extension's name in a lamino/projector folder on sys.path: found by _library_path()
    source, match = _FAKE_LIBRARIES[kind]
    source = source.replace("ABI", str(_native.ABI_VERSION)).replace("SOURCE", str(_native.source_hash()))
    folder = tmp_path / "lamino" / "projector"
    folder.mkdir(parents=True)
    (tmp_path / "fake.c").write_text(source + "\n")
    library = folder / ("_cone_cpu" + importlib.machinery.EXTENSION_SUFFIXES[0])
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(library), str(tmp_path / "fake.c")], check=True)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lamino.projector._cone_cpu" else find_spec(name, *a))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _native._library_path() == library
    _native.available.cache_clear()
    _native._registered.cache_clear()

    _refused_once(match)
    with pytest.raises(_native.StaleLibraryError, match="pip install ."):      # a direct call says why, too
        _native.zoom_sum(_z(2, 3, 4), _z(1, 2, 3), 0, (3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # the one warning was given already
        P = Projector(g, grid)
        assert not P._native
        assert _rel(P.forward(x), expected) < 1e-4


@pytest.mark.parametrize("patch", ["abi", "sources"])
@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_the_built_library_is_refused_by_other_kernel_sources(monkeypatch, fresh_native, patch):
    # what a stale build left from an older checkout looks like to this module
    if patch == "abi":
        monkeypatch.setattr(_native, "ABI_VERSION", _native.ABI_VERSION + 1)
    else:
        monkeypatch.setattr(_native, "source_hash", lambda: "0123456789abcdef")
    _refused_once("expected ABI version .* and sources")
    g = Geometry.cone(30.0, 4, sod=90.0, sdd=170.0, det_shape=(12, 12), det_spacing=2.0)
    assert not Projector(g, VolumeGrid((8, 8, 8), 1.0))._native


@pytest.mark.skipif(not _native.available(), reason="native kernels not built")
def test_without_the_kernel_sources_only_the_abi_version_is_checked(monkeypatch, fresh_native):
    monkeypatch.setattr(_native, "_SOURCES", ("_cone_cpu_missing.cc",))
    assert _native.source_hash() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _native.available()
