"""The models: every family of both deliverables, and what they share.

* :mod:`shared.models.families` - one module per model family, each exporting ``FAMILY``
  (:class:`~shared.models.spec.Family`): its models, trainers, budget section and saved types;
* :mod:`shared.models.registry` - the families collected: model names by deliverable and role,
  training order, reseeds, trusted types;
* :mod:`shared.models.spec` - what a family declares and what a trainer returns (``Trained``);
* :mod:`shared.models.bundle` / :mod:`shared.models.saved` / :mod:`shared.models.files` - a
  trained model with its preprocessing, its folder, and the safe files it is made of;
* :mod:`shared.models.fit`, :mod:`shared.models.search`, :mod:`shared.models.layers`,
  :mod:`shared.models.end_to_end`, :mod:`shared.models.ridge` - the Keras fit loop, the one
  validation search, the network building blocks and closed-form ridge.
"""
