"""Defaults left as ``None`` that ``set_params`` and ``GridSearchCV`` can reach."""


class _ReachableDefaults:
    """``set_params`` builds the documented default of a ``None`` sub-estimator.

    ``GridSearchCV(CleanedRegressor(Ridge()), {"cleaner__contamination": ...})``
    sets a nested parameter of ``cleaner=None``: the default it stands for is
    put in its place first, then tuned.  Until then ``get_params`` reports
    ``None`` as passed (``clone`` round-trips untouched); afterwards it
    reports the default with the tuned value, which ``clone`` copies.  A
    subclass lists its defaults in :meth:`_defaults`; put this class before
    ``BaseEstimator`` in the bases.
    """

    def _defaults(self) -> dict:
        """Parameter name -> factory of the default that ``None`` stands for."""
        return {}

    def set_params(self, **params):
        """Set parameters; nested ones may target a default left as ``None``.

        Parameters
        ----------
        **params : dict
            Estimator parameters.  ``<name>__<param>`` where ``<name>`` is
            ``None`` sets ``<param>`` on a fresh instance of the documented
            default (e.g. ``cleaner__contamination`` on
            ``NoisyLabelDetector()``).

        Returns
        -------
        self : estimator instance
        """
        defaults = self._defaults()
        for name in {key.split("__", 1)[0] for key in params if "__" in key}:
            if name not in defaults:
                continue
            if name in params:
                if params[name] is None:
                    params[name] = defaults[name]()
            elif getattr(self, name) is None:
                setattr(self, name, defaults[name]())
        return super().set_params(**params)
