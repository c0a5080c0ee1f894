"""``inspectd train DIR`` on a folder of labelled photos, as a merchant would run it, and the
server loading the result with one setting. Needs the ``train`` extra (``make test`` has it)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import cv2
import numpy as np

from inference import inspect_model
from inference.training.generator import GRADES, random_spec, render
from server.settings import Settings
from server.wiring.grading import DEFAULT_MODEL, open_grading


def photo_folder(root: Path, per_grade: int = 6) -> Path:
    rng = np.random.default_rng(5)
    for grade in GRADES:
        folder = root / grade
        folder.mkdir(parents=True)
        for i in range(per_grade):
            image = render(random_spec(rng, grade), rng, (256, 256))
            cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


async def run(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(300):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_train_on_a_photo_folder_writes_a_model_the_server_loads(tmp_path: Path) -> None:
    photos = photo_folder(tmp_path / "photos")
    model = tmp_path / "grader-shop.onnx"

    code, output = await run("train", str(photos), "--out", str(model), "--epochs", "1")
    assert code == 0, output
    info = inspect_model(model)  # meets the contract, or this raises naming what is wrong
    assert info.grade_labels == ("A", "B", "C", "D")
    assert info.input_size == (224, 224)

    code, output = await run("eval", str(model), str(photos))
    assert code == 0, output
    assert "accuracy" in output.lower()

    stack = await open_grading(Settings(model_path=model, grading=True), metrics=None)
    try:
        assert Path(stack.grader.info.path) == model
        assert stack.grader.info.version != inspect_model(DEFAULT_MODEL).version
        assert "photos" in stack.grader.info.trained_on
    finally:
        await stack.aclose()


async def test_train_refuses_a_folder_without_grade_subfolders(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    code, output = await run("train", str(tmp_path / "photos"), "--out", str(tmp_path / "x.onnx"))
    assert code != 0
    assert "A" in output and not (tmp_path / "x.onnx").exists()
