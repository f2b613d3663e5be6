"""All configuration in one place: environment variables prefixed ``MLF_`` and an optional ``.env``.

Everything has an embedded default under ``MLF_HOME`` (``./.mlfactory``), so a laptop needs no
server: the store and the MLflow tracking store are SQLite files and artefacts are local folders.
Pointing ``MLF_DATABASE_URL`` / ``MLF_MLFLOW_TRACKING_URI`` at PostgreSQL or an MLflow server
switches to the cluster stack with no code change.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLF_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    home: Path = Field(default=Path(".mlfactory"), description="Root of every embedded default.")
    env: Literal["development", "production"] = "development"
    database_url: str = Field(default="", description="SQLAlchemy URL of the store.")
    mlflow_tracking_uri: str = Field(default="", description="MLflow tracking and registry URI.")
    artifacts_dir: Path = Field(default=Path(), description="Run artefacts (plots, splits, ...).")
    datasets_dir: Path | None = Field(
        default=None, description="Folder holding named data sets, looked at before the cache."
    )
    cache_dir: Path = Field(default=Path(), description="Downloaded data sets.")
    source_roots: list[Path] = Field(
        default_factory=list,
        description="Folders a run's `source` file may be read from (JSON list; default: the "
        "data sets folder, the home and the project file's folder).",
    )
    project_file: Path | None = Field(
        default=None,
        description="The project file declaring data sets and pipelines (default: "
        "./mlfactory.yaml when it exists).",
    )
    download_timeout: float = Field(default=60.0, gt=0, description="Seconds per data download.")
    max_field_bytes: int = Field(
        default=1_000_000, gt=0, description="Source fields larger than this are rejected."
    )
    log_level: str = "INFO"

    # The serving API (``mlfactory serve``).
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key of API tokens; generated once under MLF_HOME when unset, "
        "required when MLF_ENV=production.",
    )
    jwt_lifetime_minutes: int = Field(default=60, gt=0, description="Lifetime of an API token.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, gt=0, lt=65536)
    api_workers: int = Field(default=1, gt=0, description="Server processes (one per core).")
    model_poll_seconds: float = Field(
        default=10.0, ge=0, description="How often the API checks whether a champion moved."
    )
    api_max_body_bytes: int = Field(default=5_000_000, gt=0, description="Largest request body.")
    api_login_per_minute: int = Field(
        default=30, gt=0, description="Login attempts a client address may make in a minute."
    )
    api_max_batch: int = Field(default=1000, gt=0, description="Most records in one request.")
    api_rate_per_minute: int = Field(
        default=6000, gt=0, description="Requests one user may make per minute."
    )

    # Notifications (``notify/``): SMTP mail and an optional Slack-compatible webhook.
    smtp_host: str | None = Field(default=None, description="SMTP server; no mail when unset.")
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_security: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    mail_from: str = "mlfactory@localhost"
    notify_to: list[str] = Field(
        default_factory=list, description="Recipients of every pipeline's mail (JSON list)."
    )
    api_url: str = Field(
        default="http://127.0.0.1:8000", description="Where the dashboard reaches the API."
    )
    api_public_url: str | None = Field(
        default=None, description="The API's address as readers of a mail reach it (links)."
    )
    notify_webhook_url: str | None = Field(default=None, description="Slack-compatible webhook.")
    notify_cooldown_minutes: float = Field(
        default=60.0, ge=0, description="One message per cause within this window."
    )

    # Summaries through an OpenAI-compatible chat API (Mistral by default).
    llm_base_url: str = "https://api.mistral.ai/v1"
    llm_api_key: SecretStr | None = Field(
        default=None, description="Key of the chat API; local extractive summaries when unset."
    )
    llm_model: str = "mistral-small-latest"
    llm_temperature: float = Field(default=0.3, ge=0, le=2)
    llm_max_tokens: int = Field(default=400, gt=0)
    llm_timeout: float = Field(default=60.0, gt=0)
    llm_retries: int = Field(default=4, ge=0, description="Retries after a timeout, 429 or 5xx.")
    summary_language: str = Field(default="fr", description="Language of article summaries.")

    # The arXiv source.
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_query: str = Field(default="cat:cs.*", description="arXiv search query to follow.")
    arxiv_page_size: int = Field(default=100, gt=0, le=2000)
    arxiv_delay_seconds: float = Field(default=3.0, ge=0, description="Pause between pages.")
    arxiv_max_results: int = Field(default=1000, gt=0, description="Most papers per fetch.")

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'mlfactory.db'}"
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if self.artifacts_dir == Path():
            self.artifacts_dir = self.home / "artifacts"
        if self.cache_dir == Path():
            self.cache_dir = self.home / "cache"
        if self.project_file is None and Path("mlfactory.yaml").is_file():
            self.project_file = Path("mlfactory.yaml")
        if self.project_file is not None:
            self.project_file = self.project_file.expanduser().resolve()
        # Absolute, so that paths recorded by one process mean the same in another.
        self.artifacts_dir = self.artifacts_dir.expanduser().resolve()
        self.cache_dir = self.cache_dir.expanduser().resolve()
        return self

    @property
    def readable_roots(self) -> list[Path]:
        """Where a run parameter may name a file: ``MLF_SOURCE_ROOTS``, else the defaults."""
        if self.source_roots:
            return [root.expanduser().resolve() for root in self.source_roots]
        roots = [self.home]
        if self.datasets_dir is not None:
            roots.append(self.datasets_dir.expanduser().resolve())
        if self.project_file is not None:
            roots.append(self.project_file.parent)
        return roots

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Where new MLflow experiments keep their artefacts."""
        return (self.artifacts_dir / "mlflow").resolve().as_uri()

    def ensure_dirs(self) -> None:
        for path in (self.home, self.artifacts_dir, self.cache_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
