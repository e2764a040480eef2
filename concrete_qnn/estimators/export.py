"""What a fitted estimator answers and writes: predictions (clear, simulated, encrypted),
the certificate, the FHE circuit, ONNX, model files, and pruned copies.

``FittedModelMethods`` holds the estimators' public methods for these; it keeps no state of
its own and delegates to the integer model, ``concrete_qnn.fhe``,
``concrete_qnn.deploy.artifacts`` and ``concrete_qnn.onnx_export``. It is a class beside
the skorch plumbing (``base``) only because scikit-learn's API puts these methods on the
estimator.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.utils.validation import check_is_fitted

from concrete_qnn.certificate import AccumulatorCertificate
from concrete_qnn.estimators.lifecycle import CIRCUIT_NOT_PICKLED
from concrete_qnn.estimators.validation import (
    PRUNE_PERCENTAGE,
    check_network_matches_parameters,
    check_settings,
    validate_predict_data,
)
from concrete_qnn.exceptions import NotCompiledError
from concrete_qnn.fhe import check_fhe_mode


class FittedModelMethods:
    """The fitted model's public methods, shared by ``QNNClassifier`` and ``QNNRegressor``."""

    def _predicted(self, X, fhe: str, during_fit: Callable, after_fit: str) -> np.ndarray:
        """The one switch between ``predict``'s two meanings.

        Inside skorch's training loop (``_training_loop``): ``during_fit(self, X)``, skorch's
        own method, for the network being trained, as skorch's scoring callbacks,
        ``EarlyStopping`` and ``Checkpoint`` expect. After: the integer model's method named
        ``after_fit`` applied to its outputs for ``X`` (``fhe`` as in ``_outputs``).
        """
        if self._in_training_loop:
            return during_fit(self, X)
        outputs = self._outputs(X, fhe)
        return getattr(self.integer_model_, after_fit)(outputs)

    def _outputs(self, X, fhe: str) -> np.ndarray:
        """Real outputs (n_samples, n_outputs) in the clear, simulated or encrypted."""
        check_fhe_mode(fhe)
        X = validate_predict_data(self, X)
        if fhe == "disable":
            return self.integer_model_.decision_outputs(X)
        circuit = self._compiled_circuit()
        codes = self.integer_model_.quantize_input(X)
        return self.integer_model_.dequantize_output(circuit.run(codes, fhe))

    def _compiled_circuit(self):
        """``fhe_circuit_`` if it was compiled from the current fit, else NotCompiledError."""
        circuit = getattr(self, "fhe_circuit_", None)
        if circuit is None or circuit.integer_model is not self.integer_model_:
            raise NotCompiledError(
                f"{type(self).__name__} is not compiled for FHE: call compile(X) after fit"
            )
        return circuit

    @property
    def certificate_(self) -> AccumulatorCertificate:
        """The fitted network's accumulator certificate: each layer's proven accumulator
        bit-width (``concrete_qnn.certificate``)."""
        check_is_fitted(self)
        return self.integer_model_.certificate

    def accumulator_certificate(self, X=None) -> AccumulatorCertificate:
        """The certificate; with ``X`` (n_samples, n_features), also each layer's
        accumulator range seen on it.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        """
        if X is None:
            return self.certificate_
        X = validate_predict_data(self, X)
        return self.integer_model_.observed_certificate(X)

    def export_onnx(self, path, qonnx_domain: bool = False):
        """Write the network as QONNX (opset 14) to ``path``; see ``onnx_export``.

        The graph computes the network's outputs: a classifier's logits, a regressor's
        standardized targets (``predict`` is ``output * target_std_ + target_mean_``).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        NotImplementedError
            If the network learned its lookups (``module__learned_lookups``, by default on
            data of at most 8 features): QONNX has no operator for them.
        """
        check_is_fitted(self)
        from concrete_qnn.onnx_export import export_onnx

        return export_onnx(self.module_, path, self.n_features_in_, qonnx_domain)

    def compile(self, X=None):
        """Compile the integer model into an FHE circuit with Zama's concrete-python
        (needs the ``fhe`` extra).

        The accumulator bit-widths come from the certificate, so every input is computed
        correctly; the circuit is traced on the two corners of the input quantizer's range,
        which need no data, and on the rows of ``X`` (n_samples, n_features) if given.
        ``compile()`` rebuilds the circuit of an unpickled estimator (pickling drops it).
        Returns ``self``; the circuit is ``fhe_circuit_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` does not have the fitted data's features.
        """
        check_is_fitted(self)
        codes = None
        if X is not None:
            codes = self.integer_model_.quantize_input(validate_predict_data(self, X))
        from concrete_qnn.fhe import FHECircuit

        self.fhe_circuit_ = FHECircuit(self.integer_model_, codes)
        return self

    def save_fhe(self, directory):
        """Write the deployment artifacts of the compiled model to a new ``directory``.

        ``directory/client`` (client specs, input quantizer, output head, feature names)
        goes to data owners (``concrete_qnn.deploy.FHEClient``); ``directory/server``
        (the compiled circuit, no key of any kind) to the server
        (``concrete_qnn.deploy.FHEServer``, ``concrete-qnn serve``). JSON and
        concrete-python's own formats only; see ``concrete_qnn.deploy.artifacts``.

        Returns
        -------
        Path
            ``directory``.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        NotCompiledError
            If it is not compiled (``compile(X)``) since its last fit (a ``RuntimeError``).
        ValueError
            If ``directory`` exists and is not an empty directory.
        """
        check_is_fitted(self)
        circuit = self._compiled_circuit()
        from concrete_qnn.deploy.artifacts import save_fhe

        return save_fhe(circuit, self.integer_model_.io, directory)

    def save(self, path) -> None:
        """Write the integer model to ``path`` (one .npz file; ``concrete_qnn.load`` reads it).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        """
        check_is_fitted(self)
        self.integer_model_.save(path)

    def prune(self, X, y, n_prune_neurons_percentage, sample_weight=None, **fit_params):
        """A new fitted estimator with that fraction of hidden neurons pruned, fine-tuned.

        The copy is trained ``max_epochs`` more epochs on ``X, y`` (``sample_weight`` and
        ``fit_params`` as in ``fit``) from the current weights; ``self`` is left untouched.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        InvalidParameterError
            If ``n_prune_neurons_percentage`` is outside [0, 1), or a setting is invalid
            (``device`` one torch cannot use here, ...; a ``ValueError``).
        ValueError
            If the network was already pruned structurally, its ``module__*`` parameters
            changed since it was built, or the data, weights or fit parameters are invalid.
        """
        check_is_fitted(self)
        check_settings(self)  # before the copy: unpickling moves it to the CPU if need be
        PRUNE_PERCENTAGE.check("n_prune_neurons_percentage", n_prune_neurons_percentage)
        if self.module_.neurons_pruned:
            raise ValueError(
                "this model's hidden neurons were already pruned structurally "
                f"(n_prune_neurons_percentage={self.module_.n_prune_neurons_percentage}); "
                "prune the model it came from instead"
            )
        check_network_matches_parameters(self)
        with warnings.catch_warnings():  # the copy's circuit would be dropped by training
            warnings.filterwarnings("ignore", message=CIRCUIT_NOT_PICKLED)
            pruned = copy.deepcopy(self)
        fraction = float(n_prune_neurons_percentage)
        pruned.module_.n_prune_neurons_percentage = fraction
        pruned.set_params(module__n_prune_neurons_percentage=fraction)  # the network is kept
        pruned.partial_fit(X, y, sample_weight=sample_weight, **fit_params)
        return pruned
