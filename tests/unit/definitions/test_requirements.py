"""What a Python step needs installed, read from its code (no network here)."""
from __future__ import annotations

import pytest

from orchestrator.definitions.requirements import requirements_of
from orchestrator.errors import DependencyError


def test_imports_become_distributions_without_the_standard_library_or_millrace() -> None:
    code = ("import json, os.path\nimport yaml\nfrom PIL import Image\nimport sklearn.linear_model\n"
            "from requests import get\nfrom . import sibling\nimport orchestrator.flow\n"
            "def main():\n    import numpy  # inside a function: not a top-level import\n")
    assert requirements_of(code) == ["PyYAML", "pillow", "requests", "scikit-learn"]


def test_a_pep723_block_decides_and_keeps_its_pins() -> None:
    code = ('# /// script\n# requires-python = ">=3.11"\n# dependencies = [\n#   "six==1.16.0",\n'
            '#   "humanize>=4",\n# ]\n# ///\nimport yaml\ndef main():\n    pass\n')
    assert requirements_of(code) == ["humanize>=4", "six==1.16.0"]


def test_a_broken_pep723_block_is_a_clear_error() -> None:
    with pytest.raises(DependencyError, match="not valid TOML"):
        requirements_of('# /// script\n# dependencies = ["six"\n# ///\n')
