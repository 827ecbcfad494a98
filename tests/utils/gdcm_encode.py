"""Re-encode DICOM bytes with python-gdcm (a dev dependency): the only encoder of JPEG
Lossless and JPEG-LS the tests have (pylibjpeg only decodes them)."""

from __future__ import annotations

from pathlib import Path


def gdcm_encode(data: bytes, tmp: Path, syntax: str = "JPEGLosslessProcess14_1") -> bytes:
    """``data`` in the transfer syntax ``gdcm.TransferSyntax.<syntax>`` (files under ``tmp``)."""
    import gdcm

    src, dst = tmp / "gdcm-in.dcm", tmp / "gdcm-out.dcm"
    src.write_bytes(data)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    out = dst.read_bytes()
    src.unlink()
    dst.unlink()
    return out
