"""What a file is, from its first bytes rather than its name."""

from __future__ import annotations

FORMATS = ("jpeg", "png", "tiff", "gif", "webp", "psd", "pdf", "zip", "xml", "text", "unknown")
SNIFF_BYTES = 512


def sniff(head: bytes) -> str:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"8BPS"):
        return "psd"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<?xml") or (text.startswith(b"<") and b">" in text and b"\x00" not in text):
        return "xml"
    if head and _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text; a byte that can never
        # start or continue UTF-8 (b"\xff", b"\x89PN") is not, however short the file.
        if exc.start < len(head) - 3 or exc.reason != "unexpected end of data":
            return False
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return control <= len(head) // 100
