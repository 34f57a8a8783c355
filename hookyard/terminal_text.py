"""Text from senders and servers made safe to print: no escape sequence reaches a terminal."""

from __future__ import annotations


def visible(text: str, keep: str = "") -> str:
    """C0/C1 controls and DEL as visible symbols (the Unicode "control pictures", e.g. ␛),
    except the characters in `keep` (say, newline and tab)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in keep:
            out.append(ch)
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif 0x80 <= code < 0xA0:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)
