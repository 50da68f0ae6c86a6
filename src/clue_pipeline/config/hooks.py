"""The Kedro hook that refuses unknown parameters before anything runs."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from clue_pipeline.config.strict import check_parameters


class UnknownParameterError(ValueError):
    """A parameter key that no setting reads (a typo, or an old name)."""


class StrictParametersHook:
    """Checks the merged parameters (conf files and ``--params``) once the context exists:
    before the run lock, MLflow or any node."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            check_parameters(context.config_loader["parameters"])
        except ValueError as error:
            raise UnknownParameterError(str(error)) from None
