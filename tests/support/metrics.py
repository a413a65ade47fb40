"""Reading a real ``/metrics`` endpoint back (not a test module): scrape it over HTTP and parse
the exposition format with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: every sample by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` whose labels include ``labels``; None if absent."""
        found = [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples: {found}"
        return found[0].value if found else None

    def values(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (s.labels, s.value)
            for s in self.samples
            if s.name == name and labels.items() <= s.labels.items()
        ]

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample of ``name`` matching ``labels`` (0 when none)."""
        return sum(v for _, v in self.values(name, **labels))


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(resp.read().decode())


def scrape_port(port: int, host: str = "127.0.0.1") -> Scrape:
    return scrape(f"http://{host}:{port}/metrics")
