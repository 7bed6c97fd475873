"""The training job against a plain run of the tutorial's code on the same data."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier

from workloads.training.job import TrainingDataError, train

DIABETES = Path(__file__).resolve().parents[2] / "workloads" / "data" / "diabetes.csv"


def plain_accuracy() -> float:
    """The tutorial's unencrypted run, written out independently."""
    frame = pd.read_csv(DIABETES)
    x = frame.drop("Outcome", axis=1)
    y = frame["Outcome"]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    model = XGBClassifier(eval_metric="logloss")
    model.fit(x_train, y_train)
    return float(accuracy_score(y_test, model.predict(x_test)))


def test_streamed_training_matches_the_plain_run_exactly() -> None:
    with DIABETES.open("rb") as stream:
        result = train(stream)
    assert result.accuracy == plain_accuracy()
    assert round(result.accuracy, 4) == 0.7208  # what the tutorial reported
    assert (result.train_rows, result.test_rows) == (614, 154)
    assert "precision" in result.report and "accuracy: 0.7208" in result.summary()
    booster = XGBClassifier()
    booster.load_model(bytearray(result.model))
    assert booster.n_features_in_ == 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a CSV table"),
        (b"a,b\n1,2\n", "expected the columns"),
        (DIABETES.read_bytes().replace(b"\n6,148,", b"\nsix,148,", 1), "numeric"),
        (DIABETES.read_bytes().replace(b",50,1\n", b",50,7\n", 1), "Outcome must be 0 or 1"),
        (b"\n".join(DIABETES.read_bytes().splitlines()[:5]), "fewer than 10 rows"),
    ],
)
def test_bad_input_is_refused_without_echoing_rows(data: bytes, message: str) -> None:
    with pytest.raises(TrainingDataError) as caught:
        train(io.BytesIO(data))
    assert message in str(caught.value)
    assert "148" not in str(caught.value)
