"""verifyfeed.aws subclasses botocore's internal ``Loader``: the layer pins botocore (the lock), and
these tests say whether the pinned version still works with it (docs/decisions.md#reproducible-runtime)."""

from __future__ import annotations

import pytest
from botocore.exceptions import UnknownServiceError

from verifyfeed import aws


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    return aws._new_session()


def test_the_session_loader_lists_only_our_services(session: object) -> None:
    loader = session._session.get_component("data_loader")  # type: ignore[attr-defined]
    assert isinstance(loader, aws._ModelLoader)
    assert loader.list_available_services("service-2") == sorted(aws.SERVICES)
    assert loader.list_available_services("endpoint-rule-set-1") == sorted(aws.SERVICES)


@pytest.mark.parametrize("service", aws.SERVICES)
def test_each_of_our_clients_is_created_from_the_loader(session: object, service: str) -> None:
    client = session.client(service, aws_access_key_id="x", aws_secret_access_key="y")  # type: ignore[attr-defined]
    assert client.meta.service_model.service_name == service
    assert client.meta.region_name == "eu-west-1"


def test_any_other_service_is_refused_as_botocore_refuses_one_it_does_not_ship(session: object) -> None:
    with pytest.raises(UnknownServiceError, match="lambda"):
        session.client("lambda")  # type: ignore[attr-defined]
