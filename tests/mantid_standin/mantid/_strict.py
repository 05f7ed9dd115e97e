"""Base class whose missing attributes fail with a message naming the stand-in."""


class Strict:
    """Objects of the stand-in: unknown attributes raise a clear AttributeError."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"mantid stand-in: {type(self).__name__}.{name} is not modelled "
            "(see tests/mantid_standin); use a real Mantid or extend the stand-in faithfully")


def not_modelled(module, name):
    raise AttributeError(
        f"mantid stand-in: '{module}.{name}' is not modelled (see tests/mantid_standin); "
        "use a real Mantid or extend the stand-in faithfully")
