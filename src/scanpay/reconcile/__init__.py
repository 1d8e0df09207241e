"""Daily reconciliation against WeChat Pay's trade bill: the bill source (v2 / v3 clients),
the run that matches and stores a day (:mod:`.service`) and the daily schedule (:mod:`.runner`).
The matching itself is pure, in :mod:`scanpay.domain.reconciliation`."""
