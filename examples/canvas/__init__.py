"""Plug-in canvases (``nox -s check-canvas -- pkg.mod:make_canvas``): a chain of two of
the user's own tasks, each with an effect in the run's invoice store. Each module's
docstring says SOUND or BROKEN; tests/properties/test_examples.py checks both."""
