"""Models built from raw rows (`db.from_row`) equal what the ORM builds, datetimes included,
on both databases."""

from __future__ import annotations

import datetime as dt

from server.domain import companies
from server.domain.access import load_scope
from server.models import Company, User, db
from tests import factories


async def test_rows_read_the_same_datetimes_as_the_orm(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=3, computers_per_customer=0
    )
    customer = tree.msps[0]
    await Company.filter(id=customer.id).update(
        unlinked_at=dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    )
    user = await User.get(account__email=owner.email).prefetch_related("home_group")
    scope = await load_scope(owner.instance_id, user.id, True, user.home_group.path)

    by_rows = (await companies.by_ids(scope, [customer.id]))[customer.id]
    by_orm = await Company.get(id=customer.id)
    for name in ("created_at", "updated_at", "unlinked_at", "setup_at"):
        assert getattr(by_rows, name) == getattr(by_orm, name), name
    assert by_rows.unlinked_at == dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    assert by_rows.created_at.utcoffset() == dt.timedelta(0)


def test_text_the_standard_library_cannot_read_is_left_to_tortoise():
    row = {
        "id": 1,
        "created_at": "2026-3-4T05:06:07Z",  # unpadded: only Tortoise's parser reads it
        "updated_at": "2026-03-04 05:06:07+00:00",
    }
    company = db.from_row(Company, dict(row))
    assert company.created_at == dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    assert company.updated_at == company.created_at
