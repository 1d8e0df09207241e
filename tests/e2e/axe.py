"""axe-core in a Playwright page: the accessibility check every page and state passes.

axe-core comes from the npm registry, pinned by ``tests/e2e/node/package-lock.json`` and
installed by ``scripts/setup.sh --test``; a missing install fails the test rather than skipping it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Page

AXE_JS: Final = Path(__file__).resolve().parent / "node/node_modules/axe-core/axe.min.js"
BLOCKING: Final = frozenset({"serious", "critical"})


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """All of axe-core's violations on the page as it is now (WCAG 2.x A/AA and best practices)."""
    if not AXE_JS.is_file():
        raise AssertionError(f"{AXE_JS} is missing: run scripts/setup.sh --test")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated through the DevTools protocol, so the page's CSP does not block it
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        "async () => await window.axe.run(document, {resultTypes: ['violations']})"
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def assert_accessible(page: Page, where: str = "") -> None:
    """Fail with a readable list when axe-core finds a serious or critical violation."""
    bad = [v for v in axe_violations(page) if v.get("impact") in BLOCKING]
    if bad:
        lines = [
            f"{v['impact']}: {v['id']} ({v['help']}) at "
            + ", ".join(str(node["target"]) for node in v["nodes"][:5])
            for v in bad
        ]
        raise AssertionError(f"axe-core on {where or page.url}:\n" + "\n".join(lines))
