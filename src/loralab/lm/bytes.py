"""Bytes: the byte-level tokenizer and the strict UTF-8 reading of a user's text.

* :class:`ByteTokenizer`: one token per UTF-8 byte (``vocab_size = 256``), the same interface
  as :class:`~loralab.lm.model.CharTokenizer`. One vocabulary covers every UTF-8 text, so
  one pretrained base serves every text a user brings; the cost is that a character outside
  ASCII is 2-4 tokens (a CJK character is 3) and byte values the pretraining text never used
  start untrained.
* :func:`decode_utf8`: bytes -> text, refusing a binary file (a NUL byte) or bytes that are not
  UTF-8, with the file's name and the byte offset in the message.
"""

from __future__ import annotations

import torch

from ..errors import LoralabError

__all__ = ["BYTE_VOCAB", "ByteTokenizer", "decode_utf8"]

BYTE_VOCAB = 256      # one id per byte value
_BOM = "\ufeff"


class ByteTokenizer:
    """Byte-level tokenizer: ``encode(text)`` is the text's UTF-8 bytes, ids ``0..255``.

    ``encode("子曰")`` -> ``[229, 173, 144, 230, 155, 176]`` (3 bytes per CJK character);
    ``decode`` turns a cut multi-byte sequence into U+FFFD instead of failing, so a sample
    the model ends in the middle of a character still prints.
    """

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids: 256, one per byte value."""
        return BYTE_VOCAB

    def encode(self, text: str) -> list[int]:
        """``text`` -> list of ``len(text.encode("utf-8"))`` ids in ``0..255``.

        A lone surrogate (not encodable as UTF-8) raises ``LoralabError``.
        """
        try:
            return list(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise LoralabError(f"character {text[exc.start]!r} at index {exc.start} cannot be "
                               "written as UTF-8; give valid Unicode text") from None

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """List or 1-D tensor of ids in ``0..255`` -> text (invalid UTF-8 becomes U+FFFD)."""
        seq = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        try:
            raw = bytes(seq)
        except (ValueError, TypeError):
            bad = next((i for i in seq if not isinstance(i, int) or not 0 <= i < 256), None)
            raise LoralabError(f"token id {bad!r} is not a byte; ByteTokenizer ids are "
                               "integers 0..255") from None
        return raw.decode("utf-8", errors="replace")


def decode_utf8(data: bytes, name: str) -> str:
    """The text of file ``name`` from its bytes: strict UTF-8, a leading BOM dropped.

    Raises ``LoralabError`` naming ``name`` and the byte offset of the first NUL byte (a
    binary file) or of the first byte that is not UTF-8.
    """
    nul = data.find(b"\0")
    if nul >= 0:
        raise LoralabError(f"{name!r} looks binary: a NUL byte at byte offset {nul}; "
                           "give a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoralabError(f"{name!r} is not UTF-8: byte 0x{data[exc.start]:02x} at byte "
                           f"offset {exc.start} ({exc.reason}); save the file as UTF-8") from None
    return text[1:] if text.startswith(_BOM) else text
