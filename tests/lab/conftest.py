"""Lab tests run the real SDK clients against one lab per session (cotenant.lab.testing)."""

from __future__ import annotations

import pytest

from cotenant.lab.testing import RunningLab, lab, lab_env  # noqa: F401 - pytest fixtures
from tests.lab.helpers import SkrKey, make_skr_key


@pytest.fixture
def skr_key(lab_env: RunningLab) -> SkrKey:  # noqa: F811 - fixture from cotenant.lab.testing
    return make_skr_key(lab_env)
