"""
# Save and load the integer model

`model.save(path)` writes the certified integer model to one `.npz` file (integer arrays
and JSON metadata). `concrete_qnn.load(path)` reads it without pickle and without torch,
recomputes the certificate, and refuses a damaged or edited file.
"""

# %%
# Fit a small regressor and save it.
import tempfile
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
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

model = QNNRegressor(random_state=0).fit(X_train, y_train)
print(f"held-out R^2: {model.score(X_test, y_test):.4f}")

directory = Path(tempfile.mkdtemp())
path = directory / "model.npz"
model.save(path)
print(f"{path.name}: {path.stat().st_size:,} bytes")

# %%
# The loaded `IntegerModel` predicts exactly what the estimator predicts (both run the
# same integer arithmetic), in the targets' own units.
loaded = concrete_qnn.load(path)
predicted = loaded.predict(X_test)
print("identical predictions:", np.array_equal(predicted, model.predict(X_test)))
print(loaded.certificate)

fig, ax = plt.subplots(figsize=(4, 3.5))
ax.scatter(y_test, predicted, s=10)
ax.plot([y.min(), y.max()], [y.min(), y.max()], color="tab:red", linestyle="--")
ax.set_xlabel("target")
ax.set_ylabel("loaded model's prediction")
fig.tight_layout()
plt.show()

# %%
# A truncated file is refused with one `ValueError` (`concrete_qnn.exceptions` names the
# kinds), never loaded as a wrong model.
damaged = directory / "damaged.npz"
damaged.write_bytes(path.read_bytes()[:-100])
try:
    concrete_qnn.load(damaged)
except ValueError as error:
    print(f"refused with {type(error).__name__}:")
    print(textwrap.fill(str(error), 88))
