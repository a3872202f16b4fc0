"""The scikit-learn runtime (``runtime``), its CSV tables (``tables``) and its models
(``estimators``)."""
