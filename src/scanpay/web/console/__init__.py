"""The operator console under ``/console`` (issue 12; docs/console.md).

:func:`install` builds the console's state and adds its routes and static files to the
merchant service; nothing happens at import time. Routes: :mod:`.routes` (pages) and
:mod:`.actions` (POSTs); sessions, CSRF and sign-in in :mod:`.auth`; languages in
:mod:`.i18n`; extension points for later parts in :mod:`.state`.
"""
