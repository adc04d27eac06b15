"""All configuration, from PASSFLOW_* environment variables or a .env file (CONTRACT.md)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from simulator.fixtures import DEMO_SOFTWARE_STATEMENT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PASSFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./passflow.db"
    broker_url: str = "redis://localhost:6379/0"
    pass_base_url: str = "http://127.0.0.1:8090"
    service_provider: str = "REF30"
    software_statement: SecretStr = SecretStr(DEMO_SOFTWARE_STATEMENT)
    api_token: SecretStr | None = None
    poll_interval_s: float = Field(default=5.0, gt=0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    secret_key: SecretStr | None = None

    # Beyond the contract: knobs an operator may need, with safe defaults.
    pass_timeout_s: float = Field(default=10.0, gt=0)
    pass_max_retries: int = Field(default=2, ge=0, le=5)


@lru_cache
def get_settings() -> Settings:
    return Settings()
