"""Variants of an FMU for tests of what the gateway refuses or bounds: a model description
rewritten, members added, more variables declared."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path


def rewritten(fmu: Path, *, xml: bytes | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """``fmu``'s archive with its modelDescription.xml replaced and ``extra`` members added."""
    out = io.BytesIO()
    with zipfile.ZipFile(fmu) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, xml if xml is not None and info.filename == "modelDescription.xml" else data)
        for name, data in (extra or {}).items():
            target.writestr(name, data)
    return out.getvalue()


def model_description(fmu: Path) -> bytes:
    with zipfile.ZipFile(fmu) as archive:
        return archive.read("modelDescription.xml")


def with_variables(fmu: Path, count: int, *, description: str = "", aliases: bool = False,
                   parameters: bool = False) -> bytes:
    """``fmu`` (FMI 2) declaring ``count`` more variables after its own (so the model structure's
    indices stay valid): p0, p1, ...; local, or with ``parameters`` fixed Real parameters that start
    at 1; with ``description``, p7's is that plus "7"; ``aliases``: all of one value reference
    (shorter XML)."""
    xml = model_description(fmu)
    first = max(int(v) for v in re.findall(rb'valueReference="(\d+)"', xml)) + 1
    described = (lambda i: f' description="{description}{i}"') if description else (lambda i: "")
    kind = ' causality="parameter" variability="fixed"' if parameters else ""
    real = '<Real start="1"/>' if parameters else "<Real/>"
    extra = "".join(f'<ScalarVariable name="p{i}" valueReference="{first + (0 if aliases else i)}"{kind}'
                    f'{described(i)}>{real}</ScalarVariable>' for i in range(count))
    return rewritten(fmu, xml=xml.replace(b"</ModelVariables>", extra.encode() + b"</ModelVariables>"))
