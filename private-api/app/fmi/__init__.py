"""FMU handling: safe archive inspection and extraction, model descriptions, platforms."""

from app.fmi.archive import (
    ArchiveLimits,
    ArchiveSummary,
    InspectedFmu,
    extract_fmu,
    inspect_archive,
    inspect_fmu,
    read_model_description_bytes,
)
from app.fmi.model_description import DefaultExperiment, ModelInfo, Variable, parse_model_description
from app.fmi.platforms import host_platform_tags, platforms_in_archive, require_host_platform

__all__ = [
    "ArchiveLimits",
    "ArchiveSummary",
    "DefaultExperiment",
    "InspectedFmu",
    "ModelInfo",
    "Variable",
    "extract_fmu",
    "host_platform_tags",
    "inspect_archive",
    "inspect_fmu",
    "parse_model_description",
    "platforms_in_archive",
    "read_model_description_bytes",
    "require_host_platform",
]
