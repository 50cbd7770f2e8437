"""A minimal, valid PDF writer for the combined download: one text page per stored document
plus a certificate-of-completion page. Enough for a person (or pdftotext) to read; no layout."""

from __future__ import annotations

import html
import re

_PAGE_LINES = 48
_WRAP = 90


def html_to_text(content: bytes) -> str:
    """Visible text of an HTML document, one paragraph per block element."""
    text = content.decode("utf-8", "replace")
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", text)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|h[1-6]|li|tr)>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text)


def _wrap(text: str) -> list[str]:
    lines: list[str] = []
    for para in text.splitlines():
        para = " ".join(para.split())
        if not para:
            if lines and lines[-1]:
                lines.append("")
            continue
        while len(para) > _WRAP:
            cut = para.rfind(" ", 0, _WRAP)
            cut = cut if cut > 0 else _WRAP
            lines.append(para[:cut])
            para = para[cut:].lstrip()
        lines.append(para)
    return lines


def _escape(line: str) -> str:
    ascii_line = line.encode("latin-1", "replace").decode("latin-1")
    return ascii_line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page_stream(lines: list[str]) -> bytes:
    ops = ["BT", "/F1 10 Tf", "12 TL", "50 750 Td"]
    for line in lines:
        ops.append(f"({_escape(line)}) Tj T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def build_pdf(sections: list[tuple[str, str]]) -> bytes:
    """A PDF whose pages hold each (title, text) section, split across pages as needed."""
    pages: list[list[str]] = []
    for title, text in sections:
        lines = [title, "=" * min(len(title), _WRAP), ""] + _wrap(text)
        for i in range(0, max(len(lines), 1), _PAGE_LINES):
            pages.append(lines[i : i + _PAGE_LINES])
    objects: list[bytes] = []  # object n is objects[n-1]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"")  # pages tree, filled once kids are known
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for lines in pages:
        stream = _page_stream(lines)
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_no = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_no
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for no, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % no + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out)
