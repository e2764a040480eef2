"""
# Compile to FHE and simulate

With the `fhe` extra, `compile(X)` turns the certified integer model into a
concrete-python circuit whose widths come from the certificate. `fhe="simulate"` runs
concrete's simulation of that circuit (no encryption, fast); `fhe="execute"` would
encrypt, run and decrypt. Both agree exactly with the clear integer model.
"""

# %%
# A tiny model on iris: one hidden layer of 8 neurons, 3/3/6 bits.
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

model = QNNClassifier(
    random_state=0,
    max_epochs=30,
    module__n_layers=2,
    module__n_hidden_neurons_min=8,
    module__n_accum_bits=6,
)
model.fit(X_train, y_train)
print(model.certificate_)

# %%
# Compile on the training rows (they only drive concrete's tracing: the widths come from
# the certificate), then compare the simulated circuit with the clear integer model.
model.compile(X_train)
clear = model.predict(X_test)
simulated = model.predict(X_test, fhe="simulate")
print(f"held-out accuracy: {np.mean(clear == y_test):.4f}")
print(f"simulate agrees with the clear model on {np.sum(simulated == clear)} of {len(clear)} rows")

# %%
# To run it encrypted, `model.predict(X_test[:3], fhe="execute")`; to split keys, client
# and server, `model.save_fhe(directory)` (see the deployment guide).
