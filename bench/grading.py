"""Grading model benchmark: model throughput by batch size, and the dynamic batcher against
batch-1 serving under N simulated 2 fps streams.

    python bench/grading.py [--model PATH] [--provider auto|cpu|cuda|tensorrt] [--json]
    python -m bench.grading --streams 8

Uses inference/models/grader-v1.onnx when present, else a generated stand-in (a small conv net
at 224x224 with random weights: same contract, similar shape of cost, not the real figures) and
says which. Prints figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if not __package__:
    # Run by path (python bench/grading.py): import from the repository root, as
    # ``python -m bench.grading`` does, never from bench/ itself (a bench script named like a
    # package of the project would be imported in its place).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from inference import (  # noqa: E402
    DynamicBatcher,
    FrameDropped,
    Grader,
    InferenceError,
    to_model_input,
)

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "inference" / "models" / "grader-v1.onnx"
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def stand_in_model(path: Path, size: int = 224) -> Path:
    """A contract-conforming conv net with random weights (3 strided convs, pool, heads)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [numpy_helper.from_array(np.array(1 / 255, np.float32), "scale")], []
    nodes.append(helper.make_node("Mul", ["images", "scale"], ["x0"]))
    channels = [3, 32, 96, 192, 256]  # ~0.3 GMAC at 224x224, near EfficientNet-Lite0
    for i in range(4):
        w = rng.normal(0, 0.1, (channels[i + 1], channels[i], 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(channels[i + 1], np.float32), f"b{i}"))
        nodes.append(
            helper.make_node(
                "Conv", [f"x{i}", f"w{i}", f"b{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"x{i + 1}"]))
    nodes += [
        helper.make_node("GlobalAveragePool", ["x4"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
    ]
    for name, k, act in (("grade_probs", 4, "Softmax"), ("damage_probs", 5, "Sigmoid")):
        inits.append(
            numpy_helper.from_array(rng.normal(0, 0.1, (256, k)).astype(np.float32), f"W{name}")
        )
        nodes.append(helper.make_node("MatMul", ["f", f"W{name}"], [f"l{name}"]))
        nodes.append(
            helper.make_node(
                act, [f"l{name}"], [name], **({"axis": -1} if act == "Softmax" else {})
            )
        )
    graph = helper.make_graph(
        nodes,
        "stand_in",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("grade_probs", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("damage_probs", TensorProto.FLOAT, ["N", 5]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {
            "inspect.contract": "1",
            "inspect.grade_labels": "A,B,C,D",
            "inspect.damage_labels": "scratch,dent,crack,stain,torn_packaging",
            "inspect.input_size": f"{size}x{size}",
            "inspect.normalisation": "x/255",
            "inspect.version": "bench-stand-in",
            "inspect.trained_on": "nothing (random weights)",
        },
    )
    onnx.save(model, str(path))
    return path


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_batches(grader: Grader, min_seconds: float) -> list[dict[str, Any]]:
    h, w = grader.info.input_size
    rows = []
    for n in BATCH_SIZES:
        batch = np.random.default_rng(n).uniform(0, 255, (n, 3, h, w)).astype(np.float32)
        grader.predict(batch)
        times: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < min_seconds or len(times) < 5:
            t0 = time.perf_counter()
            grader.predict(batch)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "batch": n,
                "images_per_s": n * len(times) / sum(times),
                "p50_ms": pct(times, 0.5) * 1000,
                "p95_ms": pct(times, 0.95) * 1000,
            }
        )
    return rows


async def simulate(
    grader: Grader, streams: int, fps: float, seconds: float, dynamic: bool, frames: list[Any]
) -> dict[str, Any]:
    batcher = DynamicBatcher(
        grader,
        max_batch=32 if dynamic else 1,
        max_delay_ms=10.0 if dynamic else 0.0,
        queue_size=max(64, streams),
    )
    batcher.start()
    latencies: list[float] = []
    sizes: list[int] = []
    drops = 0
    offered = 0

    async def one(index: int) -> None:
        nonlocal drops, offered
        loop = asyncio.get_running_loop()
        next_at = loop.time() + random.Random(index).uniform(0, 1 / fps)
        end = loop.time() + seconds
        pending: set[asyncio.Task[None]] = set()

        async def grade(image: Any) -> None:
            nonlocal drops
            t0 = time.perf_counter()
            try:
                result = await batcher.submit(f"s{index}", image)
            except FrameDropped:
                drops += 1
                return
            latencies.append(time.perf_counter() - t0)
            sizes.append(result.batch_size)

        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            offered += 1
            task = asyncio.create_task(grade(frames[(index + offered) % len(frames)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1 / fps
        if pending:
            await asyncio.gather(*pending)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(streams)))
    except InferenceError as exc:
        print("error:", exc, file=sys.stderr)
    elapsed = time.perf_counter() - started
    await batcher.aclose()
    return {
        "streams": streams,
        "mode": "dynamic" if dynamic else "batch-1",
        "offered_fps": streams * fps,
        "achieved_fps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p95_ms": pct(latencies, 0.95) * 1000,
        "drops": drops,
        "drop_share": drops / offered if offered else 0.0,
        "mean_batch": statistics.fmean(sizes) if sizes else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT picks)")
    parser.add_argument("--streams", default="8,16,32,64")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=6.0, help="per stream-count run")
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.model is not None:
        path, which = args.model, f"{args.model}"
    elif DEFAULT_MODEL.is_file():
        path, which = DEFAULT_MODEL, f"{DEFAULT_MODEL.name} (shipped model)"
    else:
        path = stand_in_model(Path(tmp.name) / "stand-in.onnx")
        which = "generated stand-in conv net (no shipped model found): figures are indicative"
    grader = Grader.load(path, providers=args.provider, intra_op_threads=args.threads)
    info = grader.info
    header = {
        "model": which,
        "version": info.version,
        "input_size": list(info.input_size),
        "provider": grader.provider,
        "cpus": os.cpu_count(),
    }
    if not args.json:
        h, w = info.input_size
        print(f"model: {which}; version {info.version}; input {h}x{w}")
        print(f"provider: {grader.provider}; cpus: {os.cpu_count()}\n")

    batches = bench_batches(grader, args.batch_seconds)
    if not args.json:
        print("model only (prepared batch):")
        print(f"{'batch':>6} {'images/s':>10} {'p50 ms':>9} {'p95 ms':>9} {'vs batch 1':>11}")
        base = batches[0]["images_per_s"]
        for row in batches:
            print(
                f"{row['batch']:>6} {row['images_per_s']:>10.1f} {row['p50_ms']:>9.2f} "
                f"{row['p95_ms']:>9.2f} {row['images_per_s'] / base:>10.2f}x"
            )

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    to_model_input(frames[:1], info.input_size)  # warm cv2
    streams_rows = []
    for count in (int(s) for s in args.streams.split(",")):
        for dynamic in (False, True):
            streams_rows.append(
                asyncio.run(simulate(grader, count, args.fps, args.seconds, dynamic, frames))
            )
    if args.json:
        print(json.dumps({**header, "batches": batches, "streams": streams_rows}, indent=2))
        return
    print(
        f"\n{args.fps:g} fps streams, 480p frames, end-to-end submit->result (preprocess included):"
    )
    print(
        f"{'streams':>7} {'mode':>8} {'offered/s':>9} {'done/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'drops':>6} {'mean batch':>10}"
    )
    for row in streams_rows:
        print(
            f"{row['streams']:>7} {row['mode']:>8} {row['offered_fps']:>9.0f} "
            f"{row['achieved_fps']:>7.1f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
            f"{row['drops']:>6} {row['mean_batch']:>10.1f}"
        )
    print("\ndynamic vs batch-1:")
    for single, dyn in zip(streams_rows[::2], streams_rows[1::2], strict=True):
        gain = dyn["achieved_fps"] / single["achieved_fps"]
        p95 = dyn["p95_ms"] / single["p95_ms"]
        print(
            f"  {single['streams']:>3} streams: throughput x{gain:.2f}, p95 latency x{p95:.2f}, "
            f"drops {single['drops']} -> {dyn['drops']}"
        )


if __name__ == "__main__":
    main()
