"""The ordering the durability promise rests on: a call's CDR is handed to the sink (the spool)
before the switch's 200 for the BYE that ends the call leaves, whichever side hangs up."""

from __future__ import annotations

import pytest

from cdr.schema import CdrRecord
from tests.core.test_b2bua import CALLEE_IP, CALLER_IP, World


@pytest.mark.parametrize("side", ["caller", "callee"])
def test_the_cdr_is_emitted_before_the_200_for_bye(side: str) -> None:
    w = World()
    out, inc = w.connect()
    h = w.h
    who = (CALLER_IP, 5061) if side == "caller" else (CALLEE_IP, 5062)
    sent_when_emitted: list[list[bytes]] = []
    recorder = h.cdrs
    real_emit = recorder.emit

    def emit(record: CdrRecord) -> None:
        sent_when_emitted.append([s.data for s in h.net.to(*who)])
        real_emit(record)

    recorder.emit = emit  # type: ignore[method-assign]
    before = [s.data for s in h.net.to(*who)]
    dialog = out.dialog if side == "caller" else inc.dialog
    assert dialog is not None
    dialog.request("BYE")
    after = [s.data for s in h.net.to(*who)]
    (at_emit,) = sent_when_emitted
    assert at_emit == before  # nothing, in particular no 200, had gone back when the CDR was written
    new = after[len(before):]
    assert len(new) == 1 and new[0].startswith(b"SIP/2.0 200") and b" BYE\r\n" in new[0]
    assert len(recorder.records) == 1
