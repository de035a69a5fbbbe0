"""Bytes to text: byte-order mark, then the declared charset, then UTF-8, then a guess."""

from __future__ import annotations

import codecs
import unicodedata

import charset_normalizer


class UndecodableError(ValueError):
    """The bytes are not text in any encoding we can tell (binary data, or garbage)."""


_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Labels that browsers (WHATWG Encoding) read as windows-1252: servers say "latin-1"
# and send curly quotes and the euro sign from cp1252.
_WINDOWS_1252_ALIASES = frozenset({"latin_1", "iso8859_1", "ascii", "cp1252"})
_WESTERN = frozenset({"cp1252", "latin_1", "iso8859_15", "iso8859_1"})


def _codec_name(label: str) -> str | None:
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    name = name.replace("-", "_")
    return "cp1252" if name in _WINDOWS_1252_ALIASES else name


def _looks_binary(text: str) -> bool:
    """Control characters other than line breaks and tabs are not in any article."""
    if not text:
        return False
    sample = text[:20000]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f")
    return controls > max(2, len(sample) // 200)


def _is_utf8_with_non_ascii(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not data.isascii()


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Decode ``data``: BOM, then ``declared`` charset if it fits, then UTF-8, then a guess.

    A declared charset that does not fit the bytes is ignored rather than trusted, and
    cp1252 wins among single-byte guesses because our sources write French and Spanish.
    Raises ``UndecodableError`` for binary data.
    """
    text: str | None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data[len(bom) :].decode(encoding, errors="replace")
            if _looks_binary(text):
                raise UndecodableError("binary data after a text byte-order mark")
            return text
    if b"\x00" in data[:4096]:
        raise UndecodableError("binary data (NUL bytes), not text")
    codec = _codec_name(declared) if declared else None
    if codec:
        # Valid UTF-8 with accents is almost never meant as cp1252: the declaration is wrong.
        if codec in _WESTERN and _is_utf8_with_non_ascii(data):
            codec = "utf_8"
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            text = None
        if text is not None and not _looks_binary(text):
            return text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if _looks_binary(text):
            raise UndecodableError("binary data, not text")
        return text
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise UndecodableError("cannot tell the text encoding (binary data?)")
    western = any("cp1252" in match.could_be_from_charset for match in matches)
    guessed = data.decode("cp1252", errors="replace") if western else str(best)
    if _looks_binary(guessed):
        raise UndecodableError("binary data, not text")
    return guessed
