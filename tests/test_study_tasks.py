"""Detection tasks in studies: [[task]] tables (validation, one-line errors) and the d′ metrics a point scores,
built in (cracks and pores of the pellet) and user-defined."""

import math

import numpy as np
import pytest
from conftest import tiny_star_study

from lamino import phantoms
from lamino.studies.point import evaluate_point
from lamino.studies.spec import load_spec
from lamino.studies.tasks import builtin_tasks

STUDY = tiny_star_study("""
[study]
name = "tasks"
""", """
[sweep]
tilt_deg = [30]
n_views = [24]

[planner]
refine = "none"

[[task]]
name = "hole"
shape = "disk"
size_mm = [0.12, 0.04]
material = "void"
label = "substrate"
""")


def _spec(tmp_path, text=STUDY):
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    return load_spec(str(path))


def test_a_user_task_is_scored_as_dprime_name(tmp_path):
    spec = _spec(tmp_path)
    result = evaluate_point(spec, spec.points()[0])
    d = result.metrics["dprime_hole"]
    assert math.isfinite(d) and d > 0
    assert "crack_dprime" not in result.metrics


@pytest.mark.parametrize("change, words", [
    (('shape = "disk"', 'shape = "cube"'), ["[[task]] hole shape", "sphere, disk, cylinder, plane"]),
    (("size_mm = [0.12, 0.04]", "size_mm = [0.09]"), ["[[task]] hole size_mm", "[diameter, thickness]"]),
    (('shape = "disk"\nsize_mm = [0.12, 0.04]', 'shape = "sphere"\nsize_mm = 0.2'),
     ["task 'hole'", "outside the phantom"]),
    (('label = "substrate"', 'label = "substrate"\nat_mm = [0, 0, 0]'), ["both at_mm and label"]),
    (('name = "hole"', 'name = "a hole"'), ["[[task]] name", "letters, digits"]),
    (('material = "void"', 'material = "unobtainium"'), ["[[task]] hole material", "lamino.materials"]),
    (('material = "void"', 'material = "silicon"'), ["task 'hole'", "surroundings"]),
    (('label = "substrate"', "at_mm = [5.0, 0.0, 0.0]"), ["task 'hole'", "outside the study grid"]),
    (('label = "substrate"', "at_mm = [0.0, 0.0, 0.1]"), ["task 'hole'", "outside the phantom"]),
    (('label = "substrate"', 'label = "bracket"'), ["label='bracket'", "substrate"]),
    (("weights = { ssim = 1.0 }", "weights = { dprime_other = 1.0 }"), ["[objective] weights", "dprime_hole"]),
])
def test_bad_tasks_get_one_line_errors(tmp_path, change, words):
    text = STUDY.replace("[planner]", "[objective]\nweights = { ssim = 1.0 }\n\n[planner]")
    assert change[0] in text
    with pytest.raises(ValueError) as err:
        _spec(tmp_path, text.replace(*change))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path))
    for word in words:
        assert word in message


def test_pellet_tasks_are_its_cracks_and_pores():
    pellet = phantoms.get("ssb_pellet", seed=3, n_pores=4)
    tasks = builtin_tasks(pellet)
    cracks = [t for t in tasks if t.kind == "crack"]
    assert [t.name for t in cracks] == [c["label"] for c in pellet.params["cracks"]]
    assert sum(t.kind == "pore" for t in tasks) == 4
    assert {t.background for t in tasks} == {next(p.material for p in pellet.parts if p.label == "pellet")}
    assert {t.signal for t in cracks} == {c["filled"] for c in pellet.params["cracks"]}
    assert builtin_tasks(phantoms.get("siemens_star")) == []
    assert np.all([len(t.parts) >= 1 for t in tasks])
