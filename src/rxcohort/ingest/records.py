"""Records of a delivered file: its lines, except where a quoted field holds a line break.

A field in double quotes may contain the separator, doubled quotes and line breaks (CSV as
RFC 4180 has it). A line with an odd number of ``"`` leaves a quoted field open, and the record
goes on over the next lines up to the one that closes it (an odd number again); the record is
those lines joined by ``\\n``, numbered by its first line. A quote that is not closed within
:data:`MAX_RECORD_LINES` lines is taken as a character of its line, so a stray ``"`` never
swallows the rest of a file.

The file check (:func:`rxcohort.ingest.delivery.check_file`) and the numbering of lines for
bronze (:func:`rxcohort.ingest.delivery.write_numbered_lines`) both read records here, so the
rows one counts are the rows the other writes. Blocks without a quote - nearly all - pass
through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_RECORD_LINES = 20
QUOTE = b'"'


@dataclass
class RecordSplitter:
    """Feed blocks of whole lines (``\\n`` removed, ``\\r`` kept); get (first line, record).

    Lines of a record that may still be closed by a later block are held back until it comes
    (or :meth:`finish`)."""

    next_number: int = 1  # the line number of the first held-back line, or of the next line
    pending: list[bytes] = field(default_factory=list)
    continuations: int = 0  # lines joined to the line before them

    def quiet(self) -> bool:
        """Nothing held back: a block without a quote can bypass the splitter."""
        return not self.pending

    def feed(self, lines: list[bytes], *, final: bool = False) -> list[tuple[int, bytes]]:
        buffer = self.pending + lines
        out: list[tuple[int, bytes]] = []
        number, i = self.next_number, 0
        while i < len(buffer):
            line = buffer[i]
            if line.count(QUOTE) % 2 == 0:
                out.append((number, line))
                number, i = number + 1, i + 1
                continue
            end = _closing_line(buffer, i)
            if end is not None:
                out.append((number, b"\n".join(_strip_cr(b) for b in buffer[i:end])))
                self.continuations += end - i - 1
                number, i = number + (end - i), end
            elif final or len(buffer) - i >= MAX_RECORD_LINES:
                out.append((number, line))  # never closed: the quote is a character
                number, i = number + 1, i + 1
            else:
                break  # the closing line may be in the next block
        self.pending = buffer[i:]
        self.next_number = number
        return out

    def finish(self) -> list[tuple[int, bytes]]:
        return self.feed([], final=True)


def _closing_line(buffer: list[bytes], start: int) -> int | None:
    """One past the line that closes the quoted field ``buffer[start]`` opens, or None."""
    for j in range(start + 1, min(len(buffer), start + MAX_RECORD_LINES)):
        if buffer[j].count(QUOTE) % 2 == 1:
            return j + 1
    return None


def _strip_cr(line: bytes) -> bytes:
    # Inside a record a line break is \n, whichever way the file ended its lines.
    return line[:-1] if line.endswith(b"\r") else line
