"""The numbers ``nncli eval`` reports, as scikit-learn defines them: pure NumPy in float64,
knowing nothing of models, files or terminals.

- ``classification``: confusion matrix, per-class precision/recall/F1/support, their macro and
  weighted averages, accuracy, balanced accuracy, log loss;
- ``ranking``: ROC and precision-recall curves, ROC AUC, average precision, one-vs-rest;
- ``thresholds``: the decision threshold that maximises F1;
- ``regression``: MSE, RMSE, MAE, R^2 and max error, per output and overall;
- ``calibration``: reliability-diagram bins.

Every function takes ``sample_weight`` (one weight per row, scikit-learn's ``sample_weight``;
None weighs every row 1) except where scikit-learn's own takes none (``max_error``,
``calibration_curve``).
"""
