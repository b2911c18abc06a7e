"""Offline camera replay: a recording's frames, at their own capture times, through the camera stage.

No broker and no clock: frames go in capture-time order, in batches, through the same ``CameraStage``
and incident tracker as ``gridwatch run``; the tracker is advanced to each batch's last capture time, so
a static-scene alarm with no confirmed frames resolves as it would in service. Deterministic: the same
recording and config give the same events. A frame that does not decode is listed and skipped.

Recorded verdicts (``engine.ingest.verdict_file``) apply at their times, before the first frame captured at
or after them, to the camera's latest alarm frames, as an operator's verdict on the page would: the camera
learns (``CameraStage.verdict``) and its later frames are scored with what it learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detectors.vision.base import Frame
from engine.config.models import CameraConfig, EngineConfig
from engine.core.findings import Finding
from engine.flow.camera_learning import Verdict, VerdictError
from engine.flow.cameras import CameraStage
from engine.ingest.camera_recording import RecordedFrame, frame_bytes
from engine.ingest.frames import FrameError
from engine.ingest.thermal_units import decode_camera_frame
from engine.ingest.verdict_file import RecordedVerdict
from engine.runners.assembly import build_pipeline


@dataclass
class CameraReplay:
    """What a replay produced: incident events, findings and the frames that could not be used."""

    events: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    undecodable: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    frames: int = 0
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # what each recorded verdict did


def replay_cameras(
    cfg: EngineConfig,
    frames: list[RecordedFrame],
    thermal: bool = False,
    batch: int = 8,
    on_batch: Callable[[int], None] | None = None,
    verdicts: list[RecordedVerdict] | None = None,
    stage: CameraStage | None = None,
) -> CameraReplay:
    """Replay ``frames`` (from ``recorded_frames``) through the config's camera detectors and incidents.

    Thermal cameras are those the config lists as thermal, or every camera with ``thermal``; each camera's
    calibration (``gain``, ``offset``) comes from the config. ``verdicts`` apply at their times (a verdict
    refused, or one on a camera with no alarm yet, is listed in ``verdicts`` with the reason). ``stage``: one
    already built (its learned heads are kept: ``gridwatch score --heads``).
    """
    stage = stage or CameraStage(cfg)
    pending = sorted(verdicts or [], key=lambda v: v.ts)
    pipeline = build_pipeline(cfg)
    configured = {(c.site, c.id): c for c in cfg.cameras.devices}
    thermal_keys = {(f.site, f.camera) for f in frames} if thermal else set(stage.thermal)
    out = CameraReplay()
    for chunk in _chunks(frames, batch, [v.ts for v in pending]):
        while pending and pending[0].ts <= chunk[0].ts:
            out.verdicts.append(_apply(stage, pending.pop(0)))
        decoded: list[Frame] = []
        for f, data in frame_bytes(chunk):
            kind = "thermal" if (f.site, f.camera) in thermal_keys else "visible"
            cam = configured.get((f.site, f.camera)) or CameraConfig(site=f.site, id=f.camera, kind=kind)
            if cam.kind != kind:
                cam = cam.model_copy(update={"kind": kind})
            try:  # as the engine's intake decodes it: thermal in the units the camera declares
                if data is None:
                    raise FrameError("not_an_image", "video frame could not be read")
                image, units = decode_camera_frame(data, cam)
            except FrameError as exc:
                out.undecodable.append((f.source, str(exc)))
                continue
            decoded.append(Frame(f.site, f.camera, f.ts, image, source=f.source, units=units))
        found = stage.step(decoded, thermal_keys)
        out.findings.extend(found)
        out.events.extend(pipeline.observe(found))
        out.events.extend(pipeline.advance_to(chunk[-1].ts))
        out.frames += len(decoded)
        if on_batch is not None:
            on_batch(len(chunk))
    out.verdicts.extend(_apply(stage, v) for v in pending)  # after the last frame: learned, nothing left to score
    return out


def _chunks(frames: list[RecordedFrame], size: int, cuts: list[float]) -> list[list[RecordedFrame]]:
    """``frames`` in batches of at most ``size``, a new batch at each verdict time in ``cuts``."""
    out: list[list[RecordedFrame]] = []
    cut = 0
    for f in frames:
        crossed = False
        while cut < len(cuts) and cuts[cut] <= f.ts:
            cut, crossed = cut + 1, True
        if not out or len(out[-1]) >= size or crossed:
            out.append([])
        out[-1].append(f)
    return out


def _apply(stage: CameraStage, rv: RecordedVerdict) -> dict[str, Any]:
    v = Verdict(rv.site, rv.camera, rv.verdict, rv.ts, "replay", rv.region)  # type: ignore[arg-type]
    try:
        return stage.verdict(v)
    except VerdictError as exc:
        return {"camera": v.key, "at": rv.ts, "verdict": rv.verdict, "learned": False, "reason": str(exc)}
