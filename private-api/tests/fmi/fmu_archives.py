"""Build FMU-shaped and hostile zip archives for the tests, byte by byte where needed."""

from __future__ import annotations

import stat
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

Member = tuple[str | zipfile.ZipInfo, bytes]

FMI2_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="2.0" modelName="Tank" guid="{8c4e810f-3df3-4a00-8276-176fa3c9f000}"
    description="A tank" generationTool="hand" generationDateAndTime="2024-01-01T00:00:00Z">
  <ModelExchange modelIdentifier="Tank"/>
  <CoSimulation modelIdentifier="Tank"/>
  <TypeDefinitions>
    <SimpleType name="Pressure"><Real quantity="Pressure" unit="Pa"/></SimpleType>
    <SimpleType name="Mode">
      <Enumeration><Item name="off" value="1"/><Item name="on" value="2"/></Enumeration>
    </SimpleType>
  </TypeDefinitions>
  <DefaultExperiment startTime="0" stopTime="10" tolerance="1e-6" stepSize="0.01"/>
  <ModelVariables>
    <ScalarVariable name="level" valueReference="0" causality="output" initial="exact"
        description="Fill level"><Real start="0.5" unit="m"/></ScalarVariable>
    <ScalarVariable name="der(level)" valueReference="1"><Real derivative="1"/></ScalarVariable>
    <ScalarVariable name="area" valueReference="2" causality="parameter" variability="fixed">
      <Real start="2"/></ScalarVariable>
    <ScalarVariable name="inflow" valueReference="3" causality="input"><Real start="0"/></ScalarVariable>
    <ScalarVariable name="p" valueReference="4" causality="output"><Real declaredType="Pressure"/></ScalarVariable>
    <ScalarVariable name="n" valueReference="5" causality="parameter" variability="tunable">
      <Integer start="-3"/></ScalarVariable>
    <ScalarVariable name="open" valueReference="6" causality="input" variability="discrete">
      <Boolean start="1"/></ScalarVariable>
    <ScalarVariable name="closed" valueReference="7" causality="parameter" variability="fixed">
      <Boolean start="false"/></ScalarVariable>
    <ScalarVariable name="label" valueReference="8" causality="parameter" variability="fixed">
      <String start="tank one"/></ScalarVariable>
    <ScalarVariable name="mode" valueReference="9" causality="parameter" variability="fixed">
      <Enumeration declaredType="Mode" start="2"/></ScalarVariable>
    <ScalarVariable name="volume" valueReference="10" causality="calculatedParameter" variability="fixed">
      <Real/></ScalarVariable>
    <ScalarVariable name="g" valueReference="11" causality="local" variability="constant">
      <Real start="9.81"/></ScalarVariable>
    <ScalarVariable name="time" valueReference="12" causality="independent"><Real/></ScalarVariable>
  </ModelVariables>
  <ModelStructure/>
</fmiModelDescription>
"""

FMI3_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="3.0" modelName="Ball" instantiationToken="{2f7e1b44-0000-4000-8000-000000000003}">
  <ModelExchange modelIdentifier="Ball"/>
  <CoSimulation modelIdentifier="Ball"/>
  <UnitDefinitions><Unit name="m/s"/></UnitDefinitions>
  <TypeDefinitions>
    <Float64Type name="Velocity" unit="m/s"/>
    <EnumerationType name="Shape"><Item name="round" value="1"/><Item name="square" value="2"/></EnumerationType>
  </TypeDefinitions>
  <DefaultExperiment stopTime="3"/>
  <ModelVariables>
    <Float64 name="time" valueReference="0" causality="independent" variability="continuous"/>
    <Float64 name="h" valueReference="1" causality="output" initial="exact" start="1" unit="m"/>
    <Float64 name="v" valueReference="2" causality="output" initial="exact" start="0" declaredType="Velocity"/>
    <Float32 name="e" valueReference="3" causality="parameter" start="0.7"/>
    <Int32 name="count" valueReference="4" causality="output"/>
    <UInt64 name="big" valueReference="5" causality="parameter" start="18446744073709551615"/>
    <Boolean name="enabled" valueReference="6" causality="input" start="true"/>
    <String name="label" valueReference="7" causality="parameter"><Start value="ball"/></String>
    <Binary name="blob" valueReference="8" causality="parameter"><Start value="0a0b"/></Binary>
    <Enumeration name="shape" valueReference="9" causality="parameter" declaredType="Shape" start="1"/>
    <Clock name="tick" valueReference="10" causality="input" intervalVariability="constant"/>
    <UInt64 name="n" valueReference="11" causality="structuralParameter" variability="tunable" start="3"/>
    <Float64 name="xs" valueReference="12" causality="parameter" start="1 2 3">
      <Dimension valueReference="11"/>
    </Float64>
    <Int8 name="grid" valueReference="13" causality="parameter" start="1 2 3 4">
      <Dimension start="2"/><Dimension start="2"/>
    </Int8>
  </ModelVariables>
  <ModelStructure/>
</fmiModelDescription>
"""


