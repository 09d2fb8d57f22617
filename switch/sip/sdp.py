"""Just enough SDP (RFC 8866) to name a call's audio codecs for its CDR.

The B2BUA passes SDP through unchanged; it only reads the answer to record which codecs the
call was set up with.  This never raises: a body that is not SDP, or SDP it cannot make sense
of, names no codecs.
"""

from __future__ import annotations

# RFC 3551 section 6, table 4: static audio payload types (an rtpmap line may still rename them).
_STATIC = {0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4", 7: "LPC", 8: "PCMA", 9: "G722",
           10: "L16", 11: "L16", 12: "QCELP", 13: "CN", 14: "MPA", 15: "G728", 16: "DVI4",
           17: "DVI4", 18: "G729"}
# Not voice codecs: RFC 4733 telephone events (DTMF) and RFC 3389 comfort noise.
_NOT_VOICE = frozenset({"telephone-event", "cn"})
_MAX_LEN = 64  # the CDR column holds a short list; an absurd offer is cut, not stored whole


def audio_codecs(body: bytes) -> str:
    """The voice codecs of the first active ``m=audio`` stream, in the body's preference order,
    comma-separated (e.g. ``"PCMU,PCMA"``); ``""`` when there is none."""
    try:
        text = body.decode("utf-8", "replace")
    except Exception:  # pragma: no cover - decode with "replace" does not raise
        return ""
    formats: list[str] | None = None
    names: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if formats is not None:
                break  # RFC 8866 5.14: attributes after the next m= belong to that stream
            parts = line[2:].split()
            # m=<media> <port> <proto> <fmt> ...; port 0 is a declined stream (RFC 3264 6).
            if len(parts) >= 4 and parts[0] == "audio" and parts[1].split("/")[0] != "0":
                formats = parts[3:]
        elif formats is not None and line.startswith("a=rtpmap:"):
            pt, _, rest = line[9:].partition(" ")
            name = rest.split("/", 1)[0].strip()
            if pt and name:
                names[pt] = name
    if not formats:
        return ""
    out: list[str] = []
    for fmt in formats:
        name = names.get(fmt) or (_STATIC.get(int(fmt), "") if fmt.isdigit() and len(fmt) < 4 else "")
        if name and name.lower() not in _NOT_VOICE and name not in out:
            out.append(name)
    joined = ",".join(out)
    return joined if len(joined) <= _MAX_LEN else joined[:_MAX_LEN].rsplit(",", 1)[0]
