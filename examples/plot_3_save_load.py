"""
# Save and load the integer model

`model.save(path)` writes the certified integer model to one `.npz` file (integer arrays
and JSON metadata). `concrete_qnn.load(path)` reads it without pickle and without torch,
recomputes the certificate, and refuses a damaged or edited file.
"""

# %%
# Fit a small regressor and save it.
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import concrete_qnn
from concrete_qnn import QNNRegressor

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

model = QNNRegressor(random_state=0, max_epochs=20).fit(X_train, y_train)
print(f"held-out R^2: {model.score(X_test, y_test):.4f}")

directory = Path(tempfile.mkdtemp())
path = directory / "model.npz"
model.save(path)
print(f"{path.name}: {path.stat().st_size:,} bytes")

# %%
# The loaded `IntegerModel` predicts exactly what the estimator predicts (both run the
# same integer arithmetic), in the targets' own units.
loaded = concrete_qnn.load(path)
print("identical predictions:", np.array_equal(loaded.predict(X_test), model.predict(X_test)))
print(loaded.certificate)

# %%
# A truncated file is refused with one `ValueError` (`concrete_qnn.exceptions` names the
# kinds), never loaded as a wrong model.
damaged = directory / "damaged.npz"
damaged.write_bytes(path.read_bytes()[:-100])
try:
    concrete_qnn.load(damaged)
except ValueError as error:
    print(f"refused ({type(error).__name__}): {error}")
