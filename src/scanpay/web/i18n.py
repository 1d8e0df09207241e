"""Languages of the pages people read: Simplified Chinese (``zh-CN``, first) and English (``en``).

The pieces, usable by any part of scanpay that renders HTML (the cashier pages, the
simulator's phone page, later the operator console):

- **Locale choice** — :func:`negotiate` (pure) and :func:`request_locale` (from a Starlette
  request). Order: a valid ``?lang=zh-CN|en`` query parameter, then the ``scanpay_lang``
  cookie, then ``Accept-Language`` (highest ``q`` first; any ``zh*`` means ``zh-CN``, any
  ``en*`` means ``en``), then the configured default (``SCANPAY_DEFAULT_LOCALE``, ``zh-CN``
  unless set). A choice made by ``?lang=`` is remembered with :func:`remember` (a cookie,
  one year, ``SameSite=Lax``). Unknown values are ignored, never an error.
- **Catalogues** — gettext ``.po`` files in ``locales/<ll_CC>/LC_MESSAGES/<domain>.po`` next to
  this module, read with Babel at start-up and compiled in memory (no ``.mo`` build step, no
  binary file in the repository). English is the source language: its ``msgid`` texts are
  shown as they are. :func:`translations` caches one catalogue per (domain, locale); for
  texts made in Python, ``translations(domain, locale).gettext("...")``.
- **Jinja** — :func:`make_environments` builds one Jinja environment per locale with
  ``jinja2.ext.i18n`` installed (new-style gettext: ``{{ _("Paid %(n)s", n=x) }}``,
  autoescaped) and the filters ``money`` (fen -> "¥12.50" / "CN¥12.50", Babel's currency
  format for the locale) and the globals ``locale`` and ``html_lang``.

Adopting it for another set of pages (say, domain ``console``)::

    from scanpay.web import i18n

    envs = i18n.make_environments(FileSystemLoader(MY_TEMPLATES), domain="console")
    choice = i18n.request_locale(request, default=settings.default_locale)
    html = envs[choice.locale].get_template("page.html").render(...)
    response = HTMLResponse(html)
    i18n.remember(response, choice)

Catalogue upkeep with Babel's own tools (``babel.cfg`` sits in ``locales/``)::

    pybabel extract -F src/scanpay/web/locales/babel.cfg -o /tmp/cashier.pot src/scanpay/web
    pybabel update -i /tmp/cashier.pot -d src/scanpay/web/locales -D cashier -l zh_CN

``tests/web/test_i18n.py`` fails when a template text has no zh-CN translation.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from jinja2 import BaseLoader, Environment, select_autoescape
from starlette.requests import Request
from starlette.responses import Response

LOCALES: Final = ("zh-CN", "en")
DEFAULT_LOCALE: Final = "zh-CN"
COOKIE: Final = "scanpay_lang"
COOKIE_MAX_AGE: Final = 365 * 24 * 3600
LOCALES_DIR: Final = Path(__file__).resolve().parent / "locales"
SOURCE_LOCALE: Final = "en"  # the msgid language
_BABEL_NAMES: Final = {"zh-CN": "zh_CN", "en": "en"}


def normalize(tag: str | None) -> str | None:
    """A supported locale for a language tag (``zh``, ``zh-TW``, ``zh_CN`` -> ``zh-CN``;
    ``en-GB`` -> ``en``), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    return None


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an ``Accept-Language`` header, best first (``q=0`` dropped)."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:32]):
        pieces = part.strip().split(";")
        tag = pieces[0].strip()
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _q, _i, tag in sorted(ranked)]


def negotiate(
    *,
    query: str | None = None,
    cookie: str | None = None,
    accept_language: str | None = None,
    default: str = DEFAULT_LOCALE,
) -> str:
    """The page language: ``?lang=``, then the cookie, then ``Accept-Language``, then
    ``default`` (itself checked: an unsupported default means zh-CN)."""
    for candidate in (query, cookie):
        if candidate in LOCALES:
            return candidate
    for tag in parse_accept_language(accept_language):
        found = normalize(tag)
        if found is not None:
            return found
    return default if default in LOCALES else DEFAULT_LOCALE


@dataclass(frozen=True)
class Choice:
    """The locale for one request; ``remember`` when ``?lang=`` asked for a new one."""

    locale: str
    remember: bool = False


def request_locale(request: Request, default: str = DEFAULT_LOCALE) -> Choice:
    query = request.query_params.get("lang")
    cookie = request.cookies.get(COOKIE)
    locale = negotiate(
        query=query,
        cookie=cookie,
        accept_language=request.headers.get("accept-language"),
        default=default,
    )
    return Choice(locale, remember=query in LOCALES and query != cookie)


def remember(response: Response, choice: Choice) -> None:
    """Keep a ``?lang=`` choice for later pages (cookie ``scanpay_lang``)."""
    if choice.remember:
        response.set_cookie(
            COOKIE, choice.locale, max_age=COOKIE_MAX_AGE, samesite="lax", httponly=True
        )


@cache
def translations(domain: str, locale: str) -> gettext.NullTranslations:
    """The catalogue of ``domain`` for ``locale`` (read from its .po file once). The source
    language, or a locale without a catalogue, shows the msgids."""
    if locale == SOURCE_LOCALE:
        return gettext.NullTranslations()
    po = LOCALES_DIR / _BABEL_NAMES[locale] / "LC_MESSAGES" / f"{domain}.po"
    if not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=_BABEL_NAMES[locale], domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def money(fen: int, locale: str) -> str:
    """An amount in fen as the locale writes yuan: ``¥12.50`` (zh-CN), ``CN¥12.50`` (en)."""
    value = Decimal(fen).scaleb(-2)
    text: str = format_currency(value, "CNY", locale=_BABEL_NAMES[locale])
    return text


def make_environment(loader: BaseLoader, *, domain: str, locale: str) -> Environment:
    """A Jinja environment rendering in ``locale`` with ``domain``'s catalogue installed."""
    env = Environment(
        loader=loader,
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(domain, locale), newstyle=True)  # type: ignore[attr-defined]
    env.globals["locale"] = locale
    env.globals["html_lang"] = locale
    env.globals["other_locales"] = [other for other in LOCALES if other != locale]
    env.filters["money"] = lambda fen: money(int(fen), locale)
    return env


def make_environments(loader: BaseLoader, *, domain: str) -> Mapping[str, Environment]:
    """``{locale: environment}`` for every supported locale."""
    return {locale: make_environment(loader, domain=domain, locale=locale) for locale in LOCALES}
