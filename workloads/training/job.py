"""The training job itself: XGBoost on the diabetes data, from a readable stream.

The input is a readable binary stream of CSV (inside the CVM: the guest agent's decrypt
stream of the sealed file), so the plaintext never touches the disk. The code is the
tutorial's: ``XGBClassifier(eval_metric='logloss')``, an 80/20 split with
``random_state=42``, predicting ``Outcome``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import pandas as pd
from sklearn.metrics import accuracy_score, classification_report
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier

TARGET = "Outcome"
FEATURES = (
    "Pregnancies",
    "Glucose",
    "BloodPressure",
    "SkinThickness",
    "Insulin",
    "BMI",
    "DiabetesPedigreeFunction",
    "Age",
)
TEST_SIZE = 0.2
RANDOM_STATE = 42
MAX_ROWS = 1_000_000


class TrainingDataError(ValueError):
    """The decrypted input is not the expected CSV; the message never repeats row values."""


@dataclass(frozen=True)
class TrainingResult:
    accuracy: float
    report: str  # sklearn's classification report (per-class precision/recall/F1)
    train_rows: int
    test_rows: int
    model: bytes  # the trained booster, XGBoost's JSON format

    def summary(self) -> str:
        return (
            f"rows: {self.train_rows} train / {self.test_rows} test\n"
            f"accuracy: {self.accuracy:.4f}\n\n{self.report}"
        )


def load_frame(stream: BinaryIO) -> pd.DataFrame:
    try:
        frame = pd.read_csv(stream, nrows=MAX_ROWS + 1)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"not a CSV table ({exc.__class__.__name__})") from None
    expected = [*FEATURES, TARGET]
    if list(frame.columns) != expected:
        raise TrainingDataError(f"expected the columns {','.join(expected)}")
    if len(frame) > MAX_ROWS:
        raise TrainingDataError(f"more than {MAX_ROWS} rows")
    if len(frame) < 10:
        raise TrainingDataError("fewer than 10 rows")
    if not all(pd.api.types.is_numeric_dtype(frame[column]) for column in expected):
        raise TrainingDataError("every column must be numeric")
    if frame.isna().to_numpy().any():
        raise TrainingDataError("the table has empty cells")
    if not set(frame[TARGET].unique()) <= {0, 1}:
        raise TrainingDataError(f"{TARGET} must be 0 or 1")
    return frame


def train(stream: BinaryIO) -> TrainingResult:
    """Train and evaluate on the CSV read from ``stream``."""
    frame = load_frame(stream)
    features = frame.drop(columns=[TARGET])
    target = frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=TEST_SIZE, random_state=RANDOM_STATE
    )
    model = XGBClassifier(eval_metric="logloss")
    model.fit(x_train, y_train)
    predictions = model.predict(x_test)
    return TrainingResult(
        accuracy=float(accuracy_score(y_test, predictions)),
        report=str(classification_report(y_test, predictions)),
        train_rows=len(x_train),
        test_rows=len(x_test),
        model=bytes(model.get_booster().save_raw("json")),
    )
