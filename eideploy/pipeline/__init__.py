"""The pipeline: the only layer that chains stages (DESIGN §1).

``export`` (model -> graph -> compiled network -> export directory, its manifest, reading one
back), ``report`` (the export's report.json and report.md), ``inspect`` (a model described and
checked against a target), ``validate`` (float vs quantized vs integer vs analog, as a list of
variants), ``simulate`` (the integer and analog simulators on an export, what ``eideploy
simulate`` prints), ``plots`` (the validation report's figures). Every stage below it (``graph``,
``sim``, ``targets``, ``train``) is a function from one object to the next and never imports this
package; ``cli`` parses arguments, calls a function here and prints.
"""
