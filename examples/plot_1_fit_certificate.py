"""
# Fit a classifier and read its certificate

`QNNClassifier` trains like scikit-learn's `MLPClassifier`. At the end of `fit` it proves
that every neuron's integer accumulator fits `module__n_accum_bits` signed bits (8 by
default), over every input code each input can reach, not only the training data.
"""

# %%
# Fit on a scikit-learn dataset, the features standardized in a pipeline. 20 epochs keep
# this example short (the default is 60).
import matplotlib.pyplot as plt
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
model = make_pipeline(StandardScaler(), QNNClassifier(random_state=0, max_epochs=20))
model.fit(X_train, y_train)
print(f"held-out accuracy: {model.score(X_test, y_test):.4f}")

# %%
# The certificate, one row per layer: the neurons, the largest fan-in (non-zero weights of
# a neuron), the codes its inputs reach, the worst-case accumulator interval `[lo, hi]`,
# the signed bits it needs, and the bits each table lookup reads.
certificate = model[-1].certificate_
print(certificate)

# %%
# The same table as a pandas DataFrame (`to_frame()`), and each layer's interval against
# the range an 8-bit signed accumulator holds.
frame = certificate.to_frame()
bound = certificate.n_accum_bits
low, high = -(2 ** (bound - 1)), 2 ** (bound - 1) - 1

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(frame.index, frame["hi"] - frame["lo"], left=frame["lo"], color="tab:blue")
ax.axvline(low, color="tab:red", linestyle="--", label=f"{bound}-bit range")
ax.axvline(high, color="tab:red", linestyle="--")
ax.set_xlabel("accumulator value (worst case over every reachable input)")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
