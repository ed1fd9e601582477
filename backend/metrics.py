"""Counters and gauges rendered as Prometheus text at ``GET /metrics``."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    """A small registry: counters with optional labels, and gauges read at render time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._help: dict[str, str] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += value

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self, gauges: dict[str, float] | None = None,
               histograms: dict[str, dict[int, int]] | None = None) -> str:
        lines: list[str] = []
        with self._lock:
            items = sorted(self._counters.items())
        seen: set[str] = set()
        for (name, labels), value in items:
            if name not in seen:
                seen.add(name)
                lines.append(f"# HELP {name} {self._help.get(name, name)}")
                lines.append(f"# TYPE {name} counter")
            label_text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {_num(value)}" if label_text
                         else f"{name} {_num(value)}")
        for name, value in sorted((gauges or {}).items()):
            lines.append(f"# HELP {name} {self._help.get(name, name)}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {_num(value)}")
        for name, buckets in sorted((histograms or {}).items()):
            lines.append(f"# HELP {name} {self._help.get(name, name)}")
            lines.append(f"# TYPE {name} histogram")
            running = 0
            total = 0
            for bound in sorted(buckets):
                running += buckets[bound]
                total += buckets[bound] * bound
                le = "+Inf" if bound >= 10**9 else str(bound)
                if le != "+Inf":
                    lines.append(f'{name}_bucket{{le="{le}"}} {running}')
            lines.append(f'{name}_bucket{{le="+Inf"}} {running}')
            lines.append(f"{name}_count {running}")
        return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    """Exact: ``%g`` would print a byte counter of 1,234,567,890 as ``1.23457e+09``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
