"""Every Envoy config we ship loads in the real Envoy with the built filters."""
from __future__ import annotations

import pytest

from harness import paths, validate


@pytest.mark.parametrize("path", validate.configs(), ids=lambda p: str(p.relative_to(paths.REPO)))
def test_shipped_config_validates(path):
    ok, out = validate.validate(path)
    assert ok, out


def test_generated_demo_config_validates(tmp_path):
    ok, out = validate.validate(validate.demo_file(tmp_path))
    assert ok, out
