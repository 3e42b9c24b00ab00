"""Python environments kept on a worker, pruned when unused."""
from __future__ import annotations

import os
import time

from orchestrator.executors.environments import prune


def test_prune_removes_environments_unused_for_n_days(tmp_path) -> None:
    old, fresh = tmp_path / "envs" / "old", tmp_path / "envs" / "fresh"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / ".millrace-complete").write_text("{}")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old / ".millrace-complete", (ten_days_ago, ten_days_ago))
    assert prune(tmp_path, 7) == ["old"]
    assert fresh.exists() and not old.exists()
