"""Example plug-in effects: two broken, two sound (``pkg.mod:make_effect``)."""
