"""The model families of both deliverables, one small module each:

* :mod:`shared.models.layers`       Keras building blocks (dense block, output, MLP, linear head);
* :mod:`shared.models.baselines`    ``mean``, ``ridge``, ``hgb`` (gradient boosting);
* :mod:`shared.models.mlp`          ``mlp``, the tabular MLP (also the fusion models' tabular part);
* :mod:`shared.models.tabular_net`  ``tabular_net``: numeric-feature (PLR) embeddings and a TabM
  ensemble;
* :mod:`shared.models.cnn_scratch`  ``cnn_scratch``, a small CNN on the photo;
* :mod:`shared.models.transfer`     ``transfer_frozen`` / ``transfer_finetuned`` (ImageNet backbone);
* :mod:`shared.models.early_fusion` ``early_fusion``, ``hgb_with_embeddings``;
* :mod:`shared.models.late_fusion`  ``late_fusion``, ``late_fusion_from_branches``;
* :mod:`shared.models.blend`        ``blend``, a tabular and a photo model averaged in log space.

Every trainer has the form ``train_X(data, cfg, ...) -> Trained``
(:class:`~shared.experiment.Trained`): it reads the run's :class:`~shared.data.ModelData` and
:class:`~shared.config.RunConfig` and returns the fitted bundle; the evaluation loop
(:meth:`shared.experiment.Experiment.evaluate`) scores, calibrates and saves it.
:func:`train_single_source` trains deliverable 1's models (tabular only or photo only), which
deliverable 2 also uses as its references.
"""

from __future__ import annotations

#: Deliverable 1's models, in training order (``transfer_finetuned`` starts from ``transfer_frozen``).
SINGLE_SOURCE_MODELS = ("mean", "ridge", "hgb", "mlp", "tabular_net", "cnn_scratch",
                        "transfer_frozen", "transfer_finetuned")


def train_single_source(exp, names=SINGLE_SOURCE_MODELS, log=print) -> dict:
    """Train the named single-source models in :data:`SINGLE_SOURCE_MODELS` order, each evaluated,
    calibrated and saved by ``exp`` as soon as it is trained; returns {name: Trained}.
    ``transfer_finetuned`` needs ``transfer_frozen`` in ``names``."""
    from shared.models import baselines, cnn_scratch, mlp, tabular_net, transfer

    trained = {}
    steps = {"mean": baselines.train_mean, "ridge": baselines.train_ridge,
             "hgb": baselines.train_hgb,
             "mlp": lambda data, cfg: mlp.train_mlp(data, cfg, progress=log),
             "tabular_net": lambda data, cfg: tabular_net.train_tabular_net(data, cfg,
                                                                             progress=log),
             "cnn_scratch": cnn_scratch.train_cnn_scratch,
             "transfer_frozen": transfer.train_transfer_frozen,
             "transfer_finetuned": lambda data, cfg: transfer.train_transfer_finetuned(
                 data, cfg, trained["transfer_frozen"].extra["finetune_start"])}
    unknown = set(names) - set(SINGLE_SOURCE_MODELS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {SINGLE_SOURCE_MODELS}")
    for name in SINGLE_SOURCE_MODELS:
        if name in names:
            trained[name] = steps[name](exp.data, exp.cfg)
            exp.evaluate(trained[name], log=log)
    return trained


def reseed_of(name: str, data, cfg, params: dict):
    """``seed -> predict(part)`` retraining a saved tabular model's chosen settings (its bundle
    ``params``) with another seed, for the seed study; None for a model without a cheap retrain."""
    from shared.models import baselines, mlp, tabular_net

    reseeds = {"hgb": baselines.hgb_reseed, "mlp": mlp.mlp_reseed,
               "tabular_net": tabular_net.tabular_net_reseed}
    return reseeds[name](data, cfg, params) if name in reseeds else None
