"""The confidential training run inside the CVM: decrypt via the agent, train, seal the model.

The sealed data file is sent to the local guest agent, which unwraps its data key with the
data owner's released key and streams the plaintext back; the job reads that stream into
memory (never to disk). The trained model is sealed back to the same key (the data owner's
key, recorded in the data file's header), so only the data owner -- or an attested VM
granted that key -- can open it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cotenant.crypto.envelope import SealedHeader, read_header, seal
from cotenant.crypto.wrapping import KeyWrapper
from guest_agent.client import AgentClient
from workloads.streams import binary_reader
from workloads.training.job import TrainingResult, train

MODEL_CONTENT_TYPE = "application/vnd.xgboost.model+json"


@dataclass(frozen=True)
class TrainingRun:
    result: TrainingResult
    data_key_id: str  # the data owner's key that sealed the input (and now the model)
    model_header: SealedHeader


def data_owner_key_id(sealed_path: Path) -> str:
    with sealed_path.open("rb") as handle:
        return read_header(handle).key_id


def run_training(
    agent: AgentClient,
    sealed_path: Path,
    model_out: BinaryIO,
    wrapper: KeyWrapper,
) -> TrainingRun:
    """Train on the sealed file at ``sealed_path``; write the sealed model to ``model_out``.

    ``wrapper`` wraps the model's data key for the data owner's key (its public half).
    """
    key_id = data_owner_key_id(sealed_path)
    with sealed_path.open("rb") as sealed, binary_reader(agent.decrypt_stream(sealed)) as data:
        result = train(data)
    header = seal(
        io.BytesIO(result.model), model_out,
        key_id=key_id, wrapper=wrapper, content_type=MODEL_CONTENT_TYPE,
    )
    return TrainingRun(result=result, data_key_id=key_id, model_header=header)
