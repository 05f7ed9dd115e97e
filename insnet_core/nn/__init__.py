"""The machine-learned predictor (e3nn + torch): graphs, network, training, model files.

Only this subpackage imports torch; importing :mod:`insnet_core` alone never
does. Modules: :mod:`~insnet_core.nn.graph` (periodic radius graphs, numpy),
:mod:`~insnet_core.nn.config` (its settings), :mod:`~insnet_core.nn.model` (the e3nn
network, for training), :mod:`~insnet_core.nn.fastnet` (the same network in plain torch,
for prediction: no e3nn import), :mod:`~insnet_core.nn.readout` (per-crystal pooling),
:mod:`~insnet_core.nn.data`
(database crystals as graphs with targets), :mod:`~insnet_core.nn.train`
(training loop), :mod:`~insnet_core.nn.card` (model files).
"""
