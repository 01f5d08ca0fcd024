"""The ``deploy`` section: how a real aggregator listens, whom it admits and how long it waits.

Round shape (sync with over-commitment, or deadline with a minimum participant count)
comes from the run's ``round`` section, as in the simulator; only what a real network
adds lives here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DeployConfig(BaseModel):
    """Settings of ``fedsys server`` and its clients (the real aggregator).

    ``fedsys run`` ignores them, except ``secure_aggregation``, whose measured cost the
    simulator charges on its virtual clock.

    ``cert_dir`` and ``tokens`` default to ``<output_dir>/pki`` as ``fedsys certs``
    writes it; ``insecure: true`` turns TLS off (loopback experiments only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="address the server listens on")
    port: int = Field(50051, ge=0, le=65535, description="port it listens on (0: any free port)")
    cert_dir: str | None = Field(
        None, description="certificates made by fedsys certs (null: <output_dir>/pki)"
    )
    tokens: str | None = Field(
        None, description="the clients' token digests (null: <cert_dir>/tokens.json)"
    )
    mutual_tls: bool = Field(False, description="also require client certificates")
    insecure: bool = Field(False, description="turn TLS off (loopback experiments only)")
    wait_for_clients_s: float = Field(120.0, gt=0, description="longest wait for enough clients")
    min_clients: int | None = Field(
        None,
        ge=1,
        description="fewest idle clients a round starts with (default: K, or "
        "round.min_participants for deadline rounds)",
    )
    settle_s: float = Field(
        2.0, ge=0, description="after this wait, start with fewer than the over-committed count"
    )
    round_timeout_s: float = Field(
        600.0, gt=0, description="a sync round closes after this even short of K"
    )
    ping_interval_s: float = Field(
        5.0, gt=0, description="keep-alive interval the server tells its clients"
    )
    upload_slots: int = Field(
        2,
        ge=1,
        description="updates received at once (bounds memory); an upload holds its slot only "
        "while its chunks flow (see upload_lend_after_s)",
    )
    upload_lend_after_s: float = Field(
        0.5,
        gt=0,
        description="an upload whose next chunk has not come after this lends its slot to a "
        "waiting one and takes a slot again when the chunk arrives (a slow or silent sender "
        "never blocks a fast one; the quiet upload's buffer stays meanwhile)",
    )
    transfer_idle_s: float = Field(
        5.0,
        gt=0,
        description="a model download or update upload with no chunk for this long is cut: "
        "its slot is freed and the client recorded dropped with the reason",
    )
    transfer_min_bytes_per_s: float = Field(
        32 * 1024,
        gt=0,
        description="slowest transfer accepted: one of n bytes is cut after transfer_idle_s + "
        "n / this seconds (client recorded dropped with the reason)",
    )
    download_slots: int = Field(
        4, ge=1, description="model downloads served at once (each buffers up to ~2 MiB)"
    )
    chunk_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=2 * 1024 * 1024,
        description="chunk size of models and updates: a TLS connection keeps buffers sized "
        "by the messages it carried, so small chunks keep per-client memory small",
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, description="largest gRPC message accepted"
    )
    finish_grace_s: float = Field(3.0, ge=0, description="time for clients to hear 'finish'")
    secure_aggregation: Literal["none", "secagg+", "secagg"] = Field(
        "none",
        description="secagg+: the server learns only the sum of the updates (SecAgg+, Bell et "
        "al. 2020: X25519 keys with a random sparse set of neighbours, AES-CTR masks, Shamir "
        "shares of each mask key and self-mask seed); secagg: the all-pairs protocol "
        "(Bonawitz et al. 2017). Only for strategies that need the sum (fedavg, fedprox, "
        "fedavgm, fedadam, fedadagrad, fedyogi, dp_fedavg, whose noise is added to the "
        "unmasked sum) and compression none; fedsys run charges its measured cost on the "
        "virtual clock",
    )
    secure_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="fraction of a client's share holders (its neighbours and itself) that "
        "recover its secrets, at least 2",
    )
    secure_degree: int | None = Field(
        None, ge=2, description="secagg+ neighbours per client (default 2·ceil(1.5·log2 n))"
    )
    secure_bits: int = Field(32, ge=8, le=48, description="masked integers live modulo 2^bits")
    secure_clip_range: float = Field(
        8.0,
        ge=1,
        description="update coordinates are clipped to ±this and stochastically rounded",
    )
    secure_max_weight: float = Field(
        1000.0,
        gt=0,
        description="a client's FedAvg weight is min(samples, max_weight) / max_weight",
    )
    secure_step_timeout_s: float = Field(
        60.0,
        gt=0,
        description="longest wait for keys, shares and unmask replies; clients silent by then "
        "have dropped out",
    )

    @model_validator(mode="after")
    def _degree_for_secagg_plus(self) -> DeployConfig:
        if self.secure_degree is not None and self.secure_aggregation != "secagg+":
            raise ValueError(
                "deploy.secure_degree applies to secure_aggregation secagg+ only "
                f"(it is {self.secure_aggregation!r}: secagg links every pair): remove it"
            )
        return self
