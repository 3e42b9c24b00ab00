"""A fresh machine runs a flow with nothing installed: SQLite and a file-system broker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_millrace_run_local_runs_the_example_with_no_services(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_")}
    env["MILLRACE_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(ROOT / "examples" / "hello.yaml"),
         "--local", "--json", "--input", "name=ada", "--timeout", "120"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded"
    assert summary["result"] == {"greeting": "hello ada", "letters": 23, "verdict": "long"}
    assert (tmp_path / "home" / "millrace.db").exists()
    paths = [s["path"] for s in summary["steps"]]
    assert paths[:2] == ["greet", "lengths"] and "lengths[3].measure" in paths
    # local mode keeps no audit chain: verifying it says so and how to check a real one
    verify = subprocess.run([sys.executable, "-m", "orchestrator.cli", "audit", "verify"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 2 and "Traceback" not in verify.stderr
    assert "local mode (SQLite) has none to verify" in verify.stderr and "MILLRACE_DATABASE_URL" in verify.stderr
