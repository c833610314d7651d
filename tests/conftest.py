"""Shared fixtures: a tiny rendering of the default scene, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Fixtures that train a model before their tests run (tens of seconds): the tests using them are ``slow``.
TRAINING_FIXTURES = {"boxes", "boxes_diffusion", "orange_prior"}


def pytest_collection_modifyitems(items: list) -> None:
    """Mark the tests that use a :data:`TRAINING_FIXTURES` fixture as ``slow``."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_scene_dir(tmp_path_factory) -> Path:
    """The default scene at 32x32 with 16 train, 2 val and 4 test views (Blender layout)."""
    from render3d.datasets.synthetic import generate_scene

    return generate_scene(tmp_path_factory.mktemp("scenes") / "tiny", resolution=32, n_train=16, n_val=2, n_test=4)


@pytest.fixture(scope="session")
def tiny_scene(tiny_scene_dir):
    from render3d.datasets import load_scene

    return load_scene(tiny_scene_dir)


@pytest.fixture(scope="session")
def splat_run(tmp_path_factory, tiny_scene) -> Path:
    """A 10-step splat run folder (torch backend), shared by the safety tests."""
    from safety_helpers import make_splat_run

    return make_splat_run(tmp_path_factory, tiny_scene)


@pytest.fixture(scope="session")
def zoo_run(tmp_path_factory) -> Path:
    """A 2-step ``ae`` zoo run folder, shared by the safety tests."""
    from safety_helpers import make_zoo_run

    return make_zoo_run(tmp_path_factory)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module whose in-process work is tiny (faster, and much faster on a loaded machine);
    modules ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from safety_helpers import one_torch_thread

    with one_torch_thread():
        yield
