"""allocator: glibc's thresholds raised once, and left alone when asked to."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from insnet_core.allocator import tune_allocator

REPO = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _tuned_in_fresh_process(**env):
    code = "from insnet_core.allocator import tune_allocator; print(tune_allocator())"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("INSNET_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_",
                          "MALLOC_TRIM_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_same_answer_every_call():
    assert tune_allocator() is tune_allocator()


@pytest.mark.skipif(not GLIBC, reason="the thresholds exist in glibc only")
def test_glibc_thresholds_are_raised():
    assert _tuned_in_fresh_process() == "True"


def test_turned_off_by_the_environment():
    assert _tuned_in_fresh_process(INSNET_MALLOC_TUNING="0") == "False"


def test_the_users_own_malloc_settings_win():
    assert _tuned_in_fresh_process(MALLOC_TRIM_THRESHOLD_="1000000") == "False"
