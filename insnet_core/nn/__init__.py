"""The machine-learned predictor (e3nn + torch): graphs, network, training, model files.

Only this subpackage imports torch; importing :mod:`insnet_core` alone never
does. Modules: :mod:`~insnet_core.nn.graph` (periodic radius graphs, numpy),
:mod:`~insnet_core.nn.model` (the network), :mod:`~insnet_core.nn.data`
(database crystals as graphs with targets), :mod:`~insnet_core.nn.train`
(training loop), :mod:`~insnet_core.nn.card` (model files).
"""
