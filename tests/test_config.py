"""Importing lamino configures nothing; lamino.configure() does, and keeps what the user set first."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

_STATE = """
import json, os, jax
state = {k: getattr(jax.config, k) for k in ("jax_num_cpu_devices", "jax_compilation_cache_dir",
         "jax_enable_x64", "jax_persistent_cache_min_compile_time_secs")}
"""


def _run(code: str, home, **env) -> dict:
    """Run ``code`` (an indented block, then ``_STATE`` and a last line that prints a JSON dict) in a fresh
    interpreter with HOME=home."""
    first, sep, rest = code.partition(_STATE)
    code = textwrap.dedent(first) + sep + rest
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LAMINO_", "XLA_FLAGS", "JAX_"))}
    environ.update(HOME=str(home), **env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_leaves_jax_config_and_home_untouched(tmp_path):
    before = _run(_STATE + "print(json.dumps(state))", tmp_path)
    after = _run("""
        import lamino, lamino.phantoms, lamino.simulate, lamino.recon, lamino.studies, lamino.cli
        """ + _STATE + "state['devices'] = len(jax.devices()); print(json.dumps(state))", tmp_path)
    assert after.pop("devices") == 1
    assert after == before
    assert list(tmp_path.iterdir()) == []            # nothing written to the home directory


def test_configure_sets_devices_and_cache(tmp_path):
    cache = tmp_path / "cache"
    state = _run(f"""
        import lamino
        lamino.configure(cpu_devices=3, cache_dir={str(cache)!r})
        """ + _STATE + "state['devices'] = len(jax.devices()); print(json.dumps(state))", tmp_path)
    assert state["jax_num_cpu_devices"] == 3 and state["devices"] == 3
    assert state["jax_compilation_cache_dir"] == str(cache)


def test_configure_keeps_the_users_jax_settings_and_warns_when_slower(tmp_path):
    state = _run("""
        import warnings, jax
        jax.config.update("jax_num_cpu_devices", 1)
        jax.config.update("jax_compilation_cache_dir", "/somewhere/else")
        import lamino
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lamino.configure(cpu_devices=2, cache_dir="/not/this")
        """ + _STATE + "state['warnings'] = [str(w.message) for w in caught]; print(json.dumps(state))", tmp_path)
    assert state["jax_num_cpu_devices"] == 1
    assert state["jax_compilation_cache_dir"] == "/somewhere/else"
    assert len(state["warnings"]) == 1 and "faster" in state["warnings"][0]


def test_configure_after_jax_started_keeps_its_devices(tmp_path):
    state = _run("""
        import warnings, jax
        jax.numpy.zeros(1).block_until_ready()
        import lamino
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lamino.configure(cpu_devices=2, cache_dir="off")
        """ + _STATE + "state['n'] = len(jax.devices()); state['w'] = len(caught); print(json.dumps(state))", tmp_path)
    assert state["n"] == 1 and state["w"] == 1 and state["jax_compilation_cache_dir"] is None


def test_configure_rejects_bad_counts():
    import lamino

    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="cpu_devices=.* is not allowed"):
            lamino.configure(cpu_devices=bad)


def test_top_level_names():
    import lamino
    from lamino.geometry import Geometry, VolumeGrid
    from lamino.projector import Projector

    assert (lamino.Geometry, lamino.VolumeGrid, lamino.Projector) == (Geometry, VolumeGrid, Projector)
    for name in lamino.__all__:
        assert getattr(lamino, name) is not None
    assert {"phantoms", "simulate", "recon", "studies", "configure"} <= set(lamino.__all__)
