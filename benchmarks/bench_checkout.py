"""What a shopper waits for on the checkout page, measured in headless Chromium.

Starts ``scanpay demo`` (its own process, loopback ports, a fresh data folder), then for each of
``--payments`` orders (default 60): opens the checkout page, waits for its status stream, pays
through the simulator's ``POST /sim/pay`` and measures from the moment that answer arrives here
to the moment the page's DOM shows "paid" (a MutationObserver notes
``performance.timeOrigin + performance.now()``; both clocks are this machine's). A negative
figure would mean the page turned before the answer reached the caller (the notification can
overtake it). Also: first paint and first contentful paint of the checkout page, bytes
transferred (compressed) for the page and its files, and the page's compressed size without the
inline QR code.

Run: ``.venv/bin/python benchmarks/bench_checkout.py`` (about a minute; ``--payments N``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

WATCH_PAID = """() => {
  const status = document.getElementById('order-status');
  window.__paidAt = null;
  new MutationObserver(() => {
    if (window.__paidAt === null && status.getAttribute('data-status') === 'paid') {
      window.__paidAt = performance.timeOrigin + performance.now();
    }
  }).observe(status, {attributes: true, attributeFilter: ['data-status']});
}"""
PAINTS = """() => Object.fromEntries(performance.getEntriesByType('paint')
  .map((e) => [e.name, e.startTime]))"""
BYTES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const files = performance.getEntriesByType('resource')
    .filter((e) => !e.name.includes('/api/') && !e.name.includes('/checkout/'));
  return {page: nav.transferSize, page_body: nav.encodedBodySize,
          files: files.reduce((n, e) => n + e.transferSize, 0),
          names: files.map((e) => e.name.split('/').pop())};
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def start_demo(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port, sim_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scanpay.cli.main", "demo", "--port", str(port),
         "--simulator-port", str(sim_port), "--data-dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    shop, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(shop + "/healthz", timeout=1).status_code == 200:
                return process, shop, sim
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("scanpay demo did not start")


def one_payment(page: Page, http: httpx.Client, shop: str, sim: str, key: str) -> float:
    created = http.post(
        shop + "/api/orders",
        json={"amount": 1, "description": "bench"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    page.goto(f"{shop}/checkout/{created['id']}")
    page.wait_for_selector("#checkout[data-connection='stream']")
    page.evaluate(WATCH_PAID)
    answer = http.post(sim + "/sim/pay", json={"code_url": created["code_url"]})
    answered = time.time() * 1000
    assert answer.status_code == 200, answer.text
    page.wait_for_function("() => window.__paidAt !== null", timeout=15_000)
    paid_at: float = page.evaluate("window.__paidAt")
    return paid_at - answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=60)
    args = parser.parse_args()
    executable = os.environ.get("SCANPAY_CHROMIUM") or shutil.which("chromium")
    with tempfile.TemporaryDirectory() as folder:
        process, shop, sim = start_demo(Path(folder))
        key = (Path(folder) / "shop_api_key").read_text().strip()
        try:
            with sync_playwright() as playwright, httpx.Client(timeout=10) as http:
                browser = playwright.chromium.launch(
                    executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
                one_payment(page, http, shop, sim, key)  # warm-up, not counted
                latencies = [one_payment(page, http, shop, sim, key) for _ in range(args.payments)]

                # a cold load of a pending checkout: paints and bytes
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                cold = context.new_page()
                created = http.post(
                    shop + "/api/orders",
                    json={"amount": 1, "description": "bench"},
                    headers={"Authorization": f"Bearer {key}"},
                ).json()
                cold.goto(f"{shop}/checkout/{created['id']}", wait_until="load")
                cold.wait_for_timeout(300)
                paints: dict[str, float] = cold.evaluate(PAINTS)
                sizes: dict[str, Any] = cold.evaluate(BYTES)
                html = http.get(
                    f"{shop}/checkout/{created['id']}", headers={"Accept-Language": "zh-CN"}
                ).text
                without_qr = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=10)

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"payments: {len(latencies)} (one page per order, stream connected before paying)")
    print("POST /sim/pay answer -> DOM paid, ms: "
          f"p50 {percentile(latencies, 50):.1f}  p95 {percentile(latencies, 95):.1f}  "
          f"p99 {percentile(latencies, 99):.1f}  max {max(latencies):.1f}  "
          f"mean {statistics.mean(latencies):.1f}")  # fmt: skip
    print(f"checkout first paint {paints.get('first-paint', 0):.0f} ms, "
          f"first contentful paint {paints.get('first-contentful-paint', 0):.0f} ms")  # fmt: skip
    print(f"transferred: page {sizes['page']} B (body {sizes['page_body']} B compressed), "
          f"files {sizes['files']} B ({', '.join(sizes['names'])}); "
          f"total {sizes['page'] + sizes['files']} B")  # fmt: skip
    print(f"page without the QR: {len(without_qr.encode())} B, "
          f"{len(gzip.compress(without_qr.encode(), 9))} B gzip")  # fmt: skip


if __name__ == "__main__":
    main()
