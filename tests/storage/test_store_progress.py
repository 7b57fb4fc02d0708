"""Progress: rate and ETA arithmetic, throttling, and the plain log reporter."""

from __future__ import annotations

import io

from modelpress.storage import PlainReporter, ProgressEvent, default_reporter
from modelpress.storage.progress import ProgressTracker, describe, format_bytes, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_ignore_skipped_bytes() -> None:
    clock = FakeClock()
    events: list[ProgressEvent] = []
    tracker = ProgressTracker(
        "download", "s3://b/x/", 1000, events.append, min_interval=0, clock=clock
    )
    tracker.skip(400)  # already on disk: done, but not "transferred"
    clock.now += 2
    tracker.advance(200)
    event = events[-1]
    assert event.done_bytes == 600
    assert event.rate == 100.0
    assert event.eta_seconds == 4.0
    tracker.advance(400)
    tracker.finish()
    assert events[-1].finished and events[-1].done_bytes == 1000 and events[-1].eta_seconds == 0


def test_events_are_throttled_but_finish_is_always_reported() -> None:
    clock = FakeClock()
    events: list[ProgressEvent] = []
    tracker = ProgressTracker("upload", "u", 100, events.append, min_interval=1.0, clock=clock)
    for _ in range(50):
        tracker.advance(1)
    assert len(events) == 1
    clock.now += 1.5
    tracker.advance(1)
    tracker.finish()
    assert len(events) == 3 and events[-1].finished


def test_plain_reporter_prints_bytes_rate_and_eta() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    reporter = PlainReporter(stream, interval=10, clock=clock)
    event = ProgressEvent(
        "download", "s3://b/a/", "w.safetensors", 512 * 1024**2, 1024**3, 64 * 1024**2, 8.0, False
    )
    reporter(event)
    reporter(event)  # within the interval: silent
    clock.now += 11
    reporter(
        ProgressEvent("download", "s3://b/a/", None, 1024**3, 1024**3, 64 * 1024**2, 0.0, True)
    )
    lines = stream.getvalue().splitlines()
    assert lines == [
        "download s3://b/a/: 512.00 MiB / 1.00 GiB (50%), 64.00 MiB/s, ETA 8s [w.safetensors]",
        "download s3://b/a/: 1.00 GiB / 1.00 GiB (100%), 64.00 MiB/s, done",
    ]


def test_formatting_and_default_reporter_choice() -> None:
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_duration(None) == "?"
    assert format_duration(3725) == "1h02m"
    assert format_duration(185) == "3m05s"
    assert isinstance(default_reporter(io.StringIO()), PlainReporter)
    assert "ETA ?" in describe(ProgressEvent("upload", "t", None, 0, 10, 0.0, None, False))


def test_rich_reporter_draws_our_rate_and_eta() -> None:
    from modelpress.storage import RichReporter

    stream = io.StringIO()
    reporter = RichReporter(stream)
    reporter(
        ProgressEvent("upload", "s3://b/a/", "w", 256 * 1024**2, 1024**3, 128 * 1024**2, 6.0, False)
    )
    reporter(ProgressEvent("upload", "s3://b/a/", None, 1024**3, 1024**3, 128 * 1024**2, 0.0, True))
    output = stream.getvalue()
    assert "upload s3://b/a/" in output and "128.00 MiB/s" in output
