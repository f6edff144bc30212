"""The few facts of H.264 in MP4 that splicing a re-encoded tail onto copied frames needs.

In MP4 (``avc1``) a stream's parameter sets (SPS, PPS) live in the ``avcC`` record of the sample
entry, and each sample is a run of NAL units, each prefixed with its length in
``length_size`` bytes. An encoder writing into a bare codec context emits Annex B instead
(``00 00 01`` start codes, parameter sets in front of the first keyframe). A spliced stream keeps
the source's ``avcC`` and adds the tail's SPS/PPS under ids the source does not use, so every
slice names the parameter sets it was coded with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

NAL_SLICE: Final = 1
NAL_IDR: Final = 5
NAL_SEI: Final = 6
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9
#: SPS ids are 0..31, PPS ids 0..255; x264 gives both the same id (``sps-id``).
MAX_SPS_ID: Final = 31

_START_CODE = re.compile(b"\x00\x00\x01")


class H264Error(ValueError):
    """The bytes are not the H.264 this module understands."""


@dataclass(frozen=True)
class Avcc:
    """An ``AVCDecoderConfigurationRecord`` (ISO/IEC 14496-15, 5.3.3.1)."""

    profile: int
    compatibility: int
    level: int
    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    rest: bytes  # the High-profile extension (chroma format, bit depths, SPS extensions)

    @classmethod
    def parse(cls, data: bytes) -> Avcc:
        if len(data) < 7 or data[0] != 1:
            raise H264Error("not an avcC record")
        offset = 5
        sps, offset = _parameter_sets(data, offset + 1, data[offset] & 0x1F)
        if offset >= len(data):
            raise H264Error("avcC record cut short")
        pps, offset = _parameter_sets(data, offset + 1, data[offset])
        return cls(data[1], data[2], data[3], (data[4] & 3) + 1, sps, pps, data[offset:])

    def ids(self) -> set[int]:
        """Every SPS and PPS id in use."""
        return {sps_id(nal) for nal in self.sps} | {pps_id(nal) for nal in self.pps}

    def adding(self, sps: bytes, pps: bytes) -> bytes:
        """The record with one more SPS and PPS (the level raised to cover the new SPS)."""
        if len(self.sps) >= MAX_SPS_ID:
            raise H264Error("no room for another SPS")
        level = max(self.level, sps[3])
        out = bytearray([1, self.profile, self.compatibility, level, 0xFC | (self.length_size - 1)])
        out.append(0xE0 | (len(self.sps) + 1))
        for nal in (*self.sps, sps):
            out += len(nal).to_bytes(2, "big") + nal
        out.append(len(self.pps) + 1)
        for nal in (*self.pps, pps):
            out += len(nal).to_bytes(2, "big") + nal
        return bytes(out + self.rest)


def _parameter_sets(data: bytes, offset: int, count: int) -> tuple[tuple[bytes, ...], int]:
    sets = []
    for _ in range(count):
        size = int.from_bytes(data[offset : offset + 2], "big")
        nal = data[offset + 2 : offset + 2 + size]
        if len(nal) != size or size < 2:
            raise H264Error("avcC parameter set cut short")
        sets.append(nal)
        offset += 2 + size
    return tuple(sets), offset


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes and trailing zeros removed)."""
    starts = [m.end() for m in _START_CODE.finditer(data)]
    units = []
    for start, end in zip(starts, [*starts[1:], len(data) + 3], strict=True):
        unit = data[start : end - 3].rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def length_prefixed_units(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of one MP4 sample."""
    units, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + length_size], "big")
        offset += length_size
        if size == 0 or offset + size > len(data):
            raise H264Error("sample NAL unit cut short")
        units.append(data[offset : offset + size])
        offset += size
    return units


def length_prefixed(units: list[bytes], length_size: int) -> bytes:
    """One MP4 sample made of ``units``."""
    limit = 1 << (8 * length_size)
    if any(len(unit) >= limit for unit in units):
        raise H264Error(f"a NAL unit does not fit a {length_size}-byte length")
    return b"".join(len(unit).to_bytes(length_size, "big") + unit for unit in units)


def is_reference(sample: bytes, length_size: int) -> bool:
    """True when another picture may predict from this one (a slice has ``nal_ref_idc`` > 0)."""
    return any(
        nal_type(unit) in {NAL_SLICE, NAL_IDR} and unit[0] & 0x60
        for unit in length_prefixed_units(sample, length_size)
    )


def sps_id(nal: bytes) -> int:
    """``seq_parameter_set_id`` of an SPS NAL unit."""
    if nal_type(nal) != NAL_SPS or len(nal) < 5:
        raise H264Error("not an SPS")
    return _BitReader(nal[4:]).ue()


def pps_id(nal: bytes) -> int:
    """``pic_parameter_set_id`` of a PPS NAL unit."""
    if nal_type(nal) != NAL_PPS:
        raise H264Error("not a PPS")
    return _BitReader(nal[1:]).ue()


class _BitReader:
    """Exp-Golomb reading of an RBSP (emulation prevention bytes removed first)."""

    def __init__(self, data: bytes) -> None:
        rbsp = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self.bits = int.from_bytes(rbsp, "big")
        self.left = 8 * len(rbsp)

    def bit(self) -> int:
        if self.left <= 0:
            raise H264Error("Exp-Golomb code runs past the end")
        self.left -= 1
        return (self.bits >> self.left) & 1

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("Exp-Golomb code too long")
        value = 0
        for _ in range(zeros):
            value = value << 1 | self.bit()
        return (1 << zeros) - 1 + value
