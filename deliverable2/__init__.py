"""Deliverable 2: fusion of the tabular features and the listing photo.

* :mod:`deliverable2.references`   deliverable 1's models reused (same split) or trained;
* :mod:`shared.models.families.early_fusion` ``early_fusion`` and ``hgb_with_embeddings``;
* :mod:`shared.models.families.late_fusion`  ``late_fusion`` and ``late_fusion_from_branches``;
* :mod:`deliverable2.ablation`     the comparison on the test set, the goal, and why;
* :mod:`deliverable2.analysis`     every analysis and conclusion the report shows;
* :mod:`deliverable2.train`        the one evaluation path, ``run()`` (``python -m deliverable2.train``);
* ``deliverable2/report.py``       the report rendered by ``nox -s deliverable2``: calls ``run()``
  and displays what it returns.
"""
