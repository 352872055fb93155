from __future__ import annotations

from tests.conftest import GraphQL, person

BIND = """
mutation Bind($input: BindMutualAidInput!) {
  bindMutualAid(input: $input) {
    binding {
      id status relation province { code }
      authorizer { name certNo } beneficiary { name certNo }
    }
    errors { code message field }
  }
}
"""


async def test_a_hebei_employee_binds_his_father_across_cities(gql: GraphQL) -> None:
    father = person("hb_wang_deming")
    result = await gql(
        BIND,
        {
            "input": {
                "beneficiaryCertNo": father["certNo"],
                "beneficiaryName": father["name"],
                "relation": "PARENT",
            }
        },
        as_="hb_wang_jianguo",
    )
    payload = result["data"]["bindMutualAid"]
    assert payload["errors"] == []
    assert payload["binding"]["status"] == "ACTIVE"
    assert payload["binding"]["authorizer"]["certNo"] == person("hb_wang_jianguo")["certNo"]
    assert payload["binding"]["beneficiary"]["certNo"] == "130602********0010"
    me = await gql(
        "{ me { name account { balance } mutualAidBindings { asAuthorizer { status } } } }",
        as_="hb_wang_jianguo",
    )
    assert me["data"]["me"]["account"]["balance"] == "3200.00"
    assert me["data"]["me"]["mutualAidBindings"]["asAuthorizer"] == [{"status": "ACTIVE"}]
