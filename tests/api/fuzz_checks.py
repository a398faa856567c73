"""Schemathesis checks for tests/api/test_fuzz.py, loaded by `st` (SCHEMATHESIS_HOOKS).

Schemathesis's own `not_a_server_error` counts every 5xx; the contract has two that are
answers, not failures: 501 NOT_SUPPORTED (an engine this instance does not run) and 503
NOT_READY. Anything else at 5xx, or any 5xx without the envelope, is a failure.
"""

from __future__ import annotations

from typing import Any

import schemathesis

_CONTRACT_5XX = {501: "NOT_SUPPORTED", 503: "NOT_READY"}


@schemathesis.check
def no_internal_error(ctx: Any, response: Any, case: Any) -> bool:
    status = response.status_code
    if status < 500:
        return True
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):  # not the envelope: a failure as well
        code = None
    if _CONTRACT_5XX.get(status) != code:
        raise AssertionError(f"{status} {code}: {response.text[:300]}")
    return True
