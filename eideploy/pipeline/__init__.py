"""The pipeline: the only layer that chains stages (DESIGN §1).

``export`` (model -> graph -> compiled network -> export directory), ``validate`` (float vs
quantized vs integer vs analog), ``plots`` (the validation report's figures). Every stage below it
(``graph``, ``sim``, ``targets``, ``train``) is a function from one object to the next and never
imports this package; ``cli`` parses arguments, calls a function here and prints.
"""
