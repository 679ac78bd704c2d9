"""Conversions to and from the splat formats users already have (SPZ, antimatter15 .splat).

All functions take and return :class:`codec.Gaussians` in the conventions of the
standard 3DGS PLY (SPEC.md 2), so a file converts to a GSD stream and back
through ``Encoder`` / ``Decoder`` like a PLY does.
"""
from .splat import decode_splat, encode_splat, read_splat, write_splat
from .spz import SpzError, SpzHeader, decode_spz, encode_spz, read_spz, write_spz

__all__ = ["decode_splat", "encode_splat", "read_splat", "write_splat",
           "SpzError", "SpzHeader", "decode_spz", "encode_spz", "read_spz", "write_spz"]
