"""Dependencies point inward (DESIGN.md "The parts", STYLE.md 1): checked by walking imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scanpay"

# layer -> top-level modules it may import (besides the standard library)
ALLOWED: dict[str, set[str]] = {
    "wechat": {"cryptography", "scanpay.errors", "scanpay.wechat"},
    "client": {"httpx", "cryptography", "scanpay.errors", "scanpay.wechat", "scanpay.client"},
    "domain": {"scanpay.errors", "scanpay.wechat", "scanpay.domain"},
    "store": {
        "sqlalchemy",
        "alembic",
        "psycopg",  # LISTEN for status streams (scanpay.store.listen)
        "scanpay.errors",
        "scanpay.wechat",
        "scanpay.domain",
        "scanpay.store",
    },
    # webhooks (issue 11): the outbox worker, signing, endpoint safety; never the web layer
    "webhooks": {
        "httptools",  # the webhook sender parses answers with it (webhooks/sender.py)
        "sqlalchemy",
        "scanpay.config",
        "scanpay.errors",
        "scanpay.domain",
        "scanpay.store",
        "scanpay.webhooks",
    },
    "reconcile": {
        "scanpay.errors",
        "scanpay.wechat",
        "scanpay.domain",
        "scanpay.store",
        "scanpay.client",
        "scanpay.reconcile",
    },
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _allowed(name: str, allowed: set[str]) -> bool:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return True
    return any(name == a or name.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    files = sorted((SRC / layer).rglob("*.py"))
    assert files, f"layer {layer} has no modules"
    bad = {
        f"{path.relative_to(SRC)}: {name}"
        for path in files
        for name in _imports(path)
        if not _allowed(name, ALLOWED[layer])
    }
    assert not bad, "forbidden imports:\n" + "\n".join(sorted(bad))


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import httpx\nfrom scanpay.store import x\nimport hashlib\n")
    names = _imports(module)
    assert not _allowed("httpx", ALLOWED["wechat"])
    assert not _allowed("scanpay.store", ALLOWED["domain"])
    assert _allowed("hashlib", ALLOWED["wechat"])
    assert names == {"httpx", "scanpay.store", "hashlib"}
