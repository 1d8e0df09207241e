"""The console's languages: zh-CN (the default) and English, from its own gettext catalogue
domain ``console`` (``web/console/locales/<locale>/LC_MESSAGES/console.po``, Babel PO files).

Choosing the language: ``?lang=`` (which also sets the ``scanpay_lang`` cookie), then that
cookie, then ``Accept-Language`` (any ``zh*`` is zh-CN), else zh-CN. The PO files are
compiled in memory at start (no build step). The shopper pages' shared i18n can take over
later: :func:`negotiate` and :class:`Translator` are the only two things the console uses.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from starlette.requests import Request

LOCALES: Final = Path(__file__).resolve().parent / "locales"
DOMAIN: Final = "console"
COOKIE: Final = "scanpay_lang"
DEFAULT: Final = "zh-CN"
SUPPORTED: Final = ("zh-CN", "en")
_CATALOGUE_DIR: Final = {"zh-CN": "zh_CN", "en": "en"}


def _normalise(tag: str) -> str | None:
    tag = tag.strip().lower().replace("_", "-")
    if tag.startswith("zh"):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def negotiate(request: Request) -> str:
    """The language of this request (see the module docstring)."""
    asked = request.query_params.get("lang")
    if asked and (chosen := _normalise(asked)):
        return chosen
    cookie = request.cookies.get(COOKIE)
    if cookie and (chosen := _normalise(cookie)):
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(request.headers.get("accept-language", "").split(",")[:20]):
        tag, _, params = part.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        chosen = _normalise(tag)
        if chosen is not None and quality > 0:
            ranked.append((-quality, index, chosen))
    return min(ranked)[2] if ranked else DEFAULT


@dataclass(frozen=True)
class Translator:
    """``gettext`` for one language; what the templates call ``_``."""

    locale: str
    catalogue: gettext.NullTranslations

    def gettext(self, message: str) -> str:
        return self.catalogue.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.catalogue.ngettext(singular, plural, n)

    @property
    def html_lang(self) -> str:
        return self.locale


def load_translators(root: Path = LOCALES) -> Mapping[str, Translator]:
    """One translator per supported language, compiled from the PO files."""
    found: dict[str, Translator] = {}
    for locale in SUPPORTED:
        path = root / _CATALOGUE_DIR[locale] / "LC_MESSAGES" / f"{DOMAIN}.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=_CATALOGUE_DIR[locale])
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        found[locale] = Translator(locale, gettext.GNUTranslations(buffer))
    return found
