from tests.api.conftest import OWNER, RECIPIENT, World


def test_two_authority_flow_embedded(world: World) -> None:
    package_id = world.sealed_shared_package({"a.bin": b"hello", "dir/b.bin": b"x" * 200_000})
    r = world.client.get(f"/v1/packages/{package_id}/items/dir/b.bin/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 200, r.text
    assert r.content == b"x" * 200_000
    r = world.client.get(f"/v1/packages/{package_id}/custody", headers=world.headers(OWNER, "auditor"))
    assert r.status_code == 200, r.text
