"""Sample-log names that are safe in Mantid.

Mantid's ``Run::loadNexus`` (used by ``LoadNexusProcessed``) reads a few
entries of a workspace's ``logs`` group specially instead of as sample logs,
and Mantid compares log names case-insensitively. Everything insnet writes as
a sample log, in a workspace (:mod:`insnet_core.mantid_adapter`) or in a
processed-NeXus file (:mod:`insnet_core.io.nexus`), is named through
:func:`sample_log_name`, so no log is ever written under one of those names or
twice under names differing only in case.
"""
from __future__ import annotations

__all__ = ["JSON_LOG_NAME", "RESERVED_LOG_NAMES", "sample_log_name"]

#: Name of the string sample log holding the exact insnet description of a spectrum.
JSON_LOG_NAME = "insnet_spectrum_json"

#: Lower-case names a sample log must not have: those ``Run::loadNexus`` treats
#: specially, the goniometer group Mantid writes next to the logs, and insnet's own
#: description log.
RESERVED_LOG_NAMES = frozenset({
    "goniometers", "processed_histogram_bins", "peak_radius", "inner_bkg_radius",
    "outer_bkg_radius", "proton_charge", "goniometer", JSON_LOG_NAME,
})


def sample_log_name(key, used):
    """A sample-log name for metadata ``key``, unique in ``used`` (updated in place).

    Parameters
    ----------
    key : object
        The metadata key; ``str(key)`` with '/' replaced by '_' (not allowed in a
        NeXus group name), blank names as '_'.
    used : set of str
        Lower-case names already given; the new one is added.

    Returns
    -------
    str
        The name, with '_' appended until it is neither reserved nor, ignoring
        case, already used (e.g. ``proton_charge`` becomes ``proton_charge_``).
    """
    name = str(key).replace("/", "_").strip() or "_"
    if name in (".", ".."):
        name = "_" + name
    while name.lower() in RESERVED_LOG_NAMES or name.lower() in used:
        name += "_"
    used.add(name.lower())
    return name
