"""
# Choose bit-widths with GridSearchCV

Bit-widths are ordinary hyperparameters: `module__n_w_bits` (weights) and
`module__n_accum_bits` (the proven accumulator bound) go in a scikit-learn grid like any
other. Every fitted candidate carries its own certificate.
"""

# %%
# A tiny grid on wine: 2-bit or 3-bit weights, 6-bit or 8-bit accumulators, 3 folds,
# 10 epochs per fit to keep the example short.
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier

X, y = load_wine(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
search = GridSearchCV(
    make_pipeline(StandardScaler(), QNNClassifier(random_state=0, max_epochs=10)),
    {
        "qnnclassifier__module__n_w_bits": [2, 3],
        "qnnclassifier__module__n_accum_bits": [6, 8],
    },
    cv=3,
)
search.fit(X_train, y_train)
print("best:", search.best_params_)
print(f"held-out accuracy of the best: {search.score(X_test, y_test):.4f}")

# %%
# The mean cross-validated accuracy of each setting.
results = pd.DataFrame(search.cv_results_)
table = results.pivot_table(
    index="param_qnnclassifier__module__n_w_bits",
    columns="param_qnnclassifier__module__n_accum_bits",
    values="mean_test_score",
)
table.index.name, table.columns.name = "n_w_bits", "n_accum_bits"
print(table.round(4))

fig, ax = plt.subplots(figsize=(4, 3))
table.plot.bar(ax=ax, rot=0, ylim=(0.5, 1.1))
ax.set_ylabel("mean CV accuracy")
ax.legend(title="n_accum_bits", loc="upper center", ncol=2)
fig.tight_layout()
plt.show()

# %%
# The refitted best model's certificate: its accumulators fit the bound it was chosen at.
print(search.best_estimator_[-1].certificate_)
