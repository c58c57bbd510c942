import csv
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    host: str
    latency_ms: float
    status: int


def load(path: Path) -> list[Sample]:
    """Read a CSV of request samples, skipping malformed rows."""
    out: list[Sample] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                out.append(Sample(row["host"], float(row["latency_ms"]), int(row["status"])))
            except (KeyError, ValueError):
                continue
    return out


def summarize(samples: list[Sample]) -> dict[str, dict[str, float]]:
    by_host: dict[str, list[float]] = {}
    for s in samples:
        if 200 <= s.status < 400:
            by_host.setdefault(s.host, []).append(s.latency_ms)
    return {
        host: {
            "n": len(xs),
            "p50": statistics.median(xs),
            "p99": sorted(xs)[max(0, int(len(xs) * 0.99) - 1)],
            "mean": statistics.fmean(xs),
        }
        for host, xs in by_host.items()
    }


if __name__ == "__main__":
    import sys
    for host, stats in sorted(summarize(load(Path(sys.argv[1]))).items()):
        print(f"{host:<24} n={stats['n']:>6} p50={stats['p50']:.1f} p99={stats['p99']:.1f}")
