"""The pipeline: the only layer that chains stages (DESIGN §1).

* ``export``: model -> graph -> compiled network -> export directory; its manifest; reading one
  back. ``report``: the export's report.json and report.md. ``inspect``: a model described and
  checked against a target.
* ``validate``: float vs quantized vs integer vs analog over ``variants`` (one interface,
  ``run(x)``, per way of computing the network); ``plots``: the validation report's figures.
* ``simulate`` and ``evaluate``: an export in the simulators, a model on its data set.
* ``train``: training followed by the hardware fit (training itself never runs the compiler).

Every stage below it (``graph``, ``sim``, ``targets``, ``train``) is a function from one object
to the next and never imports this package; ``cli`` parses arguments, calls a function here and
prints.
"""
