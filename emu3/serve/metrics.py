"""Server metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters and a latency histogram per route are kept here; the queue depth, batch size and token
counts are read from the scheduler at scrape time. Tokens per second is the rate over the last
`window_s` seconds of scrapes and steps.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict, deque

from emu3.generate.scheduler import SchedulerStats

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, window_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = defaultdict(int)
        self._latency: dict[str, list[int]] = {}  # per route: counts per bucket (+Inf last)
        self._latency_sum: dict[str, float] = defaultdict(float)
        self._cancelled = 0
        self._samples: deque[tuple[float, int]] = deque()  # (time, tokens generated)
        self.window_s = window_s

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, status)] += 1
            counts = self._latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._latency_sum[route] += seconds

    def cancelled(self) -> None:
        with self._lock:
            self._cancelled += 1

    def sample_tokens(self, tokens_generated: int) -> None:
        """Record the scheduler's token count (the worker calls this after each step)."""
        now = time.monotonic()
        with self._lock:
            self._samples.append((now, tokens_generated))
            while len(self._samples) > 2 and now - self._samples[1][0] > self.window_s:
                self._samples.popleft()

    def tokens_per_second(self, tokens_generated: int) -> float:
        """Tokens per second over the last `window_s` seconds (0 when idle that long)."""
        self.sample_tokens(tokens_generated)
        with self._lock:
            (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def render(self, stats: SchedulerStats) -> str:
        rate = self.tokens_per_second(stats.tokens_generated)
        lines = [
            *_gauge("emu3_queue_depth", "requests waiting for a batch row", stats.waiting),
            *_gauge("emu3_batch_requests", "requests in the decode batch", stats.running),
            *_gauge("emu3_batch_rows", "decode-batch rows in use (a guided image takes two)", stats.rows_in_use),
            *_gauge("emu3_batch_rows_max", "decode-batch rows available", stats.max_rows),
            *_gauge("emu3_tokens_per_second", f"generated tokens per second over the last {self.window_s:g} s", rate),
            "# HELP emu3_generated_tokens_total tokens generated since start",
            "# TYPE emu3_generated_tokens_total counter",
            f"emu3_generated_tokens_total {stats.tokens_generated}",
            "# HELP emu3_decode_steps_total decode steps since start",
            "# TYPE emu3_decode_steps_total counter",
            f"emu3_decode_steps_total {stats.steps}",
        ]
        with self._lock:
            lines += [
                "# HELP emu3_requests_cancelled_total requests cancelled because the client went away",
                "# TYPE emu3_requests_cancelled_total counter",
                f"emu3_requests_cancelled_total {self._cancelled}",
                "# HELP emu3_requests_total HTTP requests answered, by route and status",
                "# TYPE emu3_requests_total counter",
            ]
            for (route, status), n in sorted(self._requests.items()):
                lines.append(f'emu3_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += [
                "# HELP emu3_request_latency_seconds time from request to the end of the response",
                "# TYPE emu3_request_latency_seconds histogram",
            ]
            for route, counts in sorted(self._latency.items()):
                cumulative = 0
                for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                    cumulative += n
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    lines.append(f'emu3_request_latency_seconds_bucket{{route="{route}",le="{le}"}} {cumulative}')
                lines.append(f'emu3_request_latency_seconds_sum{{route="{route}"}} {self._latency_sum[route]:.6f}')
                lines.append(f'emu3_request_latency_seconds_count{{route="{route}"}} {cumulative}')
        return "\n".join(lines) + "\n"


def _gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
