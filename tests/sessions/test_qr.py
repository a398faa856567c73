"""QR pictures: made once per code, whichever form is asked for, as segno makes them."""

from __future__ import annotations

import segno

from openwa.sessions.qr import qr_data_url, qr_png

CODE = "2@Zq9Xc3b1,kP0sJ5lZyJQ0eq,AbCdEfGh,IjKlMnOp=="


def test_the_picture_is_segnos_and_made_once_per_code() -> None:
    qr_png.cache_clear()
    own = segno.make(CODE, error="l").png_data_uri(scale=6, border=2)
    assert qr_data_url(CODE) == own  # the data URL carries the same PNG
    assert qr_png(CODE).startswith(b"\x89PNG")
    for _ in range(5):
        qr_data_url(CODE)
        qr_png(CODE)
    assert qr_png.cache_info().misses == 1
    qr_png("another code")
    assert qr_png.cache_info().misses == 2
