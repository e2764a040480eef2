"""QNNClassifier: a skorch classifier whose network runs within a proven accumulator width."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d
from skorch import NeuralNetClassifier

from concrete_qnn.estimators.base import QNNEstimatorBase
from concrete_qnn.estimators.export import FittedModelMethods
from concrete_qnn.estimators.parameters import estimator_init
from concrete_qnn.integer import OutputHead


class QNNClassifier(FittedModelMethods, QNNEstimatorBase, NeuralNetClassifier):
    """Classifier whose network runs within ``module__n_accum_bits`` accumulators.

    Parameters ``module__*`` are those of ``SparseQuantNeuralNetwork`` (``input_dim`` and
    ``n_outputs`` come from the data). Other keyword arguments are skorch's
    (``criterion__weight``, ``callbacks``, ``train_split``, ``warm_start``, ``device``,
    ``iterator_train__*``, ...). ``random_state`` seeds torch for bit-identical refits;
    ``progress_bar=True`` shows skorch's ``ProgressBar`` (the one in ``callbacks``, if
    there is one). ``rounding_threshold_bits`` (default 5; None
    for none, or one entry per hidden layer) is how many high bits of an ``n_accum_bits``
    accumulator each hidden layer's table lookup reads: the integer model drops the
    ``k = n_accum_bits - rounding_threshold_bits`` low bits (``floor(A / 2^k)``, as
    concrete-python's ``truncate_bit_pattern``; a layer certified narrower than the bound
    reads fewer bits, in the buckets training saw), in the clear and
    under FHE alike, which makes encrypted inference several times faster for a small loss
    of accuracy (Concrete ML's parameter of the same name). Training reads the hidden
    accumulators through the same rounding (``SparseQuantNeuralNetwork.rounded_lookups``),
    so the network learns around it. Hidden layers have ``features x
    module__n_hidden_neurons_multiplier`` neurons (default 2 here: the module's 4 doubles
    the encrypted lookups without gaining accuracy), at least
    ``module__n_hidden_neurons_min`` (default 64). ``module__accumulator_rule`` defaults
    to ``"l1_budget"`` here (the module's own default is the seed's ``"fan_in"``): on the
    benchmark protocol it wins on most datasets of both suites (docs: Benchmarks, Results).
    ``module__n_input_bits`` defaults to ``"auto"`` here (the module's ``None`` keeps
    ``n_a_bits``): inputs get the finest codes the first layer's accumulator budget leaves
    room for (``accumulator.auto_input_bits``: 3 bits from 16 features on, 5 bits up to 7
    features at 3/3/8), which few-feature, curved problems need.
    ``module__weight_scaling`` defaults to ``"auto"`` here (the module's ``"max"`` keeps
    Brevitas' max-abs scale): below 8-bit bounds (``module__n_accum_bits <= 7``) each
    neuron's weight scale gives its largest weight a smaller code where that fits more
    inputs under the bound (``"budget_mse"``, ``concrete_qnn.nn.quantizers``), and the
    inputs get the codes that leave room for four weights of code +1 per neuron (4 bits at
    6-bit bounds); at 6 bits that scored 0.9754 on breast_cancer where the max-abs scale
    scored 0.9508 (docs: Choosing rules and bit-widths). ``module__learned_lookups``
    defaults to ``"auto"`` here (the module's False keeps the fixed activation): on data of
    at most 8 features each hidden neuron learns the function its table holds
    (``nn.lookups.LearnedLookup``), at no encrypted cost; on the benchmark's 6 x 6
    checkerboard that raised 5-fold accuracy from 0.603 to 0.872 (docs: Benchmarks,
    Accuracy against latency). Training
    defaults: AdamW (``lr=0.002``, ``optimizer__weight_decay=0.1``), ``max_epochs="auto"``
    (``auto_max_epochs``: 200 epochs where the lookups are learned, which raised the
    checkerboard to 0.897, else 60; resolved per training call as ``max_epochs_``) with a
    cosine learning-rate schedule (an ``LRScheduler`` in ``callbacks`` replaces it),
    ``batch_size="auto"`` (see ``auto_batch_size``: 64 rows up to 10,000 rows, then at most
    157 and from 100,000 rows 50 steps an epoch, with the cosine schedule's peak ``lr``
    scaled to match), no validation split (skorch's ``ValidSplit`` and ``EarlyStopping`` add
    one).

    During ``fit``, skorch's callbacks see the problem the network is trained on: labels
    encoded as 0 .. n_classes-1, and ``predict``/``predict_proba`` answer for the network
    being trained, as skorch's own do (so validation scoring, ``EarlyStopping`` and
    ``Checkpoint`` work). After ``fit`` they answer with the labels of ``classes_``, from
    the integer model.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame with string columns
    certificate_ : AccumulatorCertificate
    integer_model_ : IntegerModel, the pruned network as integers; predictions come from it
    max_epochs_ : int
        The epochs of the last training call (what ``max_epochs="auto"`` resolved to).
    batch_size_ : int or None
        The last training call's ``auto_batch_size`` (None unless ``batch_size="auto"``).
    learning_rate_factor_ : float
        The factor on ``lr`` that goes with it (``auto_learning_rate_factor``; 1.0 unless
        ``batch_size="auto"`` chose batches of more than 64 rows, from 10,001 rows on).
    """

    __init__ = estimator_init(torch.nn.CrossEntropyLoss)

    @property
    def classes_(self) -> np.ndarray:
        return self.label_encoder_.classes_

    def _validate_targets(self, y, reset, classes=None, sample_weight=None):
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        if reset:
            classes = self.classes if classes is None else classes
            labels = y if classes is None else np.asarray(classes)
            self.label_encoder_ = LabelEncoder().fit(labels)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                    f"but the data contains only one class: {self.classes_[0]!r}"
                )
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not seen in the first fit: {unknown[:5]}")
        return self.label_encoder_.transform(y).astype(np.int64), len(self.classes_)

    def initialize_criterion(self):
        """The criterion, with ``criterion__weight`` accepted as a list or an array."""
        params = self.get_params_for("criterion")
        if params.get("weight") is not None:
            params["weight"] = torch.as_tensor(np.asarray(params["weight"], dtype=np.float32))
        self.criterion_ = self.criterion(**params)
        return self

    def _output_head(self) -> OutputHead:
        return OutputHead("classification", classes=self.classes_)

    def predict_proba(self, X, fhe: str = "disable") -> np.ndarray:
        """Class probabilities, float64 (n_samples, n_classes), from the integer model:
        in the clear (``fhe="disable"``), simulated (``"simulate"``) or encrypted
        (``"execute"``, after ``compile``). During ``fit``: skorch's, from the network
        being trained."""
        return self._predicted(X, fhe, NeuralNetClassifier.predict_proba, "probabilities")

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Labels of ``classes_`` (n_samples,) from the integer model; ``fhe`` as in
        ``predict_proba``. During ``fit``: skorch's encoded labels, from the network
        being trained."""
        return self._predicted(X, fhe, NeuralNetClassifier.predict, "predictions")
