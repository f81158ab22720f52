from tests import factories


async def test_an_owner_sees_the_tree_of_its_instance(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id)
    data = await client.query(
        """{ viewer { via account { email mixed services } user { email homeGroup { name } }
             instance { name createdVia accessibleVia mspStatus } }
           rootCompanies { name depth type children { totalCount edges { node { name } } } }
           rootGroups { name children { edges { node { name children { totalCount } } } } }
           managedCustomers(first: 2) { totalCount statusCounts { notSetUp normal unlinked }
             edges { node { name customerStatus parent { name } staticGroup { name } } } } }""",
        token=owner.token,
    )
    print(data)
    assert data["rootCompanies"][0]["name"] == tree.manager.name