def fmi2_xml(variables: str = "", *, interfaces: str | None = None, root: str = 'fmiVersion="2.0"') -> bytes:
    """A minimal FMI 2.0 description around the given <ScalarVariable> elements."""
    if interfaces is None:
        interfaces = '<ModelExchange modelIdentifier="m"/><CoSimulation modelIdentifier="m"/>'
    return (
        f'<?xml version="1.0"?><fmiModelDescription {root} modelName="m" guid="{{g}}">'
        f"{interfaces}<ModelVariables>{variables}</ModelVariables></fmiModelDescription>"
    ).encode()


def fmi3_xml(variables: str = "") -> bytes:
    return (
        '<?xml version="1.0"?><fmiModelDescription fmiVersion="3.0" modelName="m" instantiationToken="{t}">'
        f'<CoSimulation modelIdentifier="m"/><ModelVariables>{variables}</ModelVariables></fmiModelDescription>'
    ).encode()


def write_zip(path: Path, members: Iterable[Member], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def fmu_members(
    xml: bytes = FMI2_XML, *, binaries: Iterable[str] = ("binaries/linux64/Tank.so",), sources: bool = False
) -> list[Member]:
    """modelDescription.xml, a dummy shared library per path in ``binaries``, optional sources."""
    members: list[Member] = [("modelDescription.xml", xml)]
    members += [(name, b"\x7fELF not really") for name in binaries]
    if sources:
        members += [("sources/model.c", b"int main(void) { return 0; }\n")]
    return members


def special_file(name: str, file_type: int, data: bytes = b"") -> zipfile.ZipInfo:
    """A member whose Unix mode says it is a symlink, FIFO, device ... (its data is the link target)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the high 16 bits of external_attr are st_mode
    info.external_attr = (file_type | 0o777) << 16
    return info


SYMLINK = stat.S_IFLNK
FIFO = stat.S_IFIFO
CHAR_DEVICE = stat.S_IFCHR

# Offsets into the fixed part of a central directory entry (APPNOTE 4.3.12).
_CD_SIGNATURE = b"PK\x01\x02"
_CD_FLAGS, _CD_UNCOMPRESSED, _CD_NAME_LENGTH, _CD_LOCAL_OFFSET = 8, 24, 28, 42
# And of a local file header (APPNOTE 4.3.7).
_LH_FLAGS, _LH_UNCOMPRESSED = 6, 22


def patch_member(
    path: Path, name: str, *, flags: int | None = None, file_size: int | None = None, offset: int | None = None
) -> None:
    """Rewrite header fields of member ``name`` in place, in its central and local headers."""
    data = bytearray(path.read_bytes())
    entry = _central_entry(data, name)
    local = struct.unpack_from("<L", data, entry + _CD_LOCAL_OFFSET)[0]
    if flags is not None:
        struct.pack_into("<H", data, entry + _CD_FLAGS, flags)
        struct.pack_into("<H", data, local + _LH_FLAGS, flags)
    if file_size is not None:
        struct.pack_into("<L", data, entry + _CD_UNCOMPRESSED, file_size)
        struct.pack_into("<L", data, local + _LH_UNCOMPRESSED, file_size)
    if offset is not None:
        struct.pack_into("<L", data, entry + _CD_LOCAL_OFFSET, offset)
    path.write_bytes(bytes(data))


def _central_entry(data: bytearray, name: str) -> int:
    encoded = name.encode()
    at = data.find(_CD_SIGNATURE)
    while at >= 0:
        length = struct.unpack_from("<H", data, at + _CD_NAME_LENGTH)[0]
        if data[at + 46 : at + 46 + length] == encoded:
            return at
        at = data.find(_CD_SIGNATURE, at + 1)
    raise KeyError(name)


def write_zero_bomb(path: Path, size: int, *, name: str = "zeros.bin") -> Path:
    """``size`` bytes of zeros in one deflated member, streamed so it is never held in memory."""
    chunk = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open(name, "w", force_zip64=True) as out,
    ):
        for start in range(0, size, len(chunk)):
            out.write(chunk[: min(len(chunk), size - start)])
    return path
